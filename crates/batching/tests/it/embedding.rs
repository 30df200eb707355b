//! The embedding adapter: callers with several inputs get their own vectors in order; the
//! batch key keeps apart what changes a vector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infermux_batching::{BatchConfig, EmbeddingBatcher};
use infermux_core::{EmbeddingRequest, EmbeddingResponse, ErrorKind, RequestContext, Usage};
use serde_json::json;

use crate::{ctx, ok};

type Calls = Arc<Mutex<Vec<EmbeddingRequest>>>;

/// A fake provider: the vector of `s` is `[len(s), first byte]`; logs each request.
fn fake(cfg: BatchConfig) -> (EmbeddingBatcher, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let b = EmbeddingBatcher::new(cfg, move |req: EmbeddingRequest, _ctx: RequestContext| {
        c.lock().unwrap().push(req.clone());
        async move {
            let v = req
                .inputs
                .iter()
                .map(|s| vec![s.len() as f32, f32::from(s.bytes().next().unwrap_or(0))])
                .collect();
            let mut r = EmbeddingResponse::new(format!("{}-served", req.model), v);
            r.usage = Some(Usage::default());
            Ok(r)
        }
    })
    .unwrap();
    (b, calls)
}

fn v(s: &str) -> Vec<f32> {
    vec![s.len() as f32, f32::from(s.as_bytes()[0])]
}

fn wait5() -> BatchConfig {
    BatchConfig::openai_embeddings()
        .with_max_wait(Duration::from_millis(5))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn callers_with_several_inputs_get_their_own_vectors_in_order_from_one_call() {
    let (b, calls) = fake(wait5());
    let (x, y, z) = tokio::join!(
        b.embed(EmbeddingRequest::new("m", ["apple", "be", "cat"]), ctx()),
        b.embed(EmbeddingRequest::new("m", ["dolphin"]), ctx()),
        b.embed(EmbeddingRequest::new("m", ["be", "apple"]), ctx()),
    );
    let (x, y, z) = (ok(x), ok(y), ok(z));
    assert_eq!(x.embeddings, [v("apple"), v("be"), v("cat")]);
    assert_eq!(y.embeddings, [v("dolphin")]);
    assert_eq!(z.embeddings, [v("be"), v("apple")]);
    assert_eq!(x.model, "m-served");
    assert_eq!(
        x.usage, None,
        "a batch's usage is not split between callers"
    );
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].inputs.len(),
        4,
        "duplicates sent once: {:?}",
        calls[0].inputs
    );
    assert_eq!(b.stats().dedup_hits, 2);
}

#[tokio::test(start_paused = true)]
async fn model_dimensions_and_extra_fields_keep_batches_apart_and_key_order_does_not() {
    let (b, calls) = fake(wait5());
    let mut d256 = EmbeddingRequest::new("m", ["x"]);
    d256.dimensions = Some(256);
    let mut e1 = EmbeddingRequest::new("m", ["x"]);
    e1.extra = serde_json::from_value(json!({"a": 1, "b": {"c": 2, "d": 3}})).unwrap();
    let mut e2 = EmbeddingRequest::new("m", ["y"]);
    e2.extra = serde_json::from_value(json!({"b": {"d": 3, "c": 2}, "a": 1})).unwrap();
    let (a, b2, c, d, e) = tokio::join!(
        b.embed(EmbeddingRequest::new("m", ["x"]), ctx()),
        b.embed(EmbeddingRequest::new("other", ["x"]), ctx()),
        b.embed(d256, ctx()),
        b.embed(e1, ctx()),
        b.embed(e2, ctx()),
    );
    for r in [a, b2, c, d, e] {
        ok(r);
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let with_extra: Vec<_> = calls.iter().filter(|r| !r.extra.is_empty()).collect();
    assert_eq!(with_extra.len(), 1);
    assert_eq!(with_extra[0].inputs.len(), 2);
    assert_eq!(with_extra[0].extra["b"]["c"], 2);
    assert!(
        calls
            .iter()
            .any(|r| r.dimensions == Some(256) && r.inputs == ["x"])
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_answering_fewer_vectors_is_a_decode_error_to_every_caller() {
    let b = EmbeddingBatcher::new(wait5(), |req: EmbeddingRequest, _| async move {
        let n = req.inputs.len() - 1;
        Ok(EmbeddingResponse::new(req.model, vec![vec![1.0]; n]))
    })
    .unwrap();
    let (x, y) = tokio::join!(
        b.embed(EmbeddingRequest::new("m", ["a", "b"]), ctx()),
        b.embed(EmbeddingRequest::new("m", ["c"]), ctx()),
    );
    for e in [x.unwrap_err(), y.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::Decode);
    }
}

#[tokio::test(start_paused = true)]
async fn no_input_is_an_invalid_request_and_a_big_caller_is_split_over_batches() {
    let (b, calls) = fake(BatchConfig::tei(2));
    let e = b
        .embed(EmbeddingRequest::new("m", Vec::<String>::new()), ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let r = ok(b
        .embed(
            EmbeddingRequest::new("m", ["a", "bb", "ccc", "dddd", "eeeee"]),
            ctx(),
        )
        .await);
    assert_eq!(
        r.embeddings,
        [v("a"), v("bb"), v("ccc"), v("dddd"), v("eeeee")]
    );
    let sizes: Vec<usize> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.inputs.len())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}

/// A caller whose inputs went in two batches answered differently: both through one fallback
/// group, the answer says a fallback took part (so a cache does not keep it as the group's);
/// by two groups (the one asked, and a fallback for one batch), the call fails (the vectors
/// may be of two spaces); by two deployments of one group naming their model differently, it
/// succeeds. Before, the answer carried the first batch's model and no fallback, whatever the
/// others were.
#[tokio::test]
async fn a_caller_split_over_batches_answered_differently_is_told() {
    use infermux_core::{EndpointId, FallbackTaken, Served};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // (group, model, through a fallback) of the first batch's answer, then of the others
    type Who = (&'static str, &'static str, bool);
    let answer = |first: Who, rest: Who| {
        let n = Arc::new(AtomicUsize::new(0));
        EmbeddingBatcher::new(BatchConfig::tei(2), move |req: EmbeddingRequest, _| {
            let (group, model, fell_back) = if n.fetch_add(1, Ordering::SeqCst) == 0 {
                first
            } else {
                rest
            };
            async move {
                let v = req.inputs.iter().map(|_| vec![1.0, 0.0]).collect();
                let mut r = EmbeddingResponse::new(model, v);
                let mut s = Served::new(group, group, EndpointId::new(group), model);
                if fell_back {
                    s.fallback = Some(FallbackTaken::new("embed", ErrorKind::RateLimited, 1));
                }
                r.served = Some(Box::new(s));
                Ok(r)
            }
        })
        .unwrap()
    };
    let embed = |b: EmbeddingBatcher| async move {
        b.embed(EmbeddingRequest::new("embed", ["a", "b", "c"]), ctx())
            .await
    };
    let r = ok(embed(answer(("backup", "e2", true), ("backup", "e2", true))).await);
    assert_eq!(r.embeddings.len(), 3);
    assert!(r.served.as_ref().is_some_and(|s| s.fallback.is_some()));
    let e = embed(answer(("embed", "e", false), ("backup", "e2", true)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("two groups"), "{e}");
    let r = ok(embed(answer(
        ("embed", "e-east", false),
        ("embed", "e-west", false),
    ))
    .await);
    assert_eq!(r.embeddings.len(), 3);
    assert!(r.served.as_ref().is_some_and(|s| s.fallback.is_none()));
}

/// Inputs given as token ids (`extra.input`, the texts empty placeholders, as
/// `embedding_request_from_json` reads OpenAI's `[[1, 2], [3]]`) go as they are: before, the
/// placeholders were deduplicated into one item and the batch, still carrying both arrays,
/// was answered with two vectors for one input (a decode error for every caller).
#[tokio::test(start_paused = true)]
async fn token_id_inputs_go_unbatched_as_they_are() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let b = EmbeddingBatcher::new(
        BatchConfig::openai_embeddings(),
        move |req: EmbeddingRequest, _| {
            log.lock().unwrap().push(req.clone());
            async move {
                let n = req.extra["input"]
                    .as_array()
                    .map_or(req.inputs.len(), Vec::len);
                Ok(EmbeddingResponse::new(
                    req.model,
                    (0..n).map(|i| vec![i as f32]).collect(),
                ))
            }
        },
    )
    .unwrap();
    let mut req = EmbeddingRequest::new("text-embedding-3-small", ["", ""]);
    req.extra.insert("input".into(), json!([[1, 2], [3]]));
    let resp = b.embed(req.clone(), ctx()).await.unwrap();
    assert_eq!(resp.embeddings, [vec![0.0], vec![1.0]]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].inputs, req.inputs);
    assert_eq!(seen[0].extra["input"], json!([[1, 2], [3]]));
}
