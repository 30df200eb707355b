//! Command-line parsing, by hand (xtask keeps to `std`).

use std::path::PathBuf;

use crate::{Result, bench, ci::STEPS, counts};

/// Printed for `help` and after an unknown command or flag.
pub(crate) const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci [--skip STEP]...                  run every CI step in order (steps: fmt, clippy,
                                       conformance, test, doctest, doc, tidy, codegen,
                                       publish, fuzz, features, deny); --skip is for local use
  tidy                                 check the house rules on sources and manifests
  codegen [--check]                    regenerate the provider lists (or check they are fresh)
  publish-order [--dry-run]            print the publish order of the workspace crates;
                                       --dry-run also runs `cargo publish --workspace --dry-run`
  conformance [--corpus DIR] [--json]  run the CLI's conformance suite
                                       (default corpus: ../shared/fixtures/cassettes)
  bench peers [--quick] [--peers LIST] [--repeats N] [--secs S] [--docs]
                                       the peer benchmark (bare reqwest, infermux, async-openai,
                                       TensorZero, Portkey, LiteLLM against one mock upstream);
                                       report in <target>/bench-report/; --docs also writes the
                                       figures into docs/benchmarks.md
  bench instructions [--peers LIST] [--concurrency N] [--stream] [--secs A,B]
                                       the Rust peers' instructions and L1 misses per request,
                                       counted under valgrind (two windows, their difference);
                                       report in <target>/bench-report/instructions.md
  help                                 print this message";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub(crate) enum Flags {
    /// `help`, `--help`, `-h`
    Help,
    /// `ci [--skip STEP]…`
    Ci {
        /// Steps not to run.
        skip: Vec<String>,
    },
    /// `tidy`
    Tidy,
    /// `codegen [--check]`
    Codegen {
        /// Compare instead of writing.
        check: bool,
    },
    /// `publish-order [--dry-run]`
    PublishOrder {
        /// Also run `cargo publish --workspace --dry-run`.
        dry_run: bool,
    },
    /// `conformance [--corpus DIR] [--json]`
    Conformance {
        /// The cassette folder; the default is `../shared/fixtures/cassettes`.
        corpus: Option<PathBuf>,
        /// Ask the CLI for JSON output.
        json: bool,
    },
    /// `bench peers [--quick] [--peers LIST] [--repeats N] [--secs S] [--docs]`
    BenchPeers(bench::Options),
    /// `bench instructions [--peers LIST] [--concurrency N] [--stream] [--secs A,B]`
    BenchInstructions(counts::Options),
}

impl Flags {
    /// Parses the arguments after `cargo xtask`.
    pub(crate) fn parse(args: &[String]) -> Result<Flags> {
        let Some((command, rest)) = args.split_first() else {
            return Err("no command given".to_owned());
        };
        let mut rest = rest.iter().map(String::as_str);
        let flags = match command.as_str() {
            "help" | "--help" | "-h" => Flags::Help,
            "ci" => {
                let mut skip = Vec::new();
                while let Some(arg) = rest.next() {
                    let step = match arg.strip_prefix("--skip=") {
                        Some(step) => step,
                        None if arg == "--skip" => rest.next().ok_or("--skip needs a step name")?,
                        None => return Err(format!("ci: unknown argument `{arg}`")),
                    };
                    if !STEPS.contains(&step) {
                        return Err(format!(
                            "ci: unknown step `{step}` (steps: {})",
                            STEPS.join(", ")
                        ));
                    }
                    skip.push(step.to_owned());
                }
                return Ok(Flags::Ci { skip });
            }
            "tidy" => Flags::Tidy,
            "codegen" => match rest.next() {
                None => Flags::Codegen { check: false },
                Some("--check") => Flags::Codegen { check: true },
                Some(arg) => return Err(format!("codegen: unknown argument `{arg}`")),
            },
            "publish-order" => match rest.next() {
                None => Flags::PublishOrder { dry_run: false },
                Some("--dry-run") => Flags::PublishOrder { dry_run: true },
                Some(arg) => return Err(format!("publish-order: unknown argument `{arg}`")),
            },
            "conformance" => {
                let (mut corpus, mut json) = (None, false);
                while let Some(arg) = rest.next() {
                    match arg {
                        "--json" => json = true,
                        "--corpus" => {
                            let dir = rest.next().ok_or("--corpus needs a folder")?;
                            corpus = Some(PathBuf::from(dir));
                        }
                        _ => match arg.strip_prefix("--corpus=") {
                            Some(dir) => corpus = Some(PathBuf::from(dir)),
                            None => return Err(format!("conformance: unknown argument `{arg}`")),
                        },
                    }
                }
                return Ok(Flags::Conformance { corpus, json });
            }
            "bench" => {
                match rest.next() {
                    Some("peers") => {}
                    Some("instructions") => return parse_instructions(rest),
                    Some(other) => {
                        return Err(format!(
                            "bench: unknown benchmark `{other}` (peers, instructions)"
                        ));
                    }
                    None => return Err("bench: which benchmark? (peers, instructions)".to_owned()),
                }
                let mut opts = bench::Options {
                    quick: false,
                    peers: None,
                    repeats: None,
                    secs: None,
                    docs: false,
                };
                while let Some(arg) = rest.next() {
                    let (key, inline) = split_flag(arg);
                    let mut value = |name: &str| flag_value(inline, &mut rest, name);
                    match key {
                        "--quick" if inline.is_none() => opts.quick = true,
                        "--docs" if inline.is_none() => opts.docs = true,
                        "--peers" => {
                            let list = value("--peers")?;
                            opts.peers = Some(list.split(',').map(str::to_owned).collect());
                        }
                        "--repeats" => {
                            let v = value("--repeats")?;
                            match v.parse::<u32>() {
                                Ok(n) if n > 0 => opts.repeats = Some(n),
                                _ => return Err(format!("--repeats: not a positive count: {v}")),
                            }
                        }
                        "--secs" => {
                            let v = value("--secs")?;
                            match v.parse::<f64>() {
                                Ok(s) if s.is_finite() && s > 0.0 => opts.secs = Some(s),
                                _ => return Err(format!("--secs: not a positive number: {v}")),
                            }
                        }
                        _ => return Err(format!("bench peers: unknown argument `{arg}`")),
                    }
                }
                return Ok(Flags::BenchPeers(opts));
            }
            other => return Err(format!("unknown command `{other}`")),
        };
        match rest.next() {
            Some(extra) => Err(format!("{command}: unexpected argument `{extra}`")),
            None => Ok(flags),
        }
    }
}

/// A `--key=value` argument split at its `=`; `--key` alone has no inline value.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (arg, None),
    }
}

/// The value of flag `name`: its inline value, else the next argument.
fn flag_value<'a>(
    inline: Option<&str>,
    rest: &mut impl Iterator<Item = &'a str>,
    name: &str,
) -> Result<String> {
    match inline {
        Some(v) => Ok(v.to_owned()),
        None => rest
            .next()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} needs a value")),
    }
}

/// The arguments of `bench instructions`.
fn parse_instructions<'a>(mut rest: impl Iterator<Item = &'a str>) -> Result<Flags> {
    let mut opts = counts::Options::default();
    while let Some(arg) = rest.next() {
        let (key, inline) = split_flag(arg);
        let mut value = |name: &str| flag_value(inline, &mut rest, name);
        match key {
            "--stream" if inline.is_none() => opts.stream = true,
            "--peers" => {
                let list = value("--peers")?;
                opts.peers = Some(list.split(',').map(str::to_owned).collect());
            }
            "--concurrency" => {
                let v = value("--concurrency")?;
                match v.parse::<u32>() {
                    Ok(n) if n > 0 => opts.concurrency = n,
                    _ => return Err(format!("--concurrency: not a positive count: {v}")),
                }
            }
            "--secs" => {
                let v = value("--secs")?;
                let pair = v.split_once(',').and_then(|(a, b)| {
                    let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
                    (a.is_finite() && b.is_finite() && a > 0.0 && b > a).then_some((a, b))
                });
                match pair {
                    Some(p) => opts.secs = p,
                    None => {
                        return Err(format!(
                            "--secs: two windows A,B in seconds with 0 < A < B: {v}"
                        ));
                    }
                }
            }
            _ => return Err(format!("bench instructions: unknown argument `{arg}`")),
        }
    }
    Ok(Flags::BenchInstructions(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags> {
        Flags::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&["tidy"]), Ok(Flags::Tidy));
        assert_eq!(
            parse(&["codegen", "--check"]),
            Ok(Flags::Codegen { check: true })
        );
        assert_eq!(
            parse(&["publish-order"]),
            Ok(Flags::PublishOrder { dry_run: false })
        );
        assert_eq!(
            parse(&["ci", "--skip", "fmt", "--skip=deny"]),
            Ok(Flags::Ci {
                skip: vec!["fmt".into(), "deny".into()]
            })
        );
        assert_eq!(
            parse(&["conformance", "--json", "--corpus", "x"]),
            Ok(Flags::Conformance {
                corpus: Some("x".into()),
                json: true
            })
        );
        assert_eq!(
            parse(&[
                "bench",
                "peers",
                "--quick",
                "--peers=litellm,portkey",
                "--secs",
                "1.5",
                "--docs"
            ]),
            Ok(Flags::BenchPeers(bench::Options {
                quick: true,
                peers: Some(vec!["litellm".into(), "portkey".into()]),
                repeats: None,
                secs: Some(1.5),
                docs: true,
            }))
        );
        assert_eq!(
            parse(&[
                "bench",
                "instructions",
                "--peers=infermux-standard",
                "--concurrency",
                "64",
                "--stream",
                "--secs=1,3"
            ]),
            Ok(Flags::BenchInstructions(counts::Options {
                peers: Some(vec!["infermux-standard".into()]),
                concurrency: 64,
                stream: true,
                secs: (1.0, 3.0),
            }))
        );
        assert_eq!(
            parse(&["bench", "instructions"]),
            Ok(Flags::BenchInstructions(counts::Options::default()))
        );
    }

    #[test]
    fn rejects_unknown_input() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["ci", "--skip", "nope"]).is_err());
        assert!(parse(&["ci", "--skip"]).is_err());
        assert!(parse(&["tidy", "--fix"]).is_err());
        assert!(parse(&["codegen", "--write"]).is_err());
        assert!(parse(&["bench"]).is_err());
        assert!(parse(&["bench", "soak"]).is_err());
        assert!(parse(&["bench", "peers", "--fast"]).is_err());
        assert!(parse(&["bench", "peers", "--repeats", "0"]).is_err());
        assert!(parse(&["bench", "peers", "--secs"]).is_err());
        assert!(parse(&["bench", "peers", "--quick=yes"]).is_err());
        assert!(parse(&["bench", "instructions", "--secs", "6,2"]).is_err());
        assert!(parse(&["bench", "instructions", "--secs", "2"]).is_err());
        assert!(parse(&["bench", "instructions", "--concurrency", "0"]).is_err());
        assert!(parse(&["bench", "instructions", "--stream=no"]).is_err());
        assert!(parse(&["bench", "instructions", "--quick"]).is_err());
    }
}
