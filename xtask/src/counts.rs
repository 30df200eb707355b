//! `cargo xtask bench instructions [--peers LIST] [--concurrency N] [--stream] [--secs A,B]`:
//! the Rust peers' client work per request, counted rather than timed.
//!
//! Wall-clock figures on a shared 2-core machine swing by more than most changes to the hot
//! path move them (`docs/benchmarks.md`, "Peers, quick, before and after"). Counted figures do
//! not: each Rust peer's driver runs under valgrind's cachegrind (simulated caches of fixed
//! sizes, the same on any machine) twice, for a short and a long window, and the difference of
//! the two runs' totals divided by the difference of their request counts is the work of one
//! request — the process's start, its connections and its exit cancel out. Reported per
//! request: instructions, L1 instruction-cache misses and L1 data-cache misses (32 KiB, 8-way,
//! 64-byte lines each), each also as a ratio to bare reqwest's.
//!
//! Needs `valgrind` on the `PATH` (Debian: `apt install valgrind`); not part of `cargo xtask
//! ci`. Writes `<target>/bench-report/instructions.md` and prints it.

use std::{fmt::Write as _, fs, path::Path, process::Command};

use crate::{Result, bench, display};

/// `bench instructions` options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    /// The peers besides bare reqwest (default: every Rust peer).
    pub(crate) peers: Option<Vec<String>>,
    /// Callers in the closed loop.
    pub(crate) concurrency: u32,
    /// Streamed answers instead of plain ones.
    pub(crate) stream: bool,
    /// The short and the long window, in seconds (under valgrind, which runs the client about
    /// fifty times slower).
    pub(crate) secs: (f64, f64),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            peers: None,
            concurrency: 16,
            stream: false,
            secs: (2.0, 6.0),
        }
    }
}

/// What one run under cachegrind counted, over the whole process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Totals {
    /// Requests the driver answered in its window.
    pub(crate) requests: u64,
    /// Instructions executed.
    pub(crate) instructions: u64,
    /// L1 instruction-cache misses.
    pub(crate) i1_misses: u64,
    /// L1 data-cache misses (reads and writes).
    pub(crate) d1_misses: u64,
}

/// One request's share: the difference of two runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PerRequest {
    pub(crate) instructions: f64,
    pub(crate) i1_misses: f64,
    pub(crate) d1_misses: f64,
}

/// The simulated caches: fixed, so that the counts do not depend on the machine.
const CACHES: [&str; 3] = ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=8388608,16,64"];

/// `bench instructions`.
pub(crate) fn run(root: &Path, opts: &Options) -> Result<()> {
    if !opts.secs.0.is_finite() || opts.secs.0 <= 0.0 || opts.secs.1 <= opts.secs.0 {
        return Err("--secs: two windows, the second longer than the first".to_owned());
    }
    let peers = selected(opts)?;
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        return Err("valgrind is not on the PATH (Debian: `apt install valgrind`)".to_owned());
    }
    let (bin, out_dir) = bench::build_driver(root)?;
    let (mut upstream, upstream_url) = bench::start_upstream(&bin)?;

    let mut rows: Vec<(&str, Totals, Totals, PerRequest)> = Vec::new();
    for peer in &peers {
        let run_for = |secs: f64| -> Result<Totals> {
            let mut cmd = Command::new("valgrind");
            cmd.args(["--tool=cachegrind", "--cache-sim=yes"])
                .args(CACHES)
                .arg("--cachegrind-out-file=/dev/null")
                .arg(&bin)
                .args(["drive", "--peer", peer, "--upstream", &upstream_url])
                .args(["--concurrency", &opts.concurrency.to_string()])
                .args(["--warmup", "0", "--secs", &secs.to_string()]);
            if opts.stream {
                cmd.arg("--stream");
            }
            eprintln!("$ {}", display(&cmd));
            let out = cmd
                .output()
                .map_err(|e| format!("could not start `{}`: {e}", display(&cmd)))?;
            if !out.status.success() {
                return Err(format!(
                    "`{}` failed ({}): {}",
                    display(&cmd),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            totals(
                &String::from_utf8_lossy(&out.stdout),
                &String::from_utf8_lossy(&out.stderr),
            )
        };
        let short = run_for(opts.secs.0)?;
        let long = run_for(opts.secs.1)?;
        let each = per_request(&short, &long)?;
        eprintln!(
            "{peer}: {:.0} instructions, {:.0} I1 misses, {:.0} D1 misses per request",
            each.instructions, each.i1_misses, each.d1_misses
        );
        rows.push((peer, short, long, each));
    }
    upstream.stop();

    let report = render(opts, &rows);
    let path = out_dir.join("instructions.md");
    fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{report}");
    eprintln!("written: {}", path.display());
    Ok(())
}

/// Bare reqwest first, then the chosen Rust peers (every one by default).
fn selected(opts: &Options) -> Result<Vec<&'static str>> {
    bench::select_peers(opts.peers.as_deref(), bench::RUST_PEERS)
}

/// The counts of one run: `requests` from the driver's JSON line (stdout), the rest from
/// cachegrind's summary (stderr). Every figure must be there.
pub(crate) fn totals(stdout: &str, stderr: &str) -> Result<Totals> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("the driver printed no result line")?;
    let requests = bench::json_field(line, "requests")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("the result line has no `requests` count")?;
    // a failed request costs instructions too: counted per answered request, failures would
    // pass for a dearer success
    match bench::json_field(line, "errors").and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => {}
        Some(n) => return Err(format!("the driver saw {n} failed requests: {line}")),
        None => return Err("the result line has no `errors` count".into()),
    }
    let count = |label: &str| -> Result<u64> {
        stderr
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("== ")?;
                let rest = rest.trim_start().strip_prefix(label)?;
                let value = rest.trim_start().strip_prefix(':')?;
                let number = value.split_whitespace().next()?;
                number.replace(',', "").parse().ok()
            })
            .ok_or_else(|| format!("cachegrind's summary has no `{label}` line"))
    };
    Ok(Totals {
        requests,
        instructions: count("I   refs")?,
        i1_misses: count("I1  misses")?,
        d1_misses: count("D1  misses")?,
    })
}

/// One request's share of the work: the long run's totals less the short run's, over the
/// requests the long run answered more. An error when it did not answer more, or counted
/// less of anything (the two runs are not comparable).
pub(crate) fn per_request(short: &Totals, long: &Totals) -> Result<PerRequest> {
    let requests = long.requests.saturating_sub(short.requests);
    if requests == 0 {
        return Err(format!(
            "the long window answered {} requests, the short one {}: no difference to divide by",
            long.requests, short.requests
        ));
    }
    let diff = |a: u64, b: u64, what: &str| -> Result<f64> {
        b.checked_sub(a)
            .map(|d| d as f64 / requests as f64)
            .ok_or_else(|| format!("the long run counted fewer {what} than the short one"))
    };
    Ok(PerRequest {
        instructions: diff(short.instructions, long.instructions, "instructions")?,
        i1_misses: diff(short.i1_misses, long.i1_misses, "I1 misses")?,
        d1_misses: diff(short.d1_misses, long.d1_misses, "D1 misses")?,
    })
}

/// The markdown report: one row per peer, ratios to bare reqwest (the first row).
pub(crate) fn render(opts: &Options, rows: &[(&str, Totals, Totals, PerRequest)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Counted per request: {} answers, c = {}, current-thread runtime; cachegrind, \
         windows {} s and {} s (simulated L1 caches 32 KiB, 8-way, 64-byte lines).\n",
        if opts.stream { "streamed" } else { "plain" },
        opts.concurrency,
        opts.secs.0,
        opts.secs.1
    );
    s.push_str(
        "| peer | requests (short / long) | instructions | × bare reqwest | I1 misses | × | D1 misses | × |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let floor = rows.first().map(|r| r.3);
    for (peer, short, long, each) in rows {
        let ratio = |v: f64, f: fn(&PerRequest) -> f64| match floor {
            Some(b) if f(&b) > 0.0 => format!("{:.3}×", v / f(&b)),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {peer} | {} / {} | {:.0} | {} | {:.0} | {} | {:.0} | {} |",
            short.requests,
            long.requests,
            each.instructions,
            ratio(each.instructions, |p| p.instructions),
            each.i1_misses,
            ratio(each.i1_misses, |p| p.i1_misses),
            each.d1_misses,
            ratio(each.d1_misses, |p| p.d1_misses),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = "\
==18420== Command: peers drive --peer reqwest
==18420== I   refs:      110,474,050
==18420== I1  misses:      4,337,114
==18420== LLi misses:         28,730
==18420== D   refs:      42,484,861  (25,139,704 rd   + 17,345,157 wr)
==18420== D1  misses:      1,265,708  (   678,129 rd   +    587,579 wr)
==18420== LLd misses:         95,656  (    45,401 rd   +     50,255 wr)
";
    const STDOUT: &str = "{\"peer\":\"reqwest\",\"secs\":1.0,\"requests\":1146,\"errors\":0}\n";

    #[test]
    fn reads_cachegrind_summary_and_driver_line() {
        assert_eq!(
            totals(STDOUT, STDERR),
            Ok(Totals {
                requests: 1146,
                instructions: 110_474_050,
                i1_misses: 4_337_114,
                d1_misses: 1_265_708,
            })
        );
    }

    /// The parser is not a default pass: a summary without a figure, a driver without its
    /// line, or a field that is not a count is an error.
    #[test]
    fn rejects_missing_or_malformed_figures() {
        let no_d1: String = STDERR
            .lines()
            .filter(|l| !l.contains("D1  misses"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(totals(STDOUT, &no_d1).unwrap_err().contains("D1  misses"));
        assert!(totals("", STDERR).is_err());
        assert!(totals("{\"requests\":\"many\"}", STDERR).is_err());
        let failed = STDOUT.replace("\"errors\":0", "\"errors\":3");
        assert!(totals(&failed, STDERR).unwrap_err().contains("3 failed"));
        let silent = STDOUT.replace(",\"errors\":0", "");
        assert!(totals(&silent, STDERR).is_err());
        // `LLi misses` must not be read as `I1  misses`, nor `D   refs` as `I   refs`
        let only_ll = "==1== LLi misses: 5\n==1== D   refs: 7\n==1== D1  misses: 1\n";
        assert!(totals(STDOUT, only_ll).is_err());
    }

    #[test]
    fn per_request_is_the_difference_of_two_runs() {
        let t = |requests, instructions, i1, d1| Totals {
            requests,
            instructions,
            i1_misses: i1,
            d1_misses: d1,
        };
        let each = per_request(
            &t(100, 9_000_000, 1_000, 500),
            &t(400, 33_000_000, 4_000, 2_300),
        )
        .unwrap();
        assert_eq!(
            each,
            PerRequest {
                instructions: 80_000.0,
                i1_misses: 10.0,
                d1_misses: 6.0
            }
        );
        // no more requests in the long run, or fewer of anything: not comparable
        assert!(per_request(&t(100, 1, 1, 1), &t(100, 2, 2, 2)).is_err());
        assert!(per_request(&t(100, 1, 1, 1), &t(50, 2, 2, 2)).is_err());
        assert!(per_request(&t(100, 5, 1, 1), &t(200, 4, 2, 2)).is_err());
    }

    #[test]
    fn report_has_ratios_to_the_first_row() {
        let t = Totals {
            requests: 1,
            instructions: 1,
            i1_misses: 1,
            d1_misses: 1,
        };
        let p = |i| PerRequest {
            instructions: i,
            i1_misses: 10.0,
            d1_misses: 20.0,
        };
        let report = render(
            &Options::default(),
            &[
                ("reqwest", t, t, p(80_000.0)),
                ("infermux-standard", t, t, p(90_000.0)),
            ],
        );
        assert!(
            report.contains("| reqwest | 1 / 1 | 80000 | 1.000× | 10 | 1.000× | 20 | 1.000× |")
        );
        assert!(report.contains("| infermux-standard | 1 / 1 | 90000 | 1.125× |"));
    }

    #[test]
    fn only_rust_peers_are_counted() {
        let opts = |peers: &[&str]| Options {
            peers: Some(peers.iter().map(|p| (*p).to_owned()).collect()),
            ..Options::default()
        };
        assert_eq!(
            selected(&opts(&["infermux-standard"])),
            Ok(vec!["reqwest", "infermux-standard"])
        );
        assert!(selected(&opts(&["litellm"])).is_err());
        assert_eq!(selected(&Options::default()).unwrap(), bench::RUST_PEERS);
    }
}
