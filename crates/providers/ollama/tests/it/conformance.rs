//! The testkit conformance suite: the `/v1` mode against the testkit's OpenAI-compatible
//! simulator, the native mode against [`crate::native_sim`].

use std::sync::Arc;

use infermux_ollama::Mode;
use infermux_testkit::{FaultPlan, Simulator, SuiteConfig, conformance};

use crate::{native_sim, ollama};

#[tokio::test]
async fn openai_mode_passes_the_conformance_suite_on_the_simulator() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("sim-embed")
        .deterministic(true);
    let p = ollama(&sim.url()).with_mode(Mode::OpenAi);
    let report = conformance::run(Arc::new(p), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
}

#[tokio::test]
async fn native_mode_passes_the_conformance_suite() {
    let url = native_sim::start().await;
    let cfg = SuiteConfig::new("sim")
        .with_embed_model("sim-embed")
        .deterministic(true);
    let report = conformance::run(Arc::new(ollama(&url)), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
}
