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

/// A caller whose inputs went in two batches answered differently: by one model with a
/// fallback in one of them, the answer says a fallback took part (so a cache does not keep it
/// as the group's); by two models, the call fails (the vectors are of two spaces). Before,
/// the answer carried the first batch's model and no fallback, whatever the others were.
#[tokio::test]
async fn a_caller_split_over_batches_answered_differently_is_told() {
    use infermux_core::{EndpointId, FallbackTaken, Served};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let answer = |model_of_second: &'static str| {
        let n = Arc::new(AtomicUsize::new(0));
        EmbeddingBatcher::new(BatchConfig::tei(2), move |req: EmbeddingRequest, _| {
            let second = n.fetch_add(1, Ordering::SeqCst) > 0;
            async move {
                let v = req.inputs.iter().map(|_| vec![1.0, 0.0]).collect();
                if !second {
                    return Ok(EmbeddingResponse::new("primary", v));
                }
                let mut r = EmbeddingResponse::new(model_of_second, v);
                let mut s = Served::new("embed", "backup", EndpointId::new("b"), model_of_second);
                s.fallback = Some(FallbackTaken::new("embed", ErrorKind::RateLimited, 1));
                r.served = Some(Box::new(s));
                Ok(r)
            }
        })
        .unwrap()
    };
    let same_model = answer("primary");
    let r = ok(same_model
        .embed(EmbeddingRequest::new("embed", ["a", "b", "c"]), ctx())
        .await);
    assert_eq!(r.embeddings.len(), 3);
    assert!(
        r.served.as_ref().is_some_and(|s| s.fallback.is_some()),
        "{:?}",
        r.served
    );
    let two_models = answer("backup");
    let e = two_models
        .embed(EmbeddingRequest::new("embed", ["a", "b", "c"]), ctx())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("two models"), "{e}");
}
