//! Live tests against the real llama.cpp server (`INFERMUX_LLAMA_URL`, `INFERMUX_LLAMA_EMBED_URL`)
//! and the conformance suite against it and against the simulator.

use std::sync::Arc;

use futures_util::StreamExt;
use infermux_core::{Provider, Request, RequestContext, Response, StreamEvent};
use infermux_testkit::{FaultPlan, Simulator, SuiteConfig, conformance, server_url};

use crate::{chat_request, provider};

#[tokio::test]
async fn live_chat_and_stream() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let p = provider(&format!("{url}/v1"));
    let ctx = RequestContext::new();
    let Response::Chat(r) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap() else {
        panic!()
    };
    assert!(!r.text().trim().is_empty());
    assert!(r.usage.unwrap().output_tokens > 0);
    let mut s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    let mut text = String::new();
    let mut done = false;
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            StreamEvent::TextDelta { text: t } => text.push_str(&t),
            StreamEvent::Done { .. } => done = true,
            _ => {}
        }
    }
    assert!(done);
    // llama.cpp's prompt cache makes streamed and plain answers differ even at temperature 0,
    // so only their shape is compared.
    assert!(!text.trim().is_empty());
}

#[tokio::test]
async fn live_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let Some(embed_url) = server_url("INFERMUX_LLAMA_EMBED_URL") else {
        return;
    };
    // llama.cpp ignores the requested tool choice for this model's template: tools are proven on
    // recorded provider traffic and the simulator instead.
    let cfg = SuiteConfig::new("smollm2").with_tools(false);
    let report = conformance::run(Arc::new(provider(&format!("{url}/v1"))), &cfg).await;
    eprintln!("{report:?}");
    report.assert_ok();
    let embed_cfg = SuiteConfig::new("smollm2")
        .with_embed_model("smollm2")
        .with_tools(false);
    let embedder: Arc<dyn Provider> = Arc::new(provider(&format!("{embed_url}/v1")));
    let report = conformance::run(embedder, &embed_cfg).await;
    assert!(report.passed.contains(&"embeddings"), "{report:?}");
}

#[tokio::test]
async fn simulator_conformance() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("sim-embed")
        .deterministic(true);
    let report = conformance::run(Arc::new(provider(&format!("{}/v1", sim.url()))), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
}

/// The suite opens each request once more when a connection was closed under it (a live
/// server closing a kept-alive connection just as it is reused: seen once from llama.cpp's
/// server in CI), and only once: two closes in a row fail the check.
#[tokio::test]
async fn simulator_conformance_opens_once_more_after_one_closed_connection_not_twice() {
    use infermux_testkit::Fault;
    let cfg = |sim: &Simulator| {
        SuiteConfig::new(sim.model())
            .with_embed_model("sim-embed")
            .deterministic(true)
    };
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    sim.push_fault(Fault::Reset);
    let report =
        conformance::run(Arc::new(provider(&format!("{}/v1", sim.url()))), &cfg(&sim)).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
    assert_eq!(sim.faults(), vec![("reset", 1)]);

    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    sim.push_fault(Fault::Reset);
    sim.push_fault(Fault::Reset);
    let report =
        conformance::run(Arc::new(provider(&format!("{}/v1", sim.url()))), &cfg(&sim)).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "chat");
    assert!(report.failed[0].1.contains("chat failed"), "{report:?}");
}

/// One defect the suite's checks must catch, put into a good provider's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// A forced tool call reported as a plain stop.
    ToolCallAsStop,
    /// The tool called renamed.
    OtherTool,
    /// A stream without its `Done` event.
    NoDone,
    /// Text after the stream's `Done`.
    TextAfterDone,
    /// Every embedding the same vector.
    SameVectors,
}

#[derive(Debug)]
struct Defective {
    inner: Arc<dyn Provider>,
    defect: Defect,
}

#[async_trait::async_trait]
impl Provider for Defective {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn endpoint(&self) -> &infermux_core::EndpointId {
        self.inner.endpoint()
    }
    fn capabilities(&self) -> infermux_core::Capabilities {
        self.inner.capabilities()
    }
    async fn call(
        &self,
        request: &Request,
        ctx: &RequestContext,
    ) -> infermux_core::Result<Response> {
        let mut resp = self.inner.call(request, ctx).await?;
        match (self.defect, &mut resp) {
            (Defect::ToolCallAsStop, Response::Chat(c)) if !c.tool_calls().is_empty() => {
                c.finish_reason = Some(infermux_core::FinishReason::Stop);
            }
            (Defect::OtherTool, Response::Chat(c)) => {
                for call in &mut c.message.tool_calls {
                    call.name = "get_time".into();
                }
            }
            (Defect::SameVectors, Response::Embeddings(e)) => {
                if let Some(first) = e.embeddings.first().cloned() {
                    for v in &mut e.embeddings {
                        *v = first.clone();
                    }
                }
            }
            _ => {}
        }
        Ok(resp)
    }
    async fn stream(
        &self,
        request: &Request,
        ctx: &RequestContext,
    ) -> infermux_core::Result<infermux_core::EventStream> {
        let s = self.inner.stream(request, ctx).await?;
        match self.defect {
            Defect::NoDone => {
                Ok(Box::pin(s.filter(|e| {
                    std::future::ready(!matches!(e, Ok(StreamEvent::Done { .. })))
                })))
            }
            Defect::TextAfterDone => Ok(Box::pin(s.chain(futures_util::stream::iter([Ok(
                StreamEvent::TextDelta {
                    text: "late".into(),
                },
            )])))),
            _ => Ok(s),
        }
    }
}

/// Each defect fails the check that owns it: the suite's checks can fail (before, a forced
/// tool call reported as a plain stop passed).
#[tokio::test]
async fn every_defect_fails_its_own_check() {
    for (defect, check, why) in [
        (Defect::ToolCallAsStop, "tools", "finish reason"),
        (Defect::OtherTool, "tools", "called"),
        (Defect::NoDone, "chat_stream", "without a Done"),
        (
            Defect::TextAfterDone,
            "chat_stream",
            "does not end with Done",
        ),
        (Defect::SameVectors, "embeddings", ""),
    ] {
        let sim = Simulator::start(FaultPlan::none()).await.unwrap();
        let cfg = SuiteConfig::new(sim.model())
            .with_embed_model("sim-embed")
            .deterministic(true);
        let inner: Arc<dyn Provider> = Arc::new(provider(&format!("{}/v1", sim.url())));
        let report = conformance::run(Arc::new(Defective { inner, defect }), &cfg).await;
        let failed: Vec<&str> = report.failed.iter().map(|(n, _)| *n).collect();
        assert!(failed.contains(&check), "{defect:?}: {report:?}");
        assert!(
            report
                .failed
                .iter()
                .any(|(n, reason)| *n == check && reason.contains(why)),
            "{defect:?}: {report:?}"
        );
    }
}
