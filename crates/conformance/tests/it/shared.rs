//! The runner on the real recorded traffic of `../shared/fixtures/cassettes`: the summary adds
//! up, every unsupported interaction has a reason, and every provider with recorded traffic
//! has passing interactions.

use std::path::PathBuf;

use infermux_conformance::{Runner, Verdict};

use crate::{assert_adds_up, run};

/// The shared corpus (`INFERMUX_SHARED_CASSETTES` overrides where it is, for worktrees that
/// do not sit beside `shared/`); when absent the test is skipped, or fails under
/// `INFERMUX_REQUIRE_FIXTURES=1`.
pub(crate) fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("INFERMUX_SHARED_CASSETTES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/cassettes"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("INFERMUX_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} is absent but INFERMUX_REQUIRE_FIXTURES=1",
        dir.display()
    );
    eprintln!(
        "skipping: {} not found (the shared real-traffic corpus)",
        dir.display()
    );
    None
}

#[tokio::test]
async fn the_shared_corpus_summary_adds_up() {
    let Some(dir) = corpus() else { return };
    let report = run(&Runner::new(), &dir).await;
    assert_adds_up(&report);
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
    eprintln!("{s}\n{}", failed.join("\n"));
}
