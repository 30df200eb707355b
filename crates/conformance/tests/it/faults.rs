//! The checks can fail: a provider wrapper corrupts decoded answers in one way at a time
//! (drops one text delta, swaps two tool-call arguments, loses the usage, returns one vector
//! fewer, reports wrong model ids), and each fault must turn an interaction that passes
//! cleanly into a failure whose reason names the difference — on the corpus written here
//! and on the shared recorded traffic.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use infermux::{
    Capabilities, EndpointId, EventStream, Provider, Request, RequestContext, Response, Result,
    StreamEvent,
};
use infermux_conformance::{Report, Runner, Verdict};
use infermux_testkit::helpers::temp_corpus;
use serde_json::Value;

use crate::corpus::good_corpus;
use crate::run;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    DropTextDelta,
    SwapToolArguments,
    LoseUsage,
    OneVectorFewer,
    WrongModelIds,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::DropTextDelta,
        Fault::SwapToolArguments,
        Fault::LoseUsage,
        Fault::OneVectorFewer,
        Fault::WrongModelIds,
    ];

    /// The words the failure's reason must contain.
    fn named(self) -> &'static str {
        match self {
            Fault::DropTextDelta => "text",
            Fault::SwapToolArguments => "tool calls",
            Fault::LoseUsage => "tokens",
            Fault::OneVectorFewer => "vectors",
            Fault::WrongModelIds => "ids",
        }
    }
}

/// A provider that corrupts what the one it wraps decodes.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Provider>,
    fault: Fault,
}

/// Swaps the arguments of the first two tool calls, or the values of the first two
/// arguments of a single call.
fn swap_arguments(r: &mut infermux::ChatResponse) {
    let calls = &mut r.message.tool_calls;
    if calls.len() >= 2 {
        let a = calls[0].arguments.clone();
        calls[0].arguments = std::mem::replace(&mut calls[1].arguments, a);
        return;
    }
    if let Some(c) = calls.first_mut()
        && let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(&c.arguments)
        && m.len() >= 2
    {
        let keys: Vec<String> = m.keys().take(2).cloned().collect();
        let first = m[&keys[0]].clone();
        let second = std::mem::replace(m.get_mut(&keys[1]).unwrap(), first);
        m.insert(keys[0].clone(), second);
        c.arguments = Value::Object(m).to_string();
    }
}

#[async_trait]
impl Provider for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn endpoint(&self) -> &EndpointId {
        self.inner.endpoint()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let mut resp = self.inner.call(request, ctx).await?;
        match (self.fault, &mut resp) {
            (Fault::SwapToolArguments, Response::Chat(c)) => swap_arguments(c),
            (Fault::LoseUsage, Response::Chat(c)) => c.usage = None,
            (Fault::LoseUsage, Response::Completion(c)) => c.usage = None,
            (Fault::LoseUsage, Response::Embeddings(e)) => e.usage = None,
            (Fault::OneVectorFewer, Response::Embeddings(e)) => {
                e.embeddings.pop();
            }
            (Fault::WrongModelIds, Response::Models(m)) => {
                if let Some(first) = m.models.first_mut() {
                    first.id.push_str("-wrong");
                }
            }
            _ => {}
        }
        Ok(resp)
    }
    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let s = self.inner.stream(request, ctx).await?;
        let fault = self.fault;
        let mut deltas = 0usize;
        Ok(Box::pin(s.filter(move |ev| {
            let keep = match (fault, ev) {
                (Fault::DropTextDelta, Ok(StreamEvent::TextDelta { text })) if !text.is_empty() => {
                    deltas += 1;
                    deltas != 2
                }
                (Fault::LoseUsage, Ok(StreamEvent::Usage(_))) => false,
                _ => true,
            };
            std::future::ready(keep)
        })))
    }
}

fn faulty(fault: Fault) -> Runner {
    Runner::new().with_provider_wrapper(move |inner| Arc::new(Faulty { inner, fault }))
}

/// Each fault turns at least one interaction that passes cleanly into a failure naming the
/// difference; nothing that failed cleanly passes under a fault. The model-id fault needs a
/// passing model listing: `listings` says whether the corpus must have one (the recorded
/// traffic has none, so there that fault is shown by the corpus written here only).
async fn assert_every_fault_is_caught(dir: &std::path::Path, listings: bool) {
    let clean = run(&Runner::new(), dir).await;
    let listed = clean
        .records
        .iter()
        .any(|r| r.verdict == Verdict::Passed && r.operation.ends_with("models"));
    assert!(
        listed || !listings,
        "no passing model listing in {}",
        dir.display()
    );
    for fault in Fault::ALL {
        if fault == Fault::WrongModelIds && !listed {
            continue;
        }
        let spoiled: Report = run(&faulty(fault), dir).await;
        let caught: Vec<String> = clean
            .records
            .iter()
            .zip(&spoiled.records)
            .filter(|(c, s)| c.verdict == Verdict::Passed && s.verdict == Verdict::Failed)
            .map(|(_, s)| s.reason.clone().unwrap_or_default())
            .collect();
        assert!(
            caught.iter().any(|why| why.contains(fault.named())),
            "{fault:?} was not caught (reasons: {caught:?})"
        );
        for (c, s) in clean.records.iter().zip(&spoiled.records) {
            assert!(
                !(c.verdict == Verdict::Failed && s.verdict == Verdict::Passed),
                "{fault:?} made {} pass",
                s.line()
            );
        }
    }
}

#[tokio::test]
async fn every_decoder_fault_is_reported_as_failed() {
    let dir = temp_corpus("faults");
    good_corpus(&dir);
    // the corpus written here has a model listing: every fault is shown
    assert!(std::fs::read_to_string(dir.join("openai/models.yaml")).is_ok());
    assert_every_fault_is_caught(&dir, true).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn every_decoder_fault_is_reported_as_failed_on_recorded_traffic() {
    let Some(dir) = crate::shared::corpus() else {
        return;
    };
    assert_every_fault_is_caught(&dir, false).await;
}

/// A provider whose requests or errors are spoiled on the way: `request` changes what it
/// sends, `error` what it reports.
#[derive(Debug)]
struct Spoiled {
    inner: Arc<dyn Provider>,
    request: fn(&Request) -> Request,
    error: fn(infermux::Error) -> infermux::Error,
}

#[async_trait]
impl Provider for Spoiled {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn endpoint(&self) -> &EndpointId {
        self.inner.endpoint()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let sent = (self.request)(request);
        self.inner.call(&sent, ctx).await.map_err(self.error)
    }
    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let sent = (self.request)(request);
        self.inner.stream(&sent, ctx).await.map_err(self.error)
    }
}

/// The reasons of the interactions that pass with the providers as they are and fail with
/// them spoiled as `request` and `error` say.
async fn newly_failed(
    dir: &std::path::Path,
    request: fn(&Request) -> Request,
    error: fn(infermux::Error) -> infermux::Error,
) -> Vec<String> {
    let clean = run(&Runner::new(), dir).await;
    let spoiled = run(
        &Runner::new().with_provider_wrapper(move |inner| {
            Arc::new(Spoiled {
                inner,
                request,
                error,
            })
        }),
        dir,
    )
    .await;
    clean
        .records
        .iter()
        .zip(&spoiled.records)
        .filter(|(c, s)| c.verdict == Verdict::Passed && s.verdict == Verdict::Failed)
        .map(|(_, s)| s.reason.clone().unwrap_or_default())
        .collect()
}

/// A chat request with its last message twice: the answer replayed is the recorded one all
/// the same, so only the check of the request body can tell.
fn last_message_twice(request: &Request) -> Request {
    let mut r = request.clone();
    if let Request::Chat(c) = &mut r
        && let Some(last) = c.messages.last().cloned()
    {
        c.messages.push(last);
    }
    r
}

/// A provider that sends another conversation than the recorded request fails those
/// interactions, though the answer it decodes is the recorded one. Before, a conformance
/// pass never looked at the request body (method, path and query only).
#[tokio::test]
async fn a_request_that_departs_from_the_recording_fails() {
    let dir = temp_corpus("request-body");
    good_corpus(&dir);
    let caught = newly_failed(&dir, last_message_twice, |e| e).await;
    assert!(!caught.is_empty(), "no interaction failed");
    assert!(
        caught
            .iter()
            .all(|r| r.contains("departed from the recording") && r.contains("`messages`")),
        "{caught:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The right kind without the HTTP status.
fn without_status(e: infermux::Error) -> infermux::Error {
    infermux::Error::new(e.kind(), e.message().to_owned())
}

/// A recorded error status must be the error's status, not only its kind: a provider that
/// reports the right kind without the status fails the recorded 4xx answers. Before, the
/// runner judged recorded errors by kind alone.
#[tokio::test]
async fn an_error_without_the_recorded_status_fails() {
    let dir = temp_corpus("error-status");
    good_corpus(&dir);
    crate::corpus::errors_and_unsupported(&dir);
    let caught = newly_failed(&dir, Request::clone, without_status).await;
    assert!(!caught.is_empty(), "no interaction failed");
    assert!(
        caught
            .iter()
            .all(|r| r.contains("error status None for a recorded 4")),
        "{caught:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
