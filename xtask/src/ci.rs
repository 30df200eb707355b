//! `cargo xtask ci [--skip STEP]…`: every CI step, in order, stopping at the first failure.
//!
//! | step | runs |
//! |---|---|
//! | `fmt` | `cargo fmt --all -- --check` |
//! | `clippy` | `cargo clippy --workspace --all-targets --all-features --locked -- -D warnings` |
//! | `conformance` | the conformance runner (`infermux conformance`) over `../shared/fixtures/cassettes` (before the tests); fails when any interaction fails |
//! | `test` | `cargo nextest run --workspace --all-features --locked`; `cargo test` (doctests included) where cargo-nextest is not installed |
//! | `doctest` | `cargo test --doc --workspace --all-features --locked` |
//! | `doc` | `RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked` |
//! | `tidy` | [`crate::tidy`], in process |
//! | `codegen` | `codegen --check`, in process |
//! | `publish` | the publish-order rules, in process |
//! | `fuzz` | `cargo check --manifest-path fuzz/Cargo.toml` (own target dir `<target>/fuzz`) |
//! | `features` | `cargo check -p infermux --no-default-features` with no feature, then each of the facade's features alone (not `default`, `full`); `cargo check -p infermux --all-targets` (its tests, default features); then `RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p <crate>` with default features for each published crate that has features; a warning fails it |
//! | `deny` | `cargo deny --offline check` with the offline advisory database |
//!
//! A step whose input or tool is missing (no `fuzz/`, no `cargo-deny` outside CI, no
//! cargo-nextest so `cargo test` ran the doctests already) is *skipped*, and every skipped step
//! is listed as such, with its reason, in the final summary. With `CI=true` a missing
//! `cargo-deny` is an error.
//!
//! The `test` and `doctest` steps run with `INFERMUX_SKIP_LOG` pointing at a file in the target
//! folder: each test that skips itself for lack of a live server, the shared fixtures or record
//! mode appends a line there (see `infermux_testkit::skip`), and the summary counts and lists
//! those tests. Under `INFERMUX_REQUIRE_SERVERS=1` / `INFERMUX_REQUIRE_FIXTURES=1` (set by
//! `.ci/run`) such a test fails instead.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::{Result, cargo, codegen, publish, read_to_string, run as run_cmd, target_dir, tidy};

/// Step names, in the order `ci` runs them.
pub(crate) const STEPS: &[&str] = &[
    "fmt",
    "clippy",
    "conformance",
    "test",
    "doctest",
    "doc",
    "tidy",
    "codegen",
    "publish",
    "fuzz",
    "features",
    "deny",
];

/// The offline advisory database, under the shared folder ([`crate::shared_dir`]).
const ADVISORY_DB: &str = "advisory-db";

/// The folder cargo-deny (0.20) opens under `db-path` for the default advisory database URL
/// `https://github.com/RustSec/advisory-db`: `<last path segment>-<xxhash64 of the URL>`.
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

/// The environment variable the root `deny.toml` reads its `db-path` from
/// (see `deny.toml`).
pub(crate) const ADVISORY_DBS_ENV: &str = "INFERMUX_ADVISORY_DBS";

/// The variable tests append their skips to (read by `infermux_testkit::skip`).
const SKIP_LOG_ENV: &str = "INFERMUX_SKIP_LOG";

/// How a step ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The step ran and passed; `note` is shown in the summary (what it did not cover).
    Ran { note: Option<String> },
    /// The step did not run, for this reason.
    Skipped(String),
}

impl Outcome {
    fn ran() -> Self {
        Outcome::Ran { note: None }
    }
}

/// What the run learnt that later steps need.
#[derive(Debug, Default)]
struct State {
    /// The test step ran `cargo test`, which runs the doctests too.
    doctests_ran: bool,
    /// Where tests record their skips.
    skip_log: PathBuf,
}

/// `cargo xtask ci`.
pub(crate) fn run(root: &Path, skip: &[String]) -> Result<()> {
    let started = Instant::now();
    let mut state = State {
        doctests_ran: false,
        skip_log: target_dir(root).join("infermux-test-skips.log"),
    };
    remove_file_if_exists(&state.skip_log)?;
    let mut summary: Vec<(&str, f64, Outcome)> = Vec::new();
    for &step in STEPS {
        if skip.iter().any(|s| s == step) {
            println!("\n== {step} == skipped (--skip)");
            summary.push((step, 0.0, Outcome::Skipped("--skip".into())));
            continue;
        }
        println!("\n== {step} ==");
        let step_started = Instant::now();
        let result = run_step(root, step, &mut state);
        let secs = step_started.elapsed().as_secs_f64();
        let outcome = match result {
            Err(message) => {
                println!("== {step}: FAILED after {secs:.1}s ==");
                print_summary(&summary, &state.skip_log);
                return Err(format!("ci: step `{step}` failed: {message}"));
            }
            Ok(outcome) => outcome,
        };
        match &outcome {
            Outcome::Skipped(why) => println!("== {step}: SKIPPED: {why} =="),
            Outcome::Ran { .. } => println!("== {step}: ok in {secs:.1}s =="),
        }
        summary.push((step, secs, outcome));
    }
    let skipped = summary
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Skipped(_)))
        .count();
    print_summary(&summary, &state.skip_log);
    println!(
        "\nci: {} steps passed, {skipped} skipped, in {:.1}s",
        summary.len() - skipped,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every step so far with its time or why it was skipped, then the tests that skipped
/// themselves.
fn print_summary(summary: &[(&str, f64, Outcome)], skip_log: &Path) {
    println!("\nci summary:");
    for (step, secs, outcome) in summary {
        match outcome {
            Outcome::Ran { note: None } => println!("  {step:<12} {secs:>7.1}s"),
            Outcome::Ran { note: Some(n) } => println!("  {step:<12} {secs:>7.1}s  ({n})"),
            Outcome::Skipped(why) => println!("  {step:<12} SKIPPED  {why}"),
        }
    }
    let text = fs::read_to_string(skip_log).unwrap_or_default();
    let skips = parse_skip_log(&text);
    if skips.is_empty() {
        println!("  tests skipped: 0");
        return;
    }
    let count = |need: &str| skips.iter().filter(|s| s.0 == need).count();
    println!(
        "  tests skipped: {} (server: {}, fixtures: {}, record-mode: {}, other: {})",
        skips.len(),
        count("server"),
        count("fixtures"),
        count("record-mode"),
        skips.len() - count("server") - count("fixtures") - count("record-mode"),
    );
    for (need, test, reason) in &skips {
        println!("    SKIPPED [{need}] {test}: {reason}");
    }
}

/// The lines of the skip log as (need, test, reason), in order, without duplicates (a test
/// retried by the runner logs twice).
pub(crate) fn parse_skip_log(text: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(3, '\t');
        let need = fields.next().unwrap_or("").to_owned();
        let test = fields.next().unwrap_or("").to_owned();
        let reason = fields.next().unwrap_or("").to_owned();
        let entry = (need, test, reason);
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

fn run_step(root: &Path, step: &str, state: &mut State) -> Result<Outcome> {
    let cargo_with = |args: &[&str]| {
        let mut cmd = cargo(root);
        cmd.args(args);
        cmd
    };
    let ran = |r: Result<()>| r.map(|()| Outcome::ran());
    match step {
        "fmt" => ran(run_cmd(&mut cargo_with(&["fmt", "--all", "--", "--check"]))),
        "clippy" => ran(run_cmd(&mut cargo_with(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))),
        "test" => {
            let nextest = cargo_with(&["nextest", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            let mut cmd = if nextest {
                cargo_with(&[
                    "nextest",
                    "run",
                    "--workspace",
                    "--all-features",
                    "--locked",
                ])
            } else {
                println!(
                    "cargo-nextest is not installed: running `cargo test` (doctests included) \
                     instead (install it with `cargo install cargo-nextest --locked`)"
                );
                state.doctests_ran = true;
                cargo_with(&["test", "--workspace", "--all-features", "--locked"])
            };
            cmd.env(SKIP_LOG_ENV, &state.skip_log);
            run_cmd(&mut cmd)?;
            Ok(Outcome::Ran {
                note: (!nextest).then(|| "cargo test: cargo-nextest is not installed".into()),
            })
        }
        "doctest" if state.doctests_ran => Ok(Outcome::Skipped(
            "the test step's `cargo test` ran the doctests".into(),
        )),
        "doctest" => {
            let mut cmd =
                cargo_with(&["test", "--doc", "--workspace", "--all-features", "--locked"]);
            ran(run_cmd(cmd.env(SKIP_LOG_ENV, &state.skip_log)))
        }
        "doc" => {
            let mut cmd = cargo_with(&[
                "doc",
                "--workspace",
                "--all-features",
                "--no-deps",
                "--locked",
            ]);
            ran(run_cmd(cmd.env("RUSTDOCFLAGS", "-D warnings")))
        }
        "tidy" => ran(tidy::run(root)),
        "codegen" => ran(codegen::run(root, true)),
        "publish" => ran(publish::run(root, false)),
        "fuzz" => fuzz(root),
        "features" => features(root),
        "deny" => deny(root),
        "conformance" => conformance(root),
        other => Err(format!("unknown step `{other}`")),
    }
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `cargo check` of the fuzz crate (outside the workspace), in its own target folder so it
/// does not invalidate the workspace's build cache.
fn fuzz(root: &Path) -> Result<Outcome> {
    if !root.join("fuzz/Cargo.toml").is_file() {
        return Ok(Outcome::Skipped("fuzz/Cargo.toml not found".into()));
    }
    let mut cmd = cargo(root);
    cmd.args(["check", "--locked", "--manifest-path", "fuzz/Cargo.toml"]);
    cmd.env("CARGO_TARGET_DIR", target_dir(root).join("fuzz"));
    run_cmd(&mut cmd).map(|()| Outcome::ran())
}

/// The facade's features one at a time: `cargo check -p infermux --no-default-features` with
/// none, then with each feature alone (every provider's, `redis`, `local-embed`, `s3`,
/// `hnsw`; not `default` nor `full`); the facade's tests with its default features; then the
/// docs of every published crate that has features, with its default ones. Fails on an error or a warning in any of them (a user
/// building with one provider sees what `--all-features` hides: an import left unused, a
/// `cfg` missed, a doc link to an item behind a feature).
fn features(root: &Path) -> Result<Outcome> {
    let manifest = root.join("crates/infermux/Cargo.toml");
    let mut sets = vec![String::new()];
    sets.extend(
        facade_features(&read_to_string(&manifest)?)
            .into_iter()
            .filter(|f| f != "default" && f != "full"),
    );
    let mut failed = Vec::new();
    for set in &sets {
        let mut cmd = cargo(root);
        cmd.args([
            "check",
            "-p",
            "infermux",
            "--no-default-features",
            "--locked",
        ]);
        if !set.is_empty() {
            cmd.args(["--features", set]);
        }
        let shown = if set.is_empty() { "(none)" } else { set };
        quiet(cmd, &format!("features {shown}"), &mut failed)?;
    }
    // the facade's own tests with its default features (`cargo test -p infermux`)
    let mut cmd = cargo(root);
    cmd.args(["check", "-p", "infermux", "--all-targets", "--locked"]);
    quiet(cmd, "the facade's tests with default features", &mut failed)?;
    // each published crate with features, documented with its default ones: an intra-doc
    // link to an item behind a feature is broken there (the `doc` step, with every feature,
    // cannot see it), and so is the page a user builds with `cargo doc`
    for member in crate::manifest::Workspace::load(root)?.members {
        let text = read_to_string(&root.join(&member.manifest.rel_path))?;
        if !member.publishable || !facade_features(&text).iter().any(|f| f != "default") {
            continue;
        }
        let mut cmd = cargo(root);
        cmd.args(["doc", "--no-deps", "--locked", "-p", &member.name]);
        cmd.env("RUSTDOCFLAGS", "-D warnings");
        let shown = format!("docs of {} (default features)", member.name);
        quiet(cmd, &shown, &mut failed)?;
    }
    if failed.is_empty() {
        Ok(Outcome::ran())
    } else {
        Err(format!("these do not build cleanly: {}", failed.join(", ")))
    }
}

/// Runs `cmd` (a cargo build) with short messages: `shown` is ok when it succeeds and says
/// nothing, else it is added to `failed` with what it said.
fn quiet(mut cmd: Command, shown: &str, failed: &mut Vec<String>) -> Result<()> {
    cmd.args(["--message-format", "short"]);
    let out = cmd
        .output()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr.lines().filter(|l| is_diagnostic(l)).collect();
    if out.status.success() && said.is_empty() {
        println!("  {shown}: ok");
    } else {
        println!("  {shown}: FAILED");
        for line in &said {
            println!("    {line}");
        }
        if said.is_empty() {
            println!("{stderr}");
        }
        failed.push(shown.to_owned());
    }
    Ok(())
}

/// The feature names of a `[features]` table (one `name = …` per line, as the facade's
/// manifest writes them).
pub(crate) fn facade_features(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') && !line.starts_with("[ ") {
            inside = line == "[features]";
            continue;
        }
        if !inside || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// A line of `cargo check --message-format short` that reports a warning or an error (not
/// a progress line such as `Checking thiserror v2`).
pub(crate) fn is_diagnostic(line: &str) -> bool {
    line.starts_with("warning")
        || line.starts_with("error")
        || line.contains(": warning")
        || line.contains(": error")
}

/// `cargo deny --offline check`: advisories against the offline snapshot when it exists,
/// licenses, bans and sources always.
fn deny(root: &Path) -> Result<Outcome> {
    let installed = cargo(root)
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        if env::var("CI").is_ok_and(|v| v == "true") {
            return Err("cargo-deny is not installed (required when CI=true): \
                        cargo install cargo-deny --locked"
                .into());
        }
        return Ok(Outcome::Skipped(
            "cargo-deny is not installed (cargo install cargo-deny --locked): \
             licenses, bans and advisories not checked"
                .into(),
        ));
    }

    // `--offline` also keeps cargo-deny's `cargo metadata` offline: fetch every locked crate
    // (all targets, all features) first, from the registry this machine reaches.
    run_cmd(cargo(root).args(["fetch", "--locked"]))?;
    let mut cmd = cargo(root);
    cmd.args(["deny", "--offline"]);
    let config = root.join("deny.toml");
    if !config.is_file() {
        return Err("deny.toml is missing at the repository root".into());
    }
    let config_text = read_to_string(&config)?;
    cmd.arg("check");

    let source = crate::shared_dir(root).join(ADVISORY_DB);
    if source.join("SNAPSHOT.txt").is_file() {
        if !config_text.contains(ADVISORY_DBS_ENV) {
            return Err(format!(
                "deny.toml must read the advisory database location from ${ADVISORY_DBS_ENV}: \
                 in [advisories] set db-path = \"${{{ADVISORY_DBS_ENV}:-target/advisory-dbs}}\" \
                 (see deny.toml)"
            ));
        }
        let dbs = target_dir(root).join("advisory-dbs");
        prepare_advisory_db(&source, &dbs.join(ADVISORY_DB_DIR))?;
        cmd.env(ADVISORY_DBS_ENV, &dbs);
        cmd.arg("all");
        run_cmd(&mut cmd).map(|()| Outcome::ran())
    } else if fixtures_required() {
        Err(format!(
            "{} not found but INFERMUX_REQUIRE_FIXTURES is set: advisories would go unchecked",
            source.display()
        ))
    } else {
        cmd.args(["bans", "licenses", "sources"]);
        run_cmd(&mut cmd).map(|()| Outcome::Ran {
            note: Some(format!(
                "{} not found: advisories not checked",
                source.display()
            )),
        })
    }
}

/// Makes `dest` a git repository holding a copy of `source` (cargo-deny opens the advisory
/// database as a git checkout), unless it already holds the same `SNAPSHOT.txt`.
fn prepare_advisory_db(source: &Path, dest: &Path) -> Result<()> {
    let snapshot = read_to_string(&source.join("SNAPSHOT.txt"))?;
    if dest.join(".git").is_dir()
        && fs::read_to_string(dest.join("SNAPSHOT.txt"))
            .ok()
            .as_deref()
            == Some(&*snapshot)
    {
        println!(
            "advisory db: {} is current ({})",
            dest.display(),
            snapshot.trim()
        );
        return Ok(());
    }
    println!(
        "advisory db: copying {} to {}",
        source.display(),
        dest.display()
    );
    let staging = dest.with_extension("staging");
    remove_dir_if_exists(&staging)?;
    copy_dir(source, &staging)?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&staging);
        cmd.args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "user.name=xtask",
            "-c",
            "user.email=xtask@localhost",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ]);
        cmd.args(args);
        for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
            cmd.env_remove(var);
        }
        let output = cmd
            .output()
            .map_err(|e| format!("could not run git: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {} failed in {}: {}",
                args.join(" "),
                staging.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    let message = format!("RustSec advisory-db snapshot {}", snapshot.trim());
    git(&["commit", "-q", "-m", &message])?;
    remove_dir_if_exists(dest)?;
    fs::rename(&staging, dest)
        .map_err(|e| format!("{} -> {}: {e}", staging.display(), dest.display()))
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Copies a tree of regular files, leaving the copies writable.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let (src, dst): (PathBuf, PathBuf) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
            let mut permissions = fs::metadata(&dst)
                .map_err(|e| format!("{}: {e}", dst.display()))?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)] // our own copy, in our target dir
            permissions.set_readonly(false);
            fs::set_permissions(&dst, permissions)
                .map_err(|e| format!("{}: {e}", dst.display()))?;
        }
    }
    Ok(())
}

/// Whether `INFERMUX_REQUIRE_FIXTURES` asks for the shared fixtures: set to anything but
/// empty, `0`, `false` or `no` (the rule of the testkit's `is_on`).
fn fixtures_required() -> bool {
    env::var("INFERMUX_REQUIRE_FIXTURES").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "false" | "no")
    })
}

/// The conformance runner (through the CLI) over the shared cassettes; fails when it fails.
/// Without `../shared/fixtures` the step is reported as skipped, and fails when
/// `INFERMUX_REQUIRE_FIXTURES=1`.
fn conformance(root: &Path) -> Result<Outcome> {
    let corpus = crate::default_corpus(root);
    if !corpus.is_dir() {
        if fixtures_required() {
            return Err(format!(
                "{} not found but INFERMUX_REQUIRE_FIXTURES=1",
                corpus.display()
            ));
        }
        return Ok(Outcome::Skipped(format!(
            "{} not found (the shared recorded traffic)",
            corpus.display()
        )));
    }
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "infermux-cli",
        "--",
        "conformance",
        "--corpus",
    ]);
    cmd.arg(&corpus);
    run_cmd(&mut cmd).map(|()| Outcome::ran())
}

#[cfg(test)]
mod tests {
    use super::{facade_features, is_diagnostic, parse_skip_log};

    #[test]
    fn the_facades_features_are_read_and_diagnostics_told_from_progress() {
        let manifest = "[package]\nname = \"infermux\"\n\n[features]\ndefault = [\"a\"]\n\
                        # generated\nanthropic = [\"dep:x\"]\nfull = [\n    \"anthropic\",\n]\n\
                        local-embed = []\n\n[lints]\nworkspace = true\n";
        assert_eq!(
            facade_features(manifest),
            ["default", "anthropic", "full", "local-embed"]
        );
        let features = facade_features(include_str!("../../crates/infermux/Cargo.toml"));
        for f in ["openai", "anthropic", "redis", "local-embed", "s3", "full"] {
            assert!(features.iter().any(|x| x == f), "{f}: {features:?}");
        }
        assert!(is_diagnostic(
            "crates/infermux/src/lib.rs:91:9: warning: unused import: `providers::*`"
        ));
        assert!(is_diagnostic(
            "warning: `infermux` (lib) generated 2 warnings"
        ));
        assert!(is_diagnostic("error[E0432]: unresolved import `x`"));
        assert!(!is_diagnostic("    Checking thiserror v2.0.17"));
        assert!(!is_diagnostic(
            "    Finished `dev` profile [unoptimized] target(s) in 3.1s"
        ));
    }

    #[test]
    fn skip_log_lines_are_parsed_and_deduplicated() {
        let log =
            "fixtures\ta::it t1\tgone\nserver\tb::it t2\tno url\n\nfixtures\ta::it t1\tgone\n";
        let skips = parse_skip_log(log);
        assert_eq!(skips.len(), 2);
        assert_eq!(
            skips[0],
            ("fixtures".into(), "a::it t1".into(), "gone".into())
        );
        assert_eq!(skips[1].0, "server");
        assert!(parse_skip_log("").is_empty());
    }
}
