//! Integration tests of the conformance runner: a tiny corpus written here (answers, errors by
//! status and inside streams, unsupported routes), recordings it must fail, a deliberately
//! faulty decoder whose every fault must be caught, and the real recorded traffic in
//! `../shared/fixtures/cassettes` (skipped when absent unless `INFERMUX_REQUIRE_FIXTURES=1`).

mod corpus;
mod faults;
mod shared;

use std::path::{Path, PathBuf};

use infermux_conformance::{Record, Report, Runner, Verdict};

/// A fresh folder under the system temp dir, unique to this test.
pub(crate) fn temp_corpus(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "infermux-conformance-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A one-interaction vcrpy cassette.
pub(crate) fn cassette(
    method: &str,
    uri: &str,
    request_body: &str,
    status: u16,
    content_type: &str,
    body: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "interactions:\n- request:\n    method: {method}\n    uri: {}\n    body: {}\n    headers: {{}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\nversion: 1\n",
        q(uri),
        q(request_body),
        q(content_type),
        q(body)
    )
}

pub(crate) fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub(crate) async fn run(runner: &Runner, dir: &Path) -> Report {
    runner.run_corpus(dir).await.unwrap()
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
pub(crate) fn assert_adds_up(report: &Report) {
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
