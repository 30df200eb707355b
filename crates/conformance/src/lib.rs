//! The infermux conformance runner: replays every interaction of a folder of vcrpy cassettes
//! through the testkit's replay server into the provider operation its host and path route to,
//! and checks what infermux decoded against an independent reading of the recorded body — the
//! testkit's [`oracle`](infermux_testkit::oracle), one per wire format, shared with the
//! providers' own replay tests.
//!
//! Every interaction ends as exactly one of:
//! - **passed**: the recording is an answer and infermux decoded an answer equal to the
//!   oracle's reading (text, reasoning, tool calls with their parsed arguments, usage, finish
//!   reason, model ids, vector count and dimension, rerank scores, media length and hash, …),
//!   or the recording is an error (an HTTP error status, an error object in a 2xx body, an
//!   error inside a stream, a blocked answer) and infermux reported exactly the kind the
//!   oracle derives from the recorded status and body — and, either way, the request it
//!   sent is the recorded one in what decides the answer (its model, the number of its
//!   messages, inputs and tools, whether it streams: the testkit's
//!   [`body_differences`](infermux_testkit::replay::body_differences));
//! - **failed**, with the first difference named;
//! - **unsupported**, with the reason: only operations no provider offers.
//!
//! The CLI (`infermux conformance --corpus DIR [--json]`) and `cargo xtask conformance` call
//! [`run`]. Each interaction is served by its own replay server (replay matches in recorded
//! order, so one server per interaction keeps interactions independent).
//!
//! ```no_run
//! # async fn demo() -> infermux::Result<()> {
//! let report = infermux_conformance::Runner::new()
//!     .run_corpus(std::path::Path::new("recorded/cassettes"))
//!     .await?;
//! let s = report.summary();
//! assert_eq!(s.passed + s.failed + s.unsupported, s.interactions);
//! # Ok(()) }
//! ```

mod drive;
mod route;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use infermux::{Error, ErrorKind, Provider};
use infermux_testkit::oracle::Expected;
use infermux_testkit::{Cassette, Interaction};
use serde_json::{Value, json};

/// Wraps each provider the runner builds (a test hook: a wrapper that corrupts answers shows
/// the runner's checks can fail).
pub type ProviderWrapper = Arc<dyn Fn(Arc<dyn Provider>) -> Arc<dyn Provider> + Send + Sync>;

/// The runner. [`Runner::new`] replays through the providers as they are.
#[derive(Clone, Default)]
pub struct Runner {
    wrapper: Option<ProviderWrapper>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("wrapped", &self.wrapper.is_some())
            .finish()
    }
}

/// The verdict on one interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// infermux's outcome matches the recording.
    Passed,
    /// It does not (the record's `reason` names the difference).
    Failed,
    /// No provider offers the operation (the record's `reason` says why).
    Unsupported,
}

/// One line of the report.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Record {
    /// The cassette, relative to the corpus folder.
    pub file: String,
    /// The interaction's 0-based index (`None` when the cassette did not load).
    pub interaction: Option<usize>,
    /// The provider it routes to.
    pub provider: &'static str,
    /// The operation (`chat`, `chat_stream`, `messages`, `embed`, …).
    pub operation: String,
    /// The recorded status.
    pub status: Option<u16>,
    /// `ok`, `error` or `unsupported`: what infermux returned.
    pub outcome: &'static str,
    /// The kind of the error infermux returned.
    pub error_kind: Option<ErrorKind>,
    /// What infermux decoded, in the oracle's shape.
    pub decoded: Expected,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it failed or is unsupported.
    pub reason: Option<String>,
}

impl Record {
    fn new(file: &str, index: Option<usize>) -> Self {
        Record {
            file: file.to_owned(),
            interaction: index,
            provider: "unknown",
            operation: String::new(),
            status: None,
            outcome: "unsupported",
            error_kind: None,
            decoded: Expected::default(),
            verdict: Verdict::Unsupported,
            reason: None,
        }
    }

    fn fail(mut self, outcome: &'static str, reason: String) -> Self {
        self.outcome = outcome;
        self.verdict = Verdict::Failed;
        self.reason = Some(reason);
        self
    }

    /// The record as one JSON object (the `--json` line format).
    pub fn to_json(&self) -> Value {
        let d = &self.decoded;
        let usage = match (d.input_tokens, d.output_tokens) {
            (None, None) => Value::Null,
            (i, o) => json!({"input_tokens": i, "output_tokens": o}),
        };
        json!({
            "file": self.file,
            "interaction": self.interaction,
            "provider": self.provider,
            "operation": self.operation,
            "status": self.status,
            "outcome": self.outcome,
            "error_kind": self.error_kind.map(ErrorKind::as_str),
            "text": d.text,
            "tool_calls": d.tool_calls.as_ref().map(|calls| calls
                .iter()
                .map(|(name, args)| json!({"name": name, "arguments": args}))
                .collect::<Vec<_>>()),
            "finish_reason": d.finish_reason,
            "usage": usage,
            "embeddings": d.vectors.map(|(count, dim)| json!({"count": count, "dim": dim})),
            "pass": match self.verdict {
                Verdict::Passed => Some(true),
                Verdict::Failed => Some(false),
                Verdict::Unsupported => None,
            },
            "reason": self.reason,
        })
    }

    /// The record as one readable line.
    pub fn line(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Passed => "PASS",
            Verdict::Failed => "FAIL",
            Verdict::Unsupported => "UNSUPPORTED",
        };
        let at = self
            .interaction
            .map_or_else(|| self.file.clone(), |i| format!("{}#{i}", self.file));
        let mut line = format!(
            "{verdict:<11} {:<13} {:<22} {:<5} {:<5} {at}",
            self.provider,
            self.operation,
            self.status.map_or_else(String::new, |s| s.to_string()),
            self.outcome
        );
        if let Some(k) = self.error_kind {
            line.push_str(&format!(" [{k}]"));
        }
        if let Some(r) = &self.reason {
            line.push_str(&format!(" — {r}"));
        }
        line
    }
}

/// The records of a run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// One per interaction (or per cassette that did not load), in corpus order.
    pub records: Vec<Record>,
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Every record.
    pub interactions: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Unsupported.
    pub unsupported: usize,
    /// Unsupported records by reason; the counts sum to `unsupported`.
    pub unsupported_reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} unsupported",
            self.passed, self.failed, self.unsupported
        )
    }
}

impl Report {
    /// The counts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            interactions: self.records.len(),
            ..Summary::default()
        };
        for r in &self.records {
            match r.verdict {
                Verdict::Passed => s.passed += 1,
                Verdict::Failed => s.failed += 1,
                Verdict::Unsupported => {
                    s.unsupported += 1;
                    let why = r.reason.clone().unwrap_or_default();
                    *s.unsupported_reasons.entry(why).or_default() += 1;
                }
            }
        }
        s
    }

    /// Writes the report: one line per interaction (JSON objects with `json`, else readable
    /// lines with the unsupported ones and their reasons listed after), then the unsupported
    /// breakdown and the summary line (on `summary_out` with `json`).
    pub fn write(
        &self,
        json: bool,
        out: &mut dyn Write,
        summary_out: &mut dyn Write,
    ) -> std::io::Result<()> {
        for r in &self.records {
            if json {
                writeln!(out, "{}", r.to_json())?;
            } else if r.verdict != Verdict::Unsupported {
                writeln!(out, "{}", r.line())?;
            }
        }
        let s = self.summary();
        if !json && s.unsupported > 0 {
            writeln!(out, "\nunsupported:")?;
            for r in self
                .records
                .iter()
                .filter(|r| r.verdict == Verdict::Unsupported)
            {
                writeln!(out, "{}", r.line())?;
            }
        }
        let mut tail = String::new();
        if s.unsupported > 0 {
            tail.push_str("\nunsupported by reason:\n");
            for (why, n) in &s.unsupported_reasons {
                tail.push_str(&format!("{n:>4}  {why}\n"));
            }
        }
        tail.push_str(&format!("\n{s}\n"));
        if json {
            summary_out.write_all(tail.as_bytes())
        } else {
            out.write_all(tail.as_bytes())
        }
    }
}

/// Every cassette under `dir`, sorted.
fn cassettes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Runner {
    /// A runner over the providers as they are.
    pub fn new() -> Self {
        Runner::default()
    }

    /// Wraps every provider the runner drives through the provider-neutral `Request` with
    /// `wrapper` (operations driven through providers' inherent methods are not wrapped). For
    /// tests: a wrapper that corrupts answers must turn passing interactions into failures.
    pub fn with_provider_wrapper(
        mut self,
        wrapper: impl Fn(Arc<dyn Provider>) -> Arc<dyn Provider> + Send + Sync + 'static,
    ) -> Self {
        self.wrapper = Some(Arc::new(wrapper));
        self
    }

    pub(crate) fn wrap(&self, p: Arc<dyn Provider>) -> Arc<dyn Provider> {
        match &self.wrapper {
            Some(w) => w(p),
            None => p,
        }
    }

    /// Replays every interaction of every cassette under `dir` (`.yaml` / `.yml`,
    /// recursively). A cassette that does not load is one failed record.
    pub async fn run_corpus(&self, dir: &Path) -> infermux::Result<Report> {
        let files = cassettes(dir).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read corpus {}: {e}", dir.display()),
            )
        })?;
        let mut report = Report::default();
        for path in files {
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            match Cassette::load(&path) {
                Ok(c) if c.interactions.is_empty() => report.records.push(
                    Record::new(&rel, None)
                        .fail("error", "cassette has no interactions".to_owned()),
                ),
                Ok(c) => {
                    for (i, it) in c.interactions.iter().enumerate() {
                        report.records.push(self.run_interaction(&rel, i, it).await);
                    }
                }
                Err(e) => report.records.push(
                    Record::new(&rel, None)
                        .fail("error", format!("cassette could not be loaded: {e}")),
                ),
            }
        }
        Ok(report)
    }

    /// Replays one interaction and judges it.
    pub async fn run_interaction(&self, file: &str, index: usize, it: &Interaction) -> Record {
        drive::run_one(self, file, index, it).await
    }
}

/// `infermux conformance --corpus DIR [--json]`: runs the corpus, prints the report on
/// stdout (the summary on stderr with `json`), and fails when any interaction failed or none
/// passed (an empty corpus, or one whose every interaction is unsupported, checked nothing).
pub async fn run(corpus: &Path, json: bool) -> infermux::Result<Summary> {
    let report = Runner::new().run_corpus(corpus).await?;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    report.write(json, &mut out, &mut err).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot write the report: {e}")).with_source(e)
    })?;
    let s = report.summary();
    if s.failed > 0 {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("{} interactions failed", s.failed),
        ));
    }
    if s.passed == 0 {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "nothing was checked: no interaction of {} passed ({} unsupported)",
                corpus.display(),
                s.unsupported
            ),
        ));
    }
    Ok(s)
}

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
