//! `cargo xtask ci [--skip STEP]…`: every CI step, in order, stopping at the first failure.
//!
//! | step | runs |
//! |---|---|
//! | `fmt` | `cargo fmt --all -- --check` |
//! | `clippy` | `cargo clippy --workspace --all-targets --all-features --locked -- -D warnings` |
//! | `conformance` | the conformance runner (`infermux conformance`) over `../shared/fixtures/cassettes` (before the tests); fails when any interaction fails |
//! | `test` | `cargo nextest run --workspace --all-features --locked` |
//! | `doctest` | `cargo test --doc --workspace --all-features --locked` |
//! | `doc` | `RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked` |
//! | `tidy` | [`crate::tidy`], in process |
//! | `codegen` | `codegen --check`, in process |
//! | `publish` | the publish-order rules, in process |
//! | `fuzz` | `cargo check --manifest-path fuzz/Cargo.toml` (own target dir `<target>/fuzz`) |
//! | `deny` | `cargo deny --offline check` with the offline advisory database |
//!
//! Steps whose input is missing (no `fuzz/`, no fixtures, no `cargo-deny` outside CI) print
//! why and are skipped; with `CI=true` a missing `cargo-deny` is an error, and with
//! `INFERMUX_REQUIRE_FIXTURES=1` missing fixtures are.

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
    "deny",
];

/// The offline RustSec snapshot, relative to the repository root.
const ADVISORY_DB: &str = "../shared/advisory-db";

/// The folder cargo-deny (0.20) opens under `db-path` for the default advisory database URL
/// `https://github.com/RustSec/advisory-db`: `<last path segment>-<xxhash64 of the URL>`.
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

/// The environment variable the root `deny.toml` reads its `db-path` from
/// (see `deny.toml`).
pub(crate) const ADVISORY_DBS_ENV: &str = "INFERMUX_ADVISORY_DBS";

/// `cargo xtask ci`.
pub(crate) fn run(root: &Path, skip: &[String]) -> Result<()> {
    let started = Instant::now();
    let mut timings = Vec::new();
    for &step in STEPS {
        if skip.iter().any(|s| s == step) {
            println!("\n== {step} == skipped (--skip)");
            continue;
        }
        println!("\n== {step} ==");
        let step_started = Instant::now();
        let result = run_step(root, step);
        let secs = step_started.elapsed().as_secs_f64();
        if let Err(message) = result {
            println!("== {step}: FAILED after {secs:.1}s ==");
            return Err(format!("ci: step `{step}` failed: {message}"));
        }
        println!("== {step}: ok in {secs:.1}s ==");
        timings.push((step, secs));
    }
    println!(
        "\nci: all steps passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (step, secs) in timings {
        println!("  {step:<12} {secs:>7.1}s");
    }
    Ok(())
}

fn run_step(root: &Path, step: &str) -> Result<()> {
    let cargo_with = |args: &[&str]| {
        let mut cmd = cargo(root);
        cmd.args(args);
        cmd
    };
    match step {
        "fmt" => run_cmd(&mut cargo_with(&["fmt", "--all", "--", "--check"])),
        "clippy" => run_cmd(&mut cargo_with(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])),
        "test" => run_cmd(&mut cargo_with(&[
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
        ])),
        "doctest" => run_cmd(&mut cargo_with(&[
            "test",
            "--doc",
            "--workspace",
            "--all-features",
            "--locked",
        ])),
        "doc" => {
            let mut cmd = cargo_with(&[
                "doc",
                "--workspace",
                "--all-features",
                "--no-deps",
                "--locked",
            ]);
            run_cmd(cmd.env("RUSTDOCFLAGS", "-D warnings"))
        }
        "tidy" => tidy::run(root),
        "codegen" => codegen::run(root, true),
        "publish" => publish::run(root, false),
        "fuzz" => fuzz(root),
        "deny" => deny(root),
        "conformance" => conformance(root),
        other => Err(format!("unknown step `{other}`")),
    }
}

/// `cargo check` of the fuzz crate (outside the workspace), in its own target folder so it
/// does not invalidate the workspace's build cache.
fn fuzz(root: &Path) -> Result<()> {
    if !root.join("fuzz/Cargo.toml").is_file() {
        println!("fuzz/Cargo.toml not found: skipping the fuzz check");
        return Ok(());
    }
    let mut cmd = cargo(root);
    cmd.args(["check", "--manifest-path", "fuzz/Cargo.toml"]);
    cmd.env("CARGO_TARGET_DIR", target_dir(root).join("fuzz"));
    run_cmd(&mut cmd)
}

/// `cargo deny --offline check`: advisories against the offline snapshot when it exists,
/// licenses, bans and sources always.
fn deny(root: &Path) -> Result<()> {
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
        println!(
            "cargo-deny not installed: skipping licenses/bans/advisories \
             (install with cargo install cargo-deny --locked)"
        );
        return Ok(());
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

    let source = root.join(ADVISORY_DB);
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
    } else {
        println!("{ADVISORY_DB} not found: skipping advisories");
        cmd.args(["bans", "licenses", "sources"]);
    }
    run_cmd(&mut cmd)
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

/// The conformance runner (through the CLI) over the shared cassettes; fails when it fails.
/// Without `../shared/fixtures` the step is reported as skipped, and fails when
/// `INFERMUX_REQUIRE_FIXTURES=1`.
fn conformance(root: &Path) -> Result<()> {
    let corpus = crate::default_corpus(root);
    if !corpus.is_dir() {
        if std::env::var("INFERMUX_REQUIRE_FIXTURES").is_ok_and(|v| v == "1") {
            return Err(format!(
                "{} not found but INFERMUX_REQUIRE_FIXTURES=1",
                corpus.display()
            ));
        }
        println!("conformance skipped: {} not found", corpus.display());
        return Ok(());
    }
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "infermux-cli",
        "--",
        "conformance",
        "--corpus",
    ]);
    cmd.arg(&corpus);
    run_cmd(&mut cmd)
}
