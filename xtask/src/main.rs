//! infermux's project automation, run as `cargo xtask <command>`.
//!
//! Modelled on rust-analyzer's xtask: plain `std`, no argument-parsing crate, and the checks
//! that guard the tree (`tidy`, `codegen --check`, `publish-order`) also run as `#[test]`s so
//! `cargo nextest run` catches a violation without going through `cargo xtask ci`.
//!
//! | command | does |
//! |---|---|
//! | `ci [--skip STEP]…` | every CI step in order, stopping at the first failure |
//! | `tidy` | house-rule checks on sources and manifests |
//! | `codegen [--check]` | regenerates (or checks) the provider lists of the facade and docs |
//! | `publish-order [--dry-run]` | the order publishable crates must be released in |
//! | `conformance [--corpus DIR] [--json]` | runs the CLI's conformance suite over cassettes |
//! | `bench peers [--quick] [--peers LIST] [--repeats N] [--secs S] [--docs]` | the peer benchmark (not part of `ci`: it installs Python and Node peers) |
//! | `bench instructions [--peers LIST] [--concurrency N] [--stream] [--secs A,B]` | the Rust peers' instructions and L1 misses per request, counted under valgrind |

mod bench;
mod ci;
mod codegen;
mod counts;
mod flags;
mod manifest;
mod publish;
mod tidy;

use std::{
    env,
    ffi::OsStr,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use flags::Flags;

/// Every fallible xtask function reports a human-readable message.
pub(crate) type Result<T, E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let flags = match Flags::parse(&args) {
        Ok(flags) => flags,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    let root = project_root();
    let result = match flags {
        Flags::Help => {
            println!("{}", flags::USAGE);
            Ok(())
        }
        Flags::Ci { skip } => ci::run(&root, &skip),
        Flags::Tidy => tidy::run(&root),
        Flags::Codegen { check } => codegen::run(&root, check),
        Flags::PublishOrder { dry_run } => publish::run(&root, dry_run),
        Flags::Conformance { corpus, json } => {
            let corpus = corpus.unwrap_or_else(|| default_corpus(&root));
            conformance(&root, &corpus, json)
        }
        Flags::BenchPeers(opts) => bench::run(&root, &opts),
        Flags::BenchInstructions(opts) => counts::run(&root, &opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the parent of this crate's folder — as `cargo run` says at run time
/// (a binary reused from a target dir shared by several checkouts must not act on the one it
/// was built from), else as it was at build time.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the current directory) or
/// `<root>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().map_or_else(|_| root.join(&dir), |cwd| cwd.join(&dir))
            }
        }
        _ => root.join("target"),
    }
}

/// The shared folder beside the checkout: `$INFERMUX_SHARED_DIR`, or `<root>/../shared`.
pub(crate) fn shared_dir(root: &Path) -> PathBuf {
    match env::var_os("INFERMUX_SHARED_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("../shared"),
    }
}

/// `fixtures/cassettes` under the shared folder ([`shared_dir`]): the default conformance
/// corpus.
pub(crate) fn default_corpus(root: &Path) -> PathBuf {
    shared_dir(root).join("fixtures/cassettes")
}

/// `cargo xtask conformance`: the CLI's `conformance` subcommand over `corpus`.
fn conformance(root: &Path, corpus: &Path, json: bool) -> Result<()> {
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
    cmd.arg(corpus);
    if json {
        cmd.arg("--json");
    }
    run(&mut cmd)
}

/// A `cargo` command run from the root. Plain `cargo` from `PATH` (the rustup proxy keeps
/// the toolchain `cargo xtask` was started with, via `RUSTUP_TOOLCHAIN`).
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    cmd
}

/// Renders a command line for logs.
pub(crate) fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(out, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    out.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"') {
        format!("{arg:?}")
    } else {
        arg.into_owned()
    }
}

/// Runs `cmd` with inherited stdio, echoing it first; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Reads a file, naming it in the error.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `path` relative to `root` with `/` separators, for messages.
pub(crate) fn rel(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
