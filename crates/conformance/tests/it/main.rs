//! Integration tests of the conformance runner: a tiny corpus written here (answers, errors by
//! status and inside streams, unsupported routes), recordings it must fail, a deliberately
//! faulty decoder whose every fault must be caught, and the real recorded traffic in
//! `../shared/fixtures/cassettes` (skipped when absent unless `INFERMUX_REQUIRE_FIXTURES=1`).

mod corpus;
mod faults;
mod shared;

use std::path::Path;

use infermux_conformance::{Record, Report, Runner, Verdict};

/// The report of `runner` on the corpus at `dir`, whose summary adds up
/// ([`assert_adds_up`]).
pub(crate) async fn run(runner: &Runner, dir: &Path) -> Report {
    let report = runner.run_corpus(dir).await.unwrap();
    assert_adds_up(&report);
    report
}

/// How many interactions passed, failed and were unsupported.
pub(crate) fn counts(report: &Report) -> (usize, usize, usize) {
    let s = report.summary();
    (s.passed, s.failed, s.unsupported)
}

pub(crate) fn by_file<'a>(report: &'a Report, file: &str) -> &'a Record {
    report
        .records
        .iter()
        .find(|r| r.file == file)
        .unwrap_or_else(|| panic!("no record for {file}"))
}

/// Asserts the summary adds up: every record is passed, failed or unsupported with a reason,
/// and the unsupported reasons sum to the unsupported count.
fn assert_adds_up(report: &Report) {
    let s = report.summary();
    assert_eq!(s.passed + s.failed + s.unsupported, s.interactions, "{s:?}");
    assert_eq!(s.interactions, report.records.len());
    assert_eq!(s.unsupported_reasons.values().sum::<usize>(), s.unsupported);
    for r in &report.records {
        if r.verdict != Verdict::Passed {
            assert!(
                r.reason.as_deref().is_some_and(|w| !w.is_empty()),
                "{}",
                r.line()
            );
        }
    }
}
