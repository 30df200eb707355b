//! Item 10: a `tracing` span per call and per attempt with the request id, provider,
//! endpoint, model, attempt number and outcome under OpenTelemetry GenAI field names; events
//! for retries (with the wait), breaker transitions and queue waits; no key in any field.
//! A hand-written subscriber records every span, field and event as text.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infermux_core::{
    ApiKey, ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::{ResilienceConfig, Resilient};
use infermux_testkit::{Fault, FaultPlan, Simulator};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::stub::quick_retry;

#[derive(Debug, Clone, Default)]
struct Recorded {
    name: String,
    fields: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    spans: Mutex<Vec<Recorded>>,
    events: Mutex<Vec<Recorded>>,
    next: AtomicU64,
}

/// Records everything; cheap enough for tests.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Store>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut r = Recorded {
            name: attrs.metadata().name().to_owned(),
            ..Recorded::default()
        };
        attrs.record(&mut Fields(&mut r.fields));
        let mut spans = self.0.spans.lock().unwrap();
        spans.push(r);
        self.0.next.fetch_add(1, Ordering::SeqCst);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.0.spans.lock().unwrap();
        if let Some(r) = spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(&mut r.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut r = Recorded {
            name: event.metadata().target().to_owned(),
            ..Recorded::default()
        };
        event.record(&mut Fields(&mut r.fields));
        self.0.events.lock().unwrap().push(r);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<HashMap<String, String>> {
        let spans = self.0.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.fields.clone())
            .collect()
    }
    fn events_with(&self, field: &str) -> Vec<HashMap<String, String>> {
        let events = self.0.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.fields.contains_key(field))
            .map(|e| e.fields.clone())
            .collect()
    }
    fn all_text(&self) -> String {
        format!(
            "{:?}{:?}",
            self.0.spans.lock().unwrap(),
            self.0.events.lock().unwrap()
        )
    }
}

const KEY: &str = "sk-trace-secret-7d1f0c";

#[tokio::test]
async fn call_and_attempt_spans_carry_genai_fields_and_no_key() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());

    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    sim.require_api_key(KEY);
    let cfg = EndpointConfig::new("sim-ep", format!("{}/v1", sim.url()))
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    let provider: Arc<dyn Provider> = Arc::new(OpenAiCompat::new(cfg).unwrap());
    let stack = Arc::new(
        Resilient::new(
            provider,
            ResilienceConfig::standard()
                .with_queue(QueueConfig::standard().with_permits(1))
                .with_retry(Arc::new(quick_retry(3, 1)))
                .with_breaker(Some(
                    BreakerConfig::standard()
                        .with_window(SlidingWindow::Count(2))
                        .with_minimum_calls(2)
                        .with_open_wait(Duration::ZERO)
                        .with_half_open_probes(1),
                )),
        )
        .unwrap(),
    );
    let req = Request::Chat(ChatRequest::new("sim-echo-1", vec![Message::user("a b")]));
    // one 503, retried: two attempts, a retry event
    sim.push_fault(Fault::Unavailable);
    let ctx = RequestContext::new();
    stack.call(&req, &ctx).await.unwrap();

    let calls = capture.spans("infermux.call");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    let field = |k: &str| call.get(k).map(String::as_str);
    assert_eq!(field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(field("gen_ai.provider.name"), Some("openai-compat"));
    assert_eq!(field("gen_ai.request.model"), Some("sim-echo-1"));
    assert_eq!(
        field("infermux.request_id"),
        Some(ctx.request_id().to_string().as_str())
    );
    assert_eq!(field("infermux.endpoint"), Some("sim-ep"));
    assert_eq!(field("infermux.attempts"), Some("2"));
    assert_eq!(field("gen_ai.usage.input_tokens"), Some("2"));
    assert!(field("gen_ai.usage.output_tokens").is_some(), "{call:?}");

    let attempts = capture.spans("infermux.attempt");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["infermux.attempt"], "1");
    assert_eq!(attempts[0]["infermux.outcome"], "error");
    assert_eq!(attempts[0]["error.type"], "server");
    assert_eq!(attempts[0]["infermux.breaker_outcome"], "failure");
    assert_eq!(attempts[1]["infermux.attempt"], "2");
    assert_eq!(attempts[1]["infermux.outcome"], "success");

    let retries = capture.events_with("infermux.retry.wait_ms");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["error.type"], "server");

    // a waiting call: a queue-wait event; two failures: breaker transitions
    let holder = {
        sim.push_fault(Fault::StallBeforeHeaders);
        let (stack, req) = (stack.clone(), req.clone());
        tokio::spawn(async move { stack.stream(&req, &RequestContext::new()).await })
    };
    sim.wait_stalled(1).await;
    let waiter = {
        let (stack, req) = (stack.clone(), req.clone());
        tokio::spawn(async move { stack.call(&req, &RequestContext::new()).await })
    };
    stack.admission().wait_queued(1).await;
    sim.release_stalls();
    drop(holder.await.unwrap().unwrap());
    waiter.await.unwrap().unwrap();
    assert!(
        !capture.events_with("infermux.queue.wait_ms").is_empty(),
        "a queue wait is an event"
    );
    for _ in 0..6 {
        sim.push_fault(Fault::Unavailable);
    }
    for _ in 0..2 {
        let _ = stack.call(&req, &RequestContext::new()).await;
    }
    let transitions = capture.events_with("infermux.breaker.to");
    assert!(
        transitions
            .iter()
            .any(|t| t["infermux.breaker.from"] == "closed" && t["infermux.breaker.to"] == "open"),
        "{transitions:?}"
    );

    // a refused key: the error path is traced too
    let wrong = "sk-trace-wrong-99aa";
    let cfg = EndpointConfig::new("sim-ep", format!("{}/v1", sim.url()))
        .unwrap()
        .with_api_key(ApiKey::new(wrong));
    let refused = Resilient::new(
        Arc::new(OpenAiCompat::new(cfg).unwrap()),
        ResilienceConfig::standard(),
    )
    .unwrap();
    let e = refused
        .call(&req, &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::Auth);
    let auth = capture.spans("infermux.call");
    assert_eq!(
        auth.last()
            .and_then(|c| c.get("error.type"))
            .map(String::as_str),
        Some("auth")
    );

    let text = capture.all_text();
    assert!(text.contains("sim-echo-1"), "the capture works: {text}");
    assert!(!text.contains(KEY), "a key in a tracing field: {text}");
    assert!(!text.contains(wrong), "a key in a tracing field: {text}");
}
