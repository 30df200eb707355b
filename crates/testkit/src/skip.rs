//! Visible skips: what a test does when something it needs (a live server, the shared
//! fixtures, record mode) is absent.
//!
//! A skipped test still *passes* as far as the test harness is concerned, so a skip must be seen
//! some other way. [`skip`] does three things:
//!
//! - under the matching `INFERMUX_REQUIRE_*` variable (`INFERMUX_REQUIRE_SERVERS=1`,
//!   `INFERMUX_REQUIRE_FIXTURES=1`, set by `.ci/run`), it fails the test instead;
//! - it prints `SKIPPED <test>: <reason>` on stderr;
//! - when `INFERMUX_SKIP_LOG` names a file (as `cargo xtask ci` does), it appends one line to it,
//!   so the run's summary counts and lists every skip.
//!
//! The shared corpus of recorded traffic (`../shared` beside the repository, or
//! `INFERMUX_SHARED_DIR`) is found with [`shared_fixture`].

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "INFERMUX_SKIP_LOG";
/// Overrides where the shared fixtures live (default: `../shared` beside the repository).
pub const SHARED_DIR_ENV: &str = "INFERMUX_SHARED_DIR";

/// What a skipped test lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// A live server (required under `INFERMUX_REQUIRE_SERVERS=1`).
    Server,
    /// Shared fixtures: recorded traffic, specs, snapshots (required under
    /// `INFERMUX_REQUIRE_FIXTURES=1`).
    Fixtures,
    /// Record mode (`INFERMUX_RECORD=1`), which re-records a crate's own fixtures from a live
    /// server; never required.
    RecordMode,
    /// A Docker engine (`DOCKER_HOST`), which `.ci/run` cannot install here; required only
    /// under `INFERMUX_REQUIRE_DOCKER=1`, on machines that have one.
    DockerEngine,
}

impl Need {
    /// The variable that turns a skip for this need into a failure, if any.
    pub fn require_var(self) -> Option<&'static str> {
        match self {
            Need::Server => Some("INFERMUX_REQUIRE_SERVERS"),
            Need::Fixtures => Some("INFERMUX_REQUIRE_FIXTURES"),
            Need::RecordMode => None,
            Need::DockerEngine => Some("INFERMUX_REQUIRE_DOCKER"),
        }
    }

    /// A short stable name, used in the skip log.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Server => "server",
            Need::Fixtures => "fixtures",
            Need::RecordMode => "record-mode",
            Need::DockerEngine => "docker-engine",
        }
    }

    /// Whether the environment (read through `var`) requires this need, so a skip must fail:
    /// its variable is set to anything but empty, `0`, `false` or `no` (so `true` and `yes`
    /// require as `1` does, and a typo errs on the side of failing).
    pub fn is_required_by(self, var: impl Fn(&str) -> Option<String>) -> bool {
        self.require_var().and_then(var).is_some_and(|v| is_on(&v))
    }
}

/// Whether an `INFERMUX_REQUIRE_*` value asks for the requirement: anything but empty, `0`,
/// `false` or `no` (any case).
pub fn is_on(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "false" | "no")
}

/// Records that the running test is skipped because `need` is absent.
///
/// # Panics
/// When the environment requires `need` (see [`Need::require_var`]): the test fails with
/// `reason`.
pub fn skip(need: Need, reason: &str) {
    if need.is_required_by(|v| std::env::var(v).ok()) {
        panic!(
            "{reason}, but {}=1 requires it",
            need.require_var().unwrap_or("INFERMUX_REQUIRE")
        );
    }
    let test = test_name();
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV).filter(|v| !v.is_empty()) {
        let line = log_line(&test, need, reason);
        // One `write` of one line in append mode: concurrent test processes do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "could not append to the skip log {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// One line of the skip log: `<need>\t<test>\t<reason>\n` (tabs and newlines in the fields are
/// replaced by spaces).
pub fn log_line(test: &str, need: Need, reason: &str) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!("{}\t{}\t{}\n", need.as_str(), clean(test), clean(reason))
}

/// The running test's name: the test binary's and the test's (libtest names the thread after
/// the test).
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            // cargo's `<name>-<hash>` file names
            Some((name, hash)) if hash.len() == 16 => name.to_owned(),
            _ => s,
        })
        .unwrap_or_default();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("main");
    let crate_name = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    match (crate_name.is_empty(), binary.is_empty()) {
        (false, false) => format!("{crate_name}::{binary} {test}"),
        (false, true) => format!("{crate_name} {test}"),
        _ => test.to_owned(),
    }
}

/// Whether record mode is on (`INFERMUX_RECORD=1`): tests that re-record a crate's own fixtures
/// from a live server run only then, and are otherwise [`skip`]ped visibly (never required).
pub fn record_mode() -> bool {
    if std::env::var("INFERMUX_RECORD").is_ok_and(|v| v.trim() == "1") {
        return true;
    }
    skip(
        Need::RecordMode,
        "record mode is off (INFERMUX_RECORD=1 with a live server re-records this crate's fixtures)",
    );
    false
}

/// The folder of the shared fixtures: `INFERMUX_SHARED_DIR`, or `../shared` beside the
/// repository (whether or not it exists).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os(SHARED_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// `rel` under the shared fixtures folder (`fixtures/cassettes/gemini`,
/// `fixtures/specs/openai/openapi.json`, …) when it exists; otherwise the test is skipped with
/// [`skip`] (failing under `INFERMUX_REQUIRE_FIXTURES=1`) and this returns `None`.
///
/// ```
/// // A test that needs recorded traffic returns early when it is absent:
/// let Some(corpus) = infermux_testkit::shared_fixture("fixtures/cassettes/anthropic") else {
///     return;
/// };
/// assert!(corpus.is_dir());
/// ```
pub fn shared_fixture(rel: &str) -> Option<PathBuf> {
    let path = shared_dir().join(rel);
    if path.exists() {
        Some(path)
    } else {
        skip(
            Need::Fixtures,
            &format!("{} is absent (the shared fixtures)", path.display()),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_variables_turn_skips_into_failures() {
        let env = |set: &'static str| move |v: &str| (v == set).then(|| "1".to_owned());
        assert!(Need::Fixtures.is_required_by(env("INFERMUX_REQUIRE_FIXTURES")));
        assert!(!Need::Fixtures.is_required_by(env("INFERMUX_REQUIRE_SERVERS")));
        assert!(Need::Server.is_required_by(env("INFERMUX_REQUIRE_SERVERS")));
        assert!(!Need::RecordMode.is_required_by(|_| Some("1".to_owned())));
        assert!(Need::DockerEngine.is_required_by(env("INFERMUX_REQUIRE_DOCKER")));
        assert!(!Need::DockerEngine.is_required_by(env("INFERMUX_REQUIRE_SERVERS")));
        assert!(!Need::Server.is_required_by(|_| Some("0".to_owned())));
        assert!(!Need::Server.is_required_by(|_| None));
        for on in ["1", "true", "YES", " yes ", "on"] {
            assert!(is_on(on), "{on}");
        }
        for off in ["", " ", "0", "false", "No"] {
            assert!(!is_on(off), "{off}");
        }
    }

    #[test]
    fn log_lines_are_one_line_with_three_fields() {
        let line = log_line("t\tx", Need::Fixtures, "gone\nreally");
        assert_eq!(line, "fixtures\tt x\tgone really\n");
        assert_eq!(line.trim_end().split('\t').count(), 3);
    }
}
