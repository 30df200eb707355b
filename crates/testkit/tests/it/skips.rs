//! Skips are visible: a test that lacks the shared fixtures fails under
//! `INFERMUX_REQUIRE_FIXTURES=1` and is logged as skipped otherwise. Proven by running this
//! binary's own probe test in a child process with the fixtures folder pointed elsewhere.

use std::process::Command;

/// The probe: needs the shared cassettes (present in CI, so it passes there).
#[test]
fn probe_needs_the_shared_cassettes() {
    if let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes") {
        assert!(dir.is_dir());
    }
}

fn probe(require: bool, log: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "skips::probe_needs_the_shared_cassettes",
        "--nocapture",
    ])
    .env("INFERMUX_SHARED_DIR", "/nonexistent/infermux-shared")
    .env("INFERMUX_SKIP_LOG", log)
    .env_remove("INFERMUX_REQUIRE_FIXTURES");
    if require {
        cmd.env("INFERMUX_REQUIRE_FIXTURES", "1");
    }
    cmd.output().unwrap()
}

#[test]
fn absent_fixtures_fail_under_require_and_are_logged_as_skips_otherwise() {
    let log = std::env::temp_dir().join(format!(
        "infermux-skips-{}-{:?}.log",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));

    let required = probe(true, &log);
    let stdout = String::from_utf8_lossy(&required.stdout);
    assert!(
        !required.status.success(),
        "a missing fixture must fail under INFERMUX_REQUIRE_FIXTURES=1:\n{stdout}"
    );
    assert!(
        stdout.contains("1 failed"),
        "the probe ran and failed:\n{stdout}"
    );
    assert!(!log.exists(), "a failure is not logged as a skip");

    let skipped = probe(false, &log);
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    assert!(stderr.contains("SKIPPED "), "the skip is printed: {stderr}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let fields: Vec<&str> = logged.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{logged:?}");
    assert_eq!(fields[0], "fixtures");
    assert!(
        fields[1].ends_with("skips::probe_needs_the_shared_cassettes"),
        "{logged:?}"
    );
    assert!(
        fields[2].contains("/nonexistent/infermux-shared"),
        "{logged:?}"
    );
}
