//! Item 3: a stream is retried until its first *content* event. Every decoder emits a
//! metadata-only `Start` first, so an error right after it (OpenAI's role-only chunk then an
//! error; Anthropic's `message_start` then `overloaded_error`) must still be retried, and the
//! caller must see exactly one `Start`, then the whole answer.

use std::sync::Arc;

use futures_util::StreamExt;
use infermux_anthropic::Anthropic;
use infermux_core::{
    ChatRequest, EndpointConfig, EventStream, Message, Provider, Request, RequestContext,
    StreamEvent,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{ResilienceConfig, Resilient};
use infermux_testkit::{Fault, FaultPlan, Simulator};

use crate::stub::quick_retry;

fn retry() -> Arc<StandardRetry> {
    Arc::new(quick_retry(3, 3))
}

fn chat(text: &str) -> Request {
    Request::Chat(ChatRequest::new("sim-echo-1", vec![Message::user(text)]).with_max_tokens(64))
}

async fn events(s: EventStream) -> Vec<StreamEvent> {
    s.map(|e| e.unwrap()).collect().await
}

fn text(evs: &[StreamEvent]) -> String {
    evs.iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn starts(evs: &[StreamEvent]) -> usize {
    evs.iter()
        .filter(|e| matches!(e, StreamEvent::Start { .. }))
        .count()
}

async fn check(provider: Arc<dyn Provider>, sim: &Simulator, fault: Fault) {
    let stack = Resilient::new(provider, ResilienceConfig::standard().with_retry(retry())).unwrap();
    sim.push_fault(fault);
    let s = stack
        .stream(&chat("one two three"), &RequestContext::new())
        .await
        .unwrap_or_else(|e| panic!("{fault:?} was not retried: {e}"));
    let evs = events(s).await;
    assert_eq!(starts(&evs), 1, "{fault:?}: exactly one Start: {evs:?}");
    assert!(
        matches!(evs.first(), Some(StreamEvent::Start { .. })),
        "{fault:?}: the metadata comes first, in order: {evs:?}"
    );
    assert_eq!(text(&evs), "Echo: one two three", "{fault:?}");
    assert!(matches!(evs.last(), Some(StreamEvent::Done { .. })));
    let c = stack.counters().snapshot();
    assert_eq!((c.requests, c.retries, c.successes), (2, 1, 1), "{fault:?}");
}

#[tokio::test]
async fn openai_style_error_after_start_is_retried_and_the_caller_sees_one_start_and_the_full_text()
{
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider: Arc<dyn Provider> = Arc::new(
        OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
            .unwrap(),
    );
    check(provider.clone(), &sim, Fault::ErrorAfterStart).await;
    truncated_before_content(provider, &sim).await;
}

/// A stream that ends after its `Start`, before any content, is an attempt failure the
/// policy sees (a `Decode` error: not retried by the standard policy), never a stream handed
/// to the caller.
async fn truncated_before_content(provider: Arc<dyn Provider>, sim: &Simulator) {
    let stack = Resilient::new(provider, ResilienceConfig::standard().with_retry(retry())).unwrap();
    sim.push_fault(Fault::TruncateAfterStart);
    let e = stack
        .stream(&chat("x"), &RequestContext::new())
        .await
        .err()
        .expect("an attempt failure, not a stream");
    assert_eq!(e.kind(), infermux_core::ErrorKind::Decode, "{e}");
    assert_eq!(e.attempts(), 1);
    let c = stack.counters().snapshot();
    assert_eq!((c.requests, c.successes), (1, 0));
    assert_eq!(c.failures(infermux_core::ErrorKind::Decode), 1);
}

#[tokio::test]
async fn anthropic_style_overloaded_after_message_start_is_retried_and_the_caller_sees_one_start_and_the_full_text()
 {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider: Arc<dyn Provider> = Arc::new(
        Anthropic::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap(),
    );
    check(provider.clone(), &sim, Fault::ErrorAfterStart).await;
    truncated_before_content(provider, &sim).await;
}

#[tokio::test]
async fn once_content_reached_the_caller_nothing_is_retried() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    for provider in [
        Arc::new(
            OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
                .unwrap(),
        ) as Arc<dyn Provider>,
        Arc::new(
            Anthropic::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
                .unwrap(),
        ),
    ] {
        let stack =
            Resilient::new(provider, ResilienceConfig::standard().with_retry(retry())).unwrap();
        sim.push_fault(Fault::ErrorInStream);
        let mut s = stack
            .stream(&chat("one two"), &RequestContext::new())
            .await
            .unwrap();
        let mut seen = Vec::new();
        let err = loop {
            match s.next().await {
                Some(Ok(ev)) => seen.push(ev),
                Some(Err(e)) => break e,
                None => panic!("the stream ended without its error"),
            }
        };
        assert_eq!(text(&seen), "Echo:", "the first content reached the caller");
        assert!(
            err.is_retryable(),
            "retryable in itself, but too late: {err}"
        );
        let c = stack.counters().snapshot();
        assert_eq!((c.requests, c.retries), (1, 0));
    }
}
