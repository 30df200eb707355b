//! The targets, checked against a run: `standard()` against bare reqwest and
//! async-openai, its client CPU overhead, its added latency in an open loop, its time to first
//! token, and its throughput over each gateway — each figure the median over repeats of a
//! per-repeat comparison, marked pass, fail, or not measured (a point the run did not have is
//! never a pass).

use std::fmt::Write as _;

use super::report::{BASELINE, Spread};
use super::{Measurement, Mode};

/// The client the targets are about.
pub const SUBJECT: &str = "infermux-standard";

/// How a target came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The median figure meets the goal.
    Pass,
    /// The median figure misses the goal.
    Fail,
    /// The run has no figure for it.
    NotMeasured,
}

impl Verdict {
    /// `pass`, `FAIL` or `not measured`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// A bound on a figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The figure must be at least this ratio (×).
    AtLeast(f64),
    /// The figure must be at most this many µs.
    AtMostUs(f64),
}

impl Goal {
    fn met(self, x: f64) -> bool {
        match self {
            Goal::AtLeast(min) => x >= min,
            Goal::AtMostUs(max) => x <= max,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtLeast(min) => format!("≥ {min}×"),
            Goal::AtMostUs(max) => format!("≤ {max} µs"),
        }
    }

    fn figure(self, s: Spread) -> String {
        let one = |x: f64| match self {
            Goal::AtLeast(_) if x < 10.0 => format!("{x:.3}×"),
            Goal::AtLeast(_) => format!("{x:.0}×"),
            Goal::AtMostUs(_) => format!("{x:+.1} µs"),
        };
        if (s.max - s.min).abs() < f64::EPSILON {
            one(s.median)
        } else {
            format!("{} ({} … {})", one(s.median), one(s.min), one(s.max))
        }
    }
}

/// One target checked against a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is compared, at which point.
    pub what: String,
    /// The bound.
    pub goal: Goal,
    /// The per-repeat figures (median, min, max); `None` when the run lacks the points.
    pub figure: Option<Spread>,
    /// Whether the median meets the goal.
    pub verdict: Verdict,
}

/// Selects the measurements of one peer on one runtime at one point.
#[derive(Debug, Clone, Copy)]
struct Sel<'a> {
    peer: &'a str,
    runtime: &'a str,
    mode: Mode,
    stream: bool,
    concurrency: u32,
    rate: u32,
}

impl Sel<'_> {
    fn closed<'a>(peer: &'a str, runtime: &'a str, stream: bool, concurrency: u32) -> Sel<'a> {
        Sel {
            peer,
            runtime,
            mode: Mode::Closed,
            stream,
            concurrency,
            rate: 0,
        }
    }

    fn matches(&self, m: &Measurement) -> bool {
        m.peer == self.peer
            && m.runtime == self.runtime
            && m.mode == self.mode
            && m.stream == self.stream
            && m.rate == self.rate
            && (self.mode == Mode::Open || m.concurrency == self.concurrency)
    }
}

/// `f(a, b)` for every repeat that has both `a` and `b`, as a spread.
fn per_repeat(
    ms: &[Measurement],
    a: Sel<'_>,
    b: Sel<'_>,
    f: impl Fn(&Measurement, &Measurement) -> Option<f64>,
) -> Option<Spread> {
    let values: Vec<f64> = ms
        .iter()
        .filter(|m| a.matches(m))
        .filter_map(|m| {
            let other = ms.iter().find(|o| b.matches(o) && o.repeat == m.repeat)?;
            f(m, other)
        })
        .filter(|x| x.is_finite())
        .collect();
    Spread::of(values)
}

fn ratio(f: impl Fn(&Measurement) -> f64) -> impl Fn(&Measurement, &Measurement) -> Option<f64> {
    move |a, b| {
        let base = f(b);
        (base > 0.0).then(|| f(a) / base)
    }
}

fn delta(
    f: impl Fn(&Measurement) -> Option<f64>,
) -> impl Fn(&Measurement, &Measurement) -> Option<f64> {
    move |a, b| Some(f(a)? - f(b)?)
}

fn target(what: String, goal: Goal, figure: Option<Spread>) -> Target {
    let verdict = match figure {
        None => Verdict::NotMeasured,
        Some(s) if goal.met(s.median) => Verdict::Pass,
        Some(_) => Verdict::Fail,
    };
    Target {
        what,
        goal,
        figure,
        verdict,
    }
}

fn runtime_label(runtime: &str) -> &str {
    match runtime {
        "current" => "current-thread",
        "multi" => "2 workers",
        other => other,
    }
}

/// Client CPU per request, a gateway's own process included.
fn cpu(m: &Measurement) -> f64 {
    m.cpu_us_per_req + m.gateway_cpu_us_per_req.unwrap_or(0.0)
}

/// The targets, in order, checked against `ms`.
pub fn targets(ms: &[Measurement]) -> Vec<Target> {
    let mut out = Vec::new();
    let rps = |m: &Measurement| m.rps;
    for (runtime, min) in [("current", 0.97), ("multi", 0.95)] {
        for c in [16, 64] {
            out.push(target(
                format!(
                    "`standard()` throughput ÷ bare reqwest, c = {c}, {}",
                    runtime_label(runtime)
                ),
                Goal::AtLeast(min),
                per_repeat(
                    ms,
                    Sel::closed(SUBJECT, runtime, false, c),
                    Sel::closed(BASELINE, runtime, false, c),
                    ratio(rps),
                ),
            ));
        }
    }
    for runtime in ["current", "multi"] {
        for c in [16, 64] {
            out.push(target(
                format!(
                    "`standard()` throughput ÷ async-openai, c = {c}, {}",
                    runtime_label(runtime)
                ),
                Goal::AtLeast(1.0),
                per_repeat(
                    ms,
                    Sel::closed(SUBJECT, runtime, false, c),
                    Sel::closed("async-openai", runtime, false, c),
                    ratio(rps),
                ),
            ));
        }
    }
    for runtime in ["current", "multi"] {
        for c in [16, 64] {
            out.push(target(
                format!(
                    "`standard()` client CPU over bare reqwest, c = {c}, {}",
                    runtime_label(runtime)
                ),
                Goal::AtMostUs(0.5),
                per_repeat(
                    ms,
                    Sel::closed(SUBJECT, runtime, false, c),
                    Sel::closed(BASELINE, runtime, false, c),
                    delta(|m| Some(cpu(m))),
                ),
            ));
        }
    }
    let open = |peer| Sel {
        peer,
        runtime: "current",
        mode: Mode::Open,
        stream: false,
        concurrency: 0,
        rate: 1000,
    };
    // From the hand-off to the client: the harness timer's wake-up lag (1–2 ms, the same for
    // every peer) left out.
    for (name, q, max) in [("p50", 0.50, 10.0), ("p99", 0.99, 50.0)] {
        let pick = move |m: &Measurement| {
            if q < 0.9 {
                m.sent_p50_us
            } else {
                m.sent_p99_us
            }
        };
        out.push(target(
            format!(
                "`standard()` added latency {name} from the hand-off, open loop 1 000 req/s, \
                 current-thread"
            ),
            Goal::AtMostUs(max),
            per_repeat(ms, open(SUBJECT), open(BASELINE), delta(pick)),
        ));
    }
    // Time to first token at the lowest streamed concurrency the run has (1 in the full run).
    let streamed = ms
        .iter()
        .filter(|m| {
            m.peer == SUBJECT && m.runtime == "current" && m.mode == Mode::Closed && m.stream
        })
        .map(|m| m.concurrency)
        .min();
    out.push(target(
        format!(
            "`standard()` time to first token p50 over bare reqwest, c = {}, current-thread",
            streamed.map_or_else(|| "—".to_owned(), |c| c.to_string())
        ),
        Goal::AtMostUs(20.0),
        streamed.and_then(|c| {
            per_repeat(
                ms,
                Sel::closed(SUBJECT, "current", true, c),
                Sel::closed(BASELINE, "current", true, c),
                delta(|m| m.ttft_p50_us),
            )
        }),
    ));
    for (gateway, runtime, min) in [
        ("tensorzero", "python", 20.0),
        ("portkey", "node", 60.0),
        ("litellm", "python", 300.0),
    ] {
        out.push(target(
            format!("`standard()` throughput ÷ {gateway}, c = 16, current-thread"),
            Goal::AtLeast(min),
            per_repeat(
                ms,
                Sel::closed(SUBJECT, "current", false, 16),
                Sel::closed(gateway, runtime, false, 16),
                ratio(rps),
            ),
        ));
    }
    out
}

/// The targets as a markdown section: a table and a count of each verdict.
pub fn render(targets: &[Target]) -> String {
    let mut out = String::new();
    let count = |v: Verdict| targets.iter().filter(|t| t.verdict == v).count();
    let _ = writeln!(
        out,
        "### Targets (issue 9)\n\n{} passed, {} failed, {} not measured. Each figure is the \
         median over repeats of a per-repeat comparison at the same point (min … max after \
         it); the verdict is the median's.\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::NotMeasured)
    );
    let _ = writeln!(
        out,
        "| target | goal | figure | verdict |\n|---|---|---|---|"
    );
    for t in targets {
        let figure = t
            .figure
            .map_or_else(|| "—".to_owned(), |s| t.goal.figure(s));
        let _ = writeln!(
            out,
            "| {} | {} | {figure} | {} |",
            t.what,
            t.goal.text(),
            t.verdict.label()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(peer: &str, runtime: &str, c: u32, repeat: u32, rps: f64, cpu: f64) -> Measurement {
        Measurement {
            peer: peer.to_owned(),
            runtime: runtime.to_owned(),
            mode: Mode::Closed,
            stream: false,
            concurrency: c,
            rate: 0,
            repeat,
            secs: 1.0,
            requests: rps as u64,
            errors: 0,
            dropped: 0,
            rps,
            p50_us: 100.0,
            p99_us: 200.0,
            sent_p50_us: None,
            sent_p99_us: None,
            lag_p50_us: None,
            lag_p99_us: None,
            ttft_p50_us: None,
            ttft_p99_us: None,
            cpu_us_per_req: cpu,
            peak_rss_kb: 10_240,
            upstream_cpu_us_per_req: 5.0,
            upstream_busy: 0.4,
            upstream_requests: rps as u64,
            gateway_cpu_us_per_req: None,
            gateway_rss_kb: None,
        }
    }

    fn find<'a>(ts: &'a [Target], what: &str) -> &'a Target {
        ts.iter()
            .find(|t| t.what.contains(what))
            .unwrap_or_else(|| panic!("no target `{what}` in {ts:#?}"))
    }

    #[test]
    fn a_figure_that_misses_its_target_is_marked_failed() {
        let ms = [
            // c = 16: 0.90× reqwest (fails ≥ 0.97×), +3 µs CPU (fails ≤ 0.5 µs).
            m("reqwest", "current", 16, 0, 10_000.0, 20.0),
            m(SUBJECT, "current", 16, 0, 9_000.0, 23.0),
            // c = 64: 0.99× reqwest (passes), +0.2 µs CPU (passes).
            m("reqwest", "current", 64, 0, 10_000.0, 20.0),
            m(SUBJECT, "current", 64, 0, 9_900.0, 20.2),
            // async-openai faster at c = 16: fails ≥ 1×.
            m("async-openai", "current", 16, 0, 9_500.0, 19.0),
            // LiteLLM 45 req/s: 200× (fails ≥ 300×); TensorZero 300 req/s: 30× (passes).
            m("litellm", "python", 16, 0, 45.0, 30_000.0),
            m("tensorzero", "python", 16, 0, 300.0, 1_000.0),
        ];
        let ts = targets(&ms);
        let verdict = |what: &str| find(&ts, what).verdict;
        assert_eq!(
            verdict("÷ bare reqwest, c = 16, current-thread"),
            Verdict::Fail
        );
        assert_eq!(
            verdict("÷ bare reqwest, c = 64, current-thread"),
            Verdict::Pass
        );
        assert_eq!(
            verdict("÷ async-openai, c = 16, current-thread"),
            Verdict::Fail
        );
        assert_eq!(
            verdict("CPU over bare reqwest, c = 16, current-thread"),
            Verdict::Fail
        );
        assert_eq!(
            verdict("CPU over bare reqwest, c = 64, current-thread"),
            Verdict::Pass
        );
        assert_eq!(verdict("÷ litellm"), Verdict::Fail);
        assert_eq!(verdict("÷ tensorzero"), Verdict::Pass);
        // Points the run did not have are never a pass.
        assert_eq!(
            verdict("÷ bare reqwest, c = 16, 2 workers"),
            Verdict::NotMeasured
        );
        assert_eq!(verdict("÷ portkey"), Verdict::NotMeasured);
        assert_eq!(verdict("added latency p50"), Verdict::NotMeasured);
        assert_eq!(verdict("time to first token"), Verdict::NotMeasured);

        let md = render(&ts);
        assert!(
            md.contains(
                "| `standard()` throughput ÷ bare reqwest, c = 16, current-thread | ≥ 0.97× | \
                 0.900× | FAIL |"
            ),
            "{md}"
        );
        assert!(md.contains("| +3.0 µs | FAIL |"), "{md}");
        assert!(md.contains("3 passed, 4 failed,"), "{md}");
    }

    #[test]
    fn open_loop_and_streamed_targets_are_differences_per_repeat() {
        let mut ms = Vec::new();
        for (repeat, added_p50, added_p99) in [(0, 4.0, 30.0), (1, 12.0, 80.0), (2, 6.0, 40.0)] {
            let mut base = m("reqwest", "current", 1024, repeat, 1000.0, 20.0);
            base.mode = Mode::Open;
            base.rate = 1000;
            base.p50_us = 1_100.0 + f64::from(repeat);
            base.p99_us = 2_300.0;
            base.sent_p50_us = Some(100.0 + f64::from(repeat));
            base.sent_p99_us = Some(300.0);
            let mut ours = base.clone();
            ours.peer = SUBJECT.to_owned();
            // the figures from the scheduled time are not the target's: far off, they change
            // nothing
            ours.p50_us += 1_000.0;
            ours.p99_us += 5_000.0;
            ours.sent_p50_us = ours.sent_p50_us.map(|x| x + added_p50);
            ours.sent_p99_us = ours.sent_p99_us.map(|x| x + added_p99);
            ms.extend([base, ours]);
        }
        let mut base = m("reqwest", "current", 1, 0, 1000.0, 20.0);
        base.stream = true;
        base.ttft_p50_us = Some(50.0);
        base.ttft_p99_us = Some(90.0);
        let mut ours = base.clone();
        ours.peer = SUBJECT.to_owned();
        ours.ttft_p50_us = Some(75.0);
        ms.extend([base, ours]);

        let ts = targets(&ms);
        let p50 = find(&ts, "added latency p50");
        // Per repeat +4, +12, +6: the median +6 passes ≤ 10 µs though one repeat did not.
        assert_eq!(
            p50.figure,
            Some(Spread {
                median: 6.0,
                min: 4.0,
                max: 12.0
            })
        );
        assert_eq!(p50.verdict, Verdict::Pass);
        let p99 = find(&ts, "added latency p99");
        assert_eq!(p99.figure.map(|s| s.median), Some(40.0));
        assert_eq!(p99.verdict, Verdict::Pass);
        let ttft = find(&ts, "time to first token p50 over bare reqwest, c = 1,");
        assert_eq!(ttft.figure.map(|s| s.median), Some(25.0));
        assert_eq!(ttft.verdict, Verdict::Fail);
    }
}
