//! The runner on the real recorded traffic of the shared fixtures (`fixtures/cassettes`): the
//! summary adds up, every unsupported interaction has a reason, every provider with recorded
//! traffic has passing interactions, and none fails.

use std::path::PathBuf;

use infermux_conformance::{Runner, Verdict};

use crate::run;

/// The shared corpus; when absent the test is skipped visibly, or fails under
/// `INFERMUX_REQUIRE_FIXTURES=1`.
pub(crate) fn corpus() -> Option<PathBuf> {
    infermux_testkit::shared_fixture("fixtures/cassettes")
}

#[tokio::test]
async fn the_shared_corpus_summary_adds_up() {
    let Some(dir) = corpus() else { return };
    let report = run(&Runner::new(), &dir).await;
    let s = report.summary();
    assert!(s.interactions > 100, "{s:?}");
    for p in [
        "openai",
        "openai-compat",
        "groq",
        "anthropic",
        "gemini",
        "ollama",
        "tgi",
        "tei",
    ] {
        assert!(
            report
                .records
                .iter()
                .any(|r| r.provider == p && r.verdict == Verdict::Passed),
            "no passing interaction for {p}"
        );
    }
    let failed: Vec<String> = report
        .records
        .iter()
        .filter(|r| r.verdict == Verdict::Failed)
        .map(|r| r.line())
        .collect();
    assert!(
        failed.is_empty(),
        "{s}: every routed interaction of the shared corpus decodes as recorded:\n{}",
        failed.join("\n")
    );
}
