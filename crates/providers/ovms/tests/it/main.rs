//! infermux-ovms against the testkit simulator's OVMS routes (built from OVMS's published REST
//! docs: no OVMS server runs here and no recording exists), plus request bodies checked
//! against the KServe v2 OpenAPI spec.

mod connections;

use std::sync::Arc;

use infermux_core::{
    ApiKey, ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext,
    RerankRequest, Response,
};
use infermux_ovms::{Ovms, Tensor, TensorData};
use infermux_testkit::{Fault, FaultPlan, Simulator, SuiteConfig, conformance};
use ndarray::array;
use serde_json::json;

async fn setup() -> (Simulator, Ovms) {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ovms = Ovms::new(EndpointConfig::new("ovms", sim.url()).unwrap()).unwrap();
    (sim, ovms)
}

#[tokio::test]
async fn kserve_v2_infer_with_ndarray_tensors() {
    let (_sim, ovms) = setup().await;
    let ctx = RequestContext::new();
    assert!(ovms.ready(&ctx).await.unwrap());
    let input = Tensor::from_f32(
        "input",
        array![[1.0f32, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]].into_dyn(),
    );
    let ids = Tensor::new("ids", vec![3], TensorData::Int64(vec![1, 2, 3])).unwrap();
    let out = ovms
        .infer("ovms-double", Some("1"), &[input, ids], &ctx)
        .await
        .unwrap();
    assert_eq!(out.model_version.as_deref(), Some("1"));
    assert_eq!(
        out.id,
        Some(ctx.request_id().to_string()),
        "the request id travels in the body"
    );
    assert_eq!(
        out.outputs[0].to_f32().unwrap(),
        array![[2.0f32, 4.0, 6.0, 8.0], [10.0, 12.0, 14.0, 16.0]].into_dyn()
    );
    assert_eq!(out.outputs[1].data, TensorData::Int64(vec![2, 4, 6]));
    let meta = ovms.metadata("ovms-double", None, &ctx).await.unwrap();
    assert_eq!(meta["inputs"][0]["datatype"], "FP32");
    let e = ovms.infer("missing", None, &[], &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    let e = ovms.infer("bad/model", None, &[], &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(
        Tensor::new("x", vec![2, 2], TensorData::Fp32(vec![1.0])).is_err(),
        "shape and data must agree"
    );
}

#[tokio::test]
async fn tf_serving_predict_status_and_metadata() {
    let (sim, ovms) = setup().await;
    let ctx = RequestContext::new();
    let rows = ovms
        .predict_rows("ovms-double", None, json!([[1, 2], [3, 4]]), &ctx)
        .await
        .unwrap();
    assert_eq!(rows, json!([[2, 4], [6, 8]]));
    let cols = ovms
        .predict_columns(
            "ovms-double",
            Some("1"),
            json!({"a": [1.5], "b": [2]}),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(cols, json!({"a": [3.0], "b": [4]}));
    let status = ovms.model_status("ovms-double", None, &ctx).await.unwrap();
    assert_eq!(status[0].state, "AVAILABLE");
    assert_eq!(status[0].version, "1");
    let meta = ovms
        .tfs_metadata("ovms-double", Some("1"), &ctx)
        .await
        .unwrap();
    assert_eq!(meta["modelSpec"]["name"], "ovms-double");
    let e = ovms
        .model_status("ovms-double", Some("7"), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    sim.push_fault(Fault::Unavailable);
    assert_eq!(
        ovms.model_status("ovms-double", None, &ctx)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Server
    );
}

#[tokio::test]
async fn v3_openai_routes_and_rerank() {
    let (sim, ovms) = setup().await;
    let ctx = RequestContext::new();
    let Response::Chat(c) = ovms
        .call(
            &Request::Chat(ChatRequest::new(
                sim.model(),
                vec![Message::user("hello ovms")],
            )),
            &ctx,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.text(), "Echo: hello ovms");
    let docs = vec![
        "the cat sat".to_owned(),
        "quantum physics".to_owned(),
        "a cat and a dog".to_owned(),
    ];
    let Response::Rerank(r) = ovms
        .call(
            &Request::Rerank(RerankRequest::new("rr", "cat physics", docs)),
            &ctx,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.results.len(), 3);
    assert!(r.results[0].score >= r.results[1].score);
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("e")
        .deterministic(true);
    conformance::run(Arc::new(ovms), &cfg).await.assert_ok();
}

/// More than 100 documents (OVMS's default limit, refused by the server) go in requests of at
/// most 100: the results are indexed into the whole list, ranked together and cut at `top_n`.
/// Before, one request carried them all and the server refused it.
#[tokio::test]
async fn a_rerank_of_more_than_a_hundred_documents_goes_in_parts() {
    let (sim, ovms) = setup().await;
    let ctx = RequestContext::new();
    let mut docs: Vec<String> = (0..150)
        .map(|i| format!("filler text number {i}"))
        .collect();
    docs[120] = "the cat and the physics".to_owned();
    docs[30] = "a cat".to_owned();
    let before = sim.requests();
    let rerank = |top_n: Option<u32>| {
        let mut r = RerankRequest::new("rr", "cat physics", docs.clone());
        r.top_n = top_n;
        Request::Rerank(r)
    };
    let Response::Rerank(r) = ovms.call(&rerank(None), &ctx).await.unwrap() else {
        panic!()
    };
    assert_eq!(sim.requests() - before, 2);
    assert_eq!(r.results.len(), 150);
    assert_eq!((r.results[0].index, r.results[1].index), (120, 30));
    assert!(r.results.windows(2).all(|w| w[0].score >= w[1].score));
    let mut seen: Vec<usize> = r.results.iter().map(|x| x.index).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..150).collect::<Vec<_>>());
    let Response::Rerank(top) = ovms.call(&rerank(Some(2)), &ctx).await.unwrap() else {
        panic!()
    };
    let best: Vec<usize> = top.results.iter().map(|x| x.index).collect();
    assert_eq!(best, [120, 30]);
}

#[test]
fn infer_requests_match_the_kserve_v2_spec() {
    let Some(spec) =
        infermux_testkit::spec::load_shared("fixtures/specs/kserve_v2/open_inference_rest.yaml")
    else {
        return;
    };
    let schemas = &spec["components"]["schemas"];
    let required = |name: &str| -> Vec<String> {
        schemas[name]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let t = Tensor::from_f32("input", array![[1.0f32, 2.0]].into_dyn());
    let body = json!({"id": "x", "inputs": [t.to_json()]});
    for field in required("inference_request") {
        assert!(
            body.get(&field).is_some(),
            "inference_request needs {field}"
        );
    }
    let input = &body["inputs"][0];
    for field in required("request_input") {
        assert!(input.get(&field).is_some(), "request_input needs {field}");
    }
    for (field, schema) in schemas["request_input"]["properties"].as_object().unwrap() {
        if let (Some(v), Some(ty)) = (input.get(field), schema["type"].as_str()) {
            let ok = match ty {
                "string" => v.is_string(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                _ => true,
            };
            assert!(ok, "{field} should be a {ty}: {v}");
        }
    }
}

#[test]
fn no_key_in_debug() {
    let ovms = Ovms::new(
        EndpointConfig::new("ovms", "http://127.0.0.1:9")
            .unwrap()
            .with_api_key(ApiKey::new("ovms-key-123")),
    )
    .unwrap();
    assert!(!format!("{ovms:?}").contains("ovms-key-123"));
}

#[tokio::test]
async fn a_base_url_written_with_its_api_version_reaches_the_same_routes() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ctx = RequestContext::new();
    for base in [format!("{}/v3", sim.url()), format!("{}/v2/", sim.url())] {
        let ovms = Ovms::new(EndpointConfig::new("ovms", &base).unwrap()).unwrap();
        let Response::Chat(c) = ovms
            .call(
                &Request::Chat(ChatRequest::new(sim.model(), vec![Message::user("hi")])),
                &ctx,
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(c.text(), "Echo: hi", "{base}");
        assert!(ovms.ready(&ctx).await.unwrap(), "{base}");
    }
}

#[tokio::test]
async fn model_names_the_url_parser_would_rewrite_are_refused() {
    let (_sim, ovms) = setup().await;
    let ctx = RequestContext::new();
    for bad in [".", "%2e%2e", "a\\b"] {
        let e = ovms.metadata(bad, None, &ctx).await.unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::InvalidRequest, "{bad}");
    }
}

#[test]
fn a_host_named_like_a_version_is_kept() {
    // `http://v1:8000` is a host named v1; only a path segment after the host is stripped
    let ovms = Ovms::new(EndpointConfig::new("ovms", "http://v1").unwrap()).unwrap();
    assert!(format!("{ovms:?}").contains("http://v1"), "{ovms:?}");
}

/// A rerank answer that ranks a document twice (showing it twice, hiding another) is a decode
/// error, as TEI's is; before it was taken.
#[tokio::test]
async fn a_rerank_answer_ranking_a_document_twice_is_refused() {
    use infermux_testkit::{Body, Cassette, Interaction, RecordedRequest, RecordedResponse};
    for body in [
        r#"{"results":[{"index":0,"relevance_score":0.9},{"index":0,"relevance_score":0.8}]}"#,
        // the lenient path too (a result with an extra field of an odd type)
        r#"{"results":[{"index":1,"relevance_score":0.9,"x":[]},{"index":1,"relevance_score":0.8}],"usage":"?"}"#,
    ] {
        let cassette = Cassette {
            interactions: vec![Interaction {
                request: RecordedRequest {
                    method: "POST".into(),
                    uri: "http://ovms/v3/rerank".into(),
                    headers: Vec::new(),
                    body: None,
                },
                response: RecordedResponse {
                    status: 200,
                    message: "OK".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Body::Raw(body.as_bytes().to_vec()),
                },
            }],
        };
        let server = infermux_testkit::ReplayServer::start(cassette)
            .await
            .unwrap();
        let ovms = Ovms::new(EndpointConfig::new("ovms", server.url()).unwrap()).unwrap();
        let req = Request::Rerank(RerankRequest::new("rr", "q", vec!["a".into(), "b".into()]));
        let e = ovms.call(&req, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::Decode, "{body}: {e}");
    }
}
