//! Streams through the cache: the tee stores only complete streams; replays keep the order; a
//! stored stream answers a chat call, a stored call does not answer a stream.

use futures_util::StreamExt;
use infermux_cache::{Cache, CacheConfig};
use infermux_core::{CacheTier, Error, ErrorKind, RequestContext, StreamEvent};

use crate::support::{answer, ask, events, live, text_of};

fn oks(evs: &[StreamEvent]) -> Vec<infermux_core::Result<StreamEvent>> {
    evs.iter().cloned().map(Ok).collect()
}

#[tokio::test]
async fn a_complete_stream_is_stored_and_replayed_in_order() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let evs = events(&["a", "b", "c", "d"]);
    let mut with_usage = evs.clone();
    // usage after Done is part of the answer too
    with_usage.push(StreamEvent::Usage(Default::default()));
    let passed: Vec<_> = cache
        .tee(&req, &ctx, "g", live(oks(&with_usage)))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(passed, with_usage, "the tee passes every event unchanged");
    let (replay, hit) = cache.lookup_stream(&req, &ctx, "g").await.unwrap();
    assert_eq!(hit.tier, CacheTier::Exact);
    let replayed: Vec<_> = replay.map(Result::unwrap).collect().await;
    assert_eq!(replayed, with_usage);
    // a call is answered by the stored stream, folded
    let call = cache.lookup(&req, &ctx, "g").await.unwrap();
    assert_eq!(text_of(&call), "abcd");
}

#[tokio::test]
async fn a_stream_that_fails_is_not_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let mut items = oks(&events(&["a", "b"]));
    items.insert(2, Err(Error::new(ErrorKind::Server, "cut")));
    let passed: Vec<_> = cache.tee(&req, &ctx, "g", live(items)).collect().await;
    assert!(passed.iter().any(Result::is_err));
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
}

#[tokio::test]
async fn a_stream_without_done_is_not_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let mut evs = events(&["a", "b"]);
    evs.pop(); // no Done: truncated
    let _: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert!(cache.lookup(&req, &ctx, "g").await.is_none());
}

#[tokio::test]
async fn a_stream_dropped_early_is_not_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let mut s = cache.tee(&req, &ctx, "g", live(oks(&events(&["a", "b"]))));
    let _first = s.next().await;
    drop(s);
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
}

#[tokio::test]
async fn a_stored_call_does_not_answer_a_stream_and_never_replaces_one() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    cache.store(&req, &ctx, "g", &answer("whole")).await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    let opened = cache
        .stream(&req, &ctx, "g", || async {
            Ok(live(oks(&events(&["x", "y"]))))
        })
        .await
        .unwrap();
    assert!(opened.hit.is_none());
    let _: Vec<_> = opened.events.collect().await;
    // a later call's answer does not overwrite the stream
    cache.store(&req, &ctx, "g", &answer("whole")).await;
    let again = cache
        .stream(&req, &ctx, "g", || async {
            panic!("a cached stream must not reach the provider")
        })
        .await
        .unwrap();
    assert!(again.hit.is_some());
    let replayed: Vec<_> = again.events.map(Result::unwrap).collect().await;
    assert_eq!(replayed, events(&["x", "y"]));
}

/// The tee ends for good when its source does: polled again after its end, it answers the
/// end again and never polls the source (a stream need not be fused; this one panics if
/// polled after its end, as `futures::stream::unfold` does).
#[tokio::test]
async fn the_tee_never_polls_its_source_after_the_end() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let evs = events(&["a", "b"]);
    let source = futures_util::stream::unfold(evs.clone().into_iter(), |mut it| async move {
        it.next().map(|ev| (Ok(ev), it))
    });
    let mut tee = cache.tee(&req, &ctx, "g", Box::pin(source));
    let mut passed = Vec::new();
    while let Some(ev) = tee.next().await {
        passed.push(ev.unwrap());
    }
    assert_eq!(passed, evs);
    for _ in 0..3 {
        assert!(tee.next().await.is_none());
    }
    assert!(
        cache.lookup_stream(&req, &ctx, "g").await.is_some(),
        "stored"
    );
}

/// An answer the provider's content filter cut is not stored, answered or streamed: the
/// filter's verdict may change, and a stored refusal would answer the request (and, through
/// the semantic tier, its paraphrases) for the whole TTL.
#[tokio::test]
async fn an_answer_cut_by_the_content_filter_is_not_stored() {
    use infermux_core::{FinishReason, Response};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("something the filter stops");
    let mut filtered = answer("");
    if let Response::Chat(c) = &mut filtered {
        c.finish_reason = Some(FinishReason::ContentFilter);
    }
    cache.store(&req, &ctx, "g", &filtered).await;
    assert!(cache.lookup(&req, &ctx, "g").await.is_none());
    let mut evs = events(&["partial"]);
    evs.pop();
    evs.push(StreamEvent::Done {
        finish_reason: Some(FinishReason::ContentFilter),
    });
    let _: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    // an answer that stopped on its own is stored as before
    cache.store(&req, &ctx, "g", &answer("fine")).await;
    assert!(cache.lookup(&req, &ctx, "g").await.is_some());
}

/// A stream longer than a recording may hold (about 8 MiB) passes to the caller whole and is
/// not stored: the transport no longer bounds a stream's length, and a recording is held in
/// memory until the stream ends. A stream within it is stored as before.
#[tokio::test]
async fn a_stream_too_long_to_record_passes_whole_and_is_not_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("write a very long story");
    let chunk = "x".repeat(1024 * 1024);
    let parts: Vec<&str> = (0..9).map(|_| chunk.as_str()).collect();
    let evs = events(&parts);
    let passed: Vec<_> = cache
        .tee(&req, &ctx, "g", live(oks(&evs)))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(passed, evs, "every event passed");
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    let evs = events(&parts[..7]);
    let _: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_some());
}

/// An answer that ended for a reason not known to mean a complete one — a provider's own
/// (`Other`: Anthropic's paused turn, a failure it names) — is passed on and not stored, plain
/// or streamed; the reasons that are (stop, length, tool calls, none given) are.
#[tokio::test]
async fn an_answer_ended_for_a_reason_not_known_complete_is_not_stored() {
    use infermux_core::{FinishReason, Response};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("call the tool");
    let mut odd = answer("half");
    if let Response::Chat(c) = &mut odd {
        c.finish_reason = Some(FinishReason::Other("pause_turn".into()));
    }
    cache.store(&req, &ctx, "g", &odd).await;
    assert!(cache.lookup(&req, &ctx, "g").await.is_none());
    let mut evs = events(&["half"]);
    evs.pop();
    evs.push(StreamEvent::Done {
        finish_reason: Some(FinishReason::Other("MALFORMED_FUNCTION_CALL".into())),
    });
    let passed: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert_eq!(passed.len(), evs.len(), "passed on whole");
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    for (i, reason) in [
        None,
        Some(FinishReason::Stop),
        Some(FinishReason::Length),
        Some(FinishReason::ToolCalls),
    ]
    .into_iter()
    .enumerate()
    {
        let req = ask(&format!("fine {i}"));
        let mut fine = answer("fine");
        if let Response::Chat(c) = &mut fine {
            c.finish_reason = reason;
        }
        cache.store(&req, &ctx, "g", &fine).await;
        assert!(cache.lookup(&req, &ctx, "g").await.is_some(), "{i}");
    }
}

/// An answer cut at its token limit before it showed anything (a reasoning model that spent
/// `max_tokens` thinking: `Length` and no text) is not stored, as a call or as a stream: it
/// would be served for the whole TTL, to paraphrases too. One with text, cut or not, is.
#[tokio::test]
async fn an_answer_cut_at_its_limit_before_showing_anything_is_not_stored() {
    use infermux_core::{FinishReason, Response};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("think hard");
    let mut empty = answer("");
    if let Response::Chat(c) = &mut empty {
        c.finish_reason = Some(FinishReason::Length);
        c.message
            .content
            .push(infermux_core::ContentPart::Thinking {
                text: "a long thought".into(),
                signature: None,
            });
    }
    cache.store(&req, &ctx, "g", &empty).await;
    assert!(
        cache.lookup(&req, &ctx, "g").await.is_none(),
        "stored as a call"
    );
    let evs = vec![
        StreamEvent::ReasoningDelta {
            text: "thinking…".into(),
        },
        StreamEvent::TextDelta { text: "".into() },
        // (a citation, or a server tool's call, is not an answer shown)
        StreamEvent::Part {
            part: infermux_core::ContentPart::Citation {
                raw: serde_json::json!({"type": "url_citation", "url": "https://example.org"}),
            },
        },
        StreamEvent::Done {
            finish_reason: Some(FinishReason::Length),
        },
    ];
    let passed: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert_eq!(passed.len(), evs.len(), "passed on whole");
    assert!(
        cache.lookup_stream(&req, &ctx, "g").await.is_none(),
        "stored as a stream"
    );
    assert_eq!(cache.snapshot().stores, 0);
    // cut, with something shown: stored
    let mut cut = evs;
    cut.insert(
        1,
        StreamEvent::TextDelta {
            text: "half an".into(),
        },
    );
    let _: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&cut))).collect().await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_some());
}

/// A consumer that stops at `Done` and drops the stream has had the whole answer: it is
/// stored (in a task of its own) as if the stream had been read to its end.
#[tokio::test]
async fn a_stream_dropped_right_after_done_is_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("tell");
    let evs = events(&["a", "b"]);
    let mut s = cache.tee(&req, &ctx, "g", live(oks(&evs)));
    while let Some(ev) = s.next().await {
        if matches!(ev.unwrap(), StreamEvent::Done { .. }) {
            break;
        }
    }
    drop(s);
    // the store runs in a task of its own: let it run
    for _ in 0..100 {
        if cache.snapshot().stores > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (replay, _) = cache.lookup_stream(&req, &ctx, "g").await.expect("stored");
    let replayed: Vec<_> = replay.map(Result::unwrap).collect().await;
    assert_eq!(replayed, evs);
}

/// Whole parts count at their size toward the recording's bound: a stream of images (a
/// Gemini image model's, megabytes each) too large to record passes unrecorded.
#[tokio::test]
async fn whole_parts_count_toward_the_recording_bound() {
    use infermux_core::{ContentPart, ImageSource};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("draw five pictures");
    let image = |n: usize| StreamEvent::Part {
        part: ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "A".repeat(n),
            },
            detail: None,
        },
    };
    let mut evs: Vec<StreamEvent> = (0..5).map(|_| image(2 * 1024 * 1024)).collect();
    evs.push(StreamEvent::Done {
        finish_reason: None,
    });
    let passed: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert_eq!(passed.len(), 6);
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    // small ones are recorded as before
    let evs = vec![
        image(1024),
        StreamEvent::Done {
            finish_reason: None,
        },
    ];
    let _: Vec<_> = cache.tee(&req, &ctx, "g", live(oks(&evs))).collect().await;
    assert!(cache.lookup_stream(&req, &ctx, "g").await.is_some());
}

/// A plain answer larger than a recording holds (about 8 MiB as JSON: an image model's answer,
/// a batch of thousands of embeddings) is passed on and not stored, as a stream that long is
/// not; the cache is bounded by its count of entries, so each must be bounded in size.
#[tokio::test]
async fn a_plain_answer_too_large_to_keep_is_not_stored() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("write a very long story");
    cache
        .store(&req, &ctx, "g", &answer(&"x".repeat(9 * 1024 * 1024)))
        .await;
    assert!(cache.lookup(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    cache
        .store(&req, &ctx, "g", &answer(&"x".repeat(7 * 1024 * 1024)))
        .await;
    assert!(cache.lookup(&req, &ctx, "g").await.is_some());
}

/// A stored completion stream does not keep later completion calls from being cached: a
/// stored stream answers chat calls only, so a completion call's answer replaces it. Before,
/// it was kept, every completion call missed and went to the provider for the stream's whole
/// lifetime, and the counters showed stores that kept nothing.
#[tokio::test]
async fn a_completion_call_is_cached_after_a_stream_of_the_same_completion() {
    use infermux_core::{CompletionRequest, CompletionResponse, Request, Response};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = Request::Completion(CompletionRequest::new("m", "Once upon a time"));
    let streamed = cache
        .stream(&req, &ctx, "g", || async {
            Ok(live(oks(&events(&["there", " was"]))))
        })
        .await
        .unwrap();
    let _: Vec<_> = streamed.events.collect().await;
    let calls = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..2 {
        let r = cache
            .call(&req, &ctx, "g", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Response::Completion(CompletionResponse::new(
                    "m",
                    "there was",
                )))
            })
            .await
            .unwrap();
        assert!(matches!(r, Response::Completion(_)));
    }
    assert_eq!(calls.into_inner(), 1, "the second call was a hit");
}
