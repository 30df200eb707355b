//! JSON result lines → a markdown report: every figure of every peer next to bare reqwest's at
//! the same point of the same run, as a ratio (or a difference in µs), the median over repeats
//! with the spread (min–max of the per-repeat ratios).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::chart::Panel;
use super::targets;
use super::{Measurement, Mode};

/// The baseline every ratio is taken against.
pub const BASELINE: &str = "reqwest";

/// Parses JSON result lines (blank lines ignored). A line that is not a [`Measurement`], or
/// one with impossible figures (no request, a non-finite or negative number), is an error
/// naming the line; so is an input with no line at all.
pub fn parse_lines(text: &str) -> Result<Vec<Measurement>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let m: Measurement =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        check(&m).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(m);
    }
    if out.is_empty() {
        return Err("no measurement in the input".to_owned());
    }
    Ok(out)
}

fn check(m: &Measurement) -> Result<(), String> {
    if m.requests == 0 {
        return Err(format!("{}: no successful request", m.peer));
    }
    let numbers = [
        m.secs,
        m.rps,
        m.p50_us,
        m.p99_us,
        m.cpu_us_per_req,
        m.upstream_cpu_us_per_req,
        m.upstream_busy,
    ];
    if numbers.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return Err(format!("{}: a negative or non-finite figure", m.peer));
    }
    if m.p99_us < m.p50_us {
        return Err(format!("{}: p99 below p50", m.peer));
    }
    if m.mode == Mode::Open && m.rate == 0 {
        return Err(format!("{}: an open-loop point without a rate", m.peer));
    }
    Ok(())
}

/// A point of the matrix, apart from the peer and the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    mode: Mode,
    stream: bool,
    concurrency: u32,
    rate: u32,
}

impl Point {
    fn of(m: &Measurement) -> Point {
        Point {
            mode: m.mode,
            stream: m.stream,
            concurrency: m.concurrency,
            rate: m.rate,
        }
    }
}

/// The runtime a row is compared against: reqwest on the same tokio flavour, and on a
/// current-thread runtime for gateways (which bring their own).
fn baseline_runtime(runtime: &str) -> &str {
    match runtime {
        "multi" => "multi",
        _ => "current",
    }
}

/// Rows are ordered: the baseline, infermux, other Rust clients, then gateways.
fn peer_rank(peer: &str) -> (u8, String) {
    let rank = match peer {
        BASELINE => 0,
        p if p.starts_with("infermux") => 1,
        "async-openai" => 2,
        "tensorzero" => 3,
        "portkey" => 4,
        "litellm" => 5,
        _ => 6,
    };
    (rank, peer.to_owned())
}

fn runtime_rank(runtime: &str) -> u8 {
    match runtime {
        "current" => 0,
        "multi" => 1,
        _ => 2,
    }
}

/// One row: a peer on a runtime at a point, its measurement per repeat, and the baseline's
/// per repeat.
struct Row<'a> {
    peer: &'a str,
    runtime: &'a str,
    point: Point,
    runs: Vec<&'a Measurement>,
    pairs: Vec<(&'a Measurement, &'a Measurement)>,
}

impl Row<'_> {
    fn median(&self, f: impl Fn(&Measurement) -> f64) -> f64 {
        self.median_of(|m| Some(f(m))).unwrap_or(f64::NAN)
    }

    /// The per-repeat ratios to the baseline: median, min, max.
    fn ratio(&self, f: impl Fn(&Measurement) -> f64) -> Option<Spread> {
        Spread::of(
            self.pairs
                .iter()
                .filter_map(|(m, b)| {
                    let base = f(b);
                    (base > 0.0).then(|| f(m) / base)
                })
                .collect(),
        )
    }

    /// The per-repeat differences from the baseline.
    fn delta(&self, f: impl Fn(&Measurement) -> f64) -> Option<Spread> {
        self.delta_of(|m| Some(f(m)))
    }

    /// The median of a figure, `None` when no run has it (some figures only some peers
    /// report).
    fn median_of(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(|m| f(m)).collect();
        (!v.is_empty()).then(|| median(v))
    }

    /// The per-repeat differences from the baseline, where both have the figure.
    fn delta_of(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Option<Spread> {
        Spread::of(
            self.pairs
                .iter()
                .filter_map(|(m, b)| Some(f(m)? - f(b)?))
                .collect(),
        )
    }
}

/// A median with the min and max around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The median, min and max of `values`; `None` for no value.
    pub fn of(values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread {
            median: median(values),
            min,
            max,
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ratio_text(s: Option<Spread>) -> String {
    match s {
        None => "—".to_owned(),
        Some(s) if (s.max - s.min).abs() < f64::EPSILON => format!("{}×", sig(s.median)),
        Some(s) => format!("{}× ({}–{})", sig(s.median), sig(s.min), sig(s.max)),
    }
}

/// A figure in whole µs, or a dash when the peer does not report it.
fn us_text(x: Option<f64>) -> String {
    x.map_or("—".to_owned(), |x| format!("{x:.0}"))
}

fn delta_text(s: Option<Spread>) -> String {
    match s {
        None => "—".to_owned(),
        Some(s) if (s.max - s.min).abs() < f64::EPSILON => format!("{:+.1}", s.median),
        Some(s) => format!("{:+.1} ({:+.1}…{:+.1})", s.median, s.min, s.max),
    }
}

/// Two significant digits for ratios below 1, two decimals above.
fn sig(x: f64) -> String {
    if x >= 0.995 || x == 0.0 {
        format!("{x:.2}")
    } else {
        let digits = (-x.log10().floor()) as usize + 1;
        format!("{x:.digits$}")
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// What the report says about where and how it was measured.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// The date (YYYY-MM-DD).
    pub date: String,
    /// The machine.
    pub machine: String,
    /// The command that produced the figures.
    pub command: String,
    /// Anything else worth saying (durations, versions of the peers).
    pub notes: Vec<String>,
}

fn rows(ms: &[Measurement]) -> Vec<Row<'_>> {
    let mut groups: BTreeMap<(Point, u8, String, String), Vec<&Measurement>> = BTreeMap::new();
    for m in ms {
        let (rank, _) = peer_rank(&m.peer);
        groups
            .entry((
                Point::of(m),
                runtime_rank(&m.runtime),
                format!("{rank}{}", m.peer),
                m.runtime.clone(),
            ))
            .or_default()
            .push(m);
    }
    let find_base = |point: Point, runtime: &str, repeat: u32| {
        ms.iter().find(|b| {
            b.peer == BASELINE
                && b.runtime == baseline_runtime(runtime)
                && Point::of(b) == point
                && b.repeat == repeat
        })
    };
    groups
        .into_values()
        .map(|runs| {
            let first = runs[0];
            let point = Point::of(first);
            let pairs = runs
                .iter()
                .filter_map(|m| find_base(point, &m.runtime, m.repeat).map(|b| (*m, b)))
                .collect();
            Row {
                peer: &first.peer,
                runtime: &first.runtime,
                point,
                runs,
                pairs,
            }
        })
        .collect()
}

fn runtime_label(runtime: &str) -> &str {
    match runtime {
        "current" => "current-thread",
        "multi" => "2 workers",
        other => other,
    }
}

/// The whole report in markdown.
pub fn render(ms: &[Measurement], header: &Header) -> String {
    let rows = rows(ms);
    let mut out = String::new();
    let _ = writeln!(out, "Measured {} on {}.\n", header.date, header.machine);
    let _ = writeln!(out, "`{}`\n", header.command);
    for note in &header.notes {
        let _ = writeln!(out, "{note}\n");
    }
    let repeats: BTreeSet<u32> = ms.iter().map(|m| m.repeat).collect();
    let _ = writeln!(
        out,
        "Each peer runs in a fresh process per point; {} repeat(s), the peers interleaved within \
         each. A ratio is the peer's figure over bare reqwest's at the same point in the same \
         repeat (gateways against reqwest on a current-thread runtime): the median over repeats, \
         then (min–max). Client CPU is the driver process's (all threads) per successful \
         request; for Portkey the Node gateway's CPU is shown separately and added. Peak RSS is \
         the process's `VmHWM`.\n",
        repeats.len()
    );
    upstream_note(&mut out, ms);
    out.push_str(&targets::render(&targets::targets(ms)));
    out.push('\n');

    // Closed loop: throughput by concurrency, then the details.
    for stream in [false, true] {
        let closed: Vec<&Row<'_>> = rows
            .iter()
            .filter(|r| r.point.mode == Mode::Closed && r.point.stream == stream)
            .collect();
        if closed.is_empty() {
            continue;
        }
        let what = if stream {
            "streamed answers"
        } else {
            "plain JSON answers"
        };
        let _ = writeln!(
            out,
            "### Closed loop, {what}: throughput (× bare reqwest)\n"
        );
        let concurrencies: BTreeSet<u32> = closed.iter().map(|r| r.point.concurrency).collect();
        let mut head = "| peer | runtime |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for c in &concurrencies {
            let _ = write!(head, " c = {c} |");
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        let mut keys: Vec<(u8, u8, String, &str)> = closed
            .iter()
            .map(|r| {
                let (rank, name) = peer_rank(r.peer);
                (runtime_rank(r.runtime), rank, name, r.runtime)
            })
            .collect();
        keys.sort();
        keys.dedup();
        for (_, _, peer, runtime) in keys {
            let mut line = format!("| {peer} | {} |", runtime_label(runtime));
            for c in &concurrencies {
                let cell = closed
                    .iter()
                    .find(|r| r.peer == peer && r.runtime == runtime && r.point.concurrency == *c)
                    .map(|r| {
                        if peer == BASELINE {
                            format!("{} req/s", thousands(r.median(|m| m.rps)))
                        } else {
                            ratio_text(r.ratio(|m| m.rps))
                        }
                    })
                    .unwrap_or_else(|| "—".to_owned());
                let _ = write!(line, " {cell} |");
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "<details><summary>Closed loop, {what}: every figure</summary>\n"
        );
        if stream {
            let _ = writeln!(
                out,
                "| peer | runtime | c | req/s | × | TTFT p50 µs | Δ TTFT p50 µs | TTFT p99 µs | Δ TTFT p99 µs | p99 µs | × | client CPU µs/req | Δ µs | peak RSS MB | × | upstream busy | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
        } else {
            let _ = writeln!(
                out,
                "| peer | runtime | c | req/s | × | p50 µs | × | p99 µs | × | client CPU µs/req | Δ µs | peak RSS MB | × | upstream busy | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
        }
        let mut sorted = closed.clone();
        sorted.sort_by_key(|r| {
            (
                runtime_rank(r.runtime),
                r.point.concurrency,
                peer_rank(r.peer),
            )
        });
        for r in sorted {
            let cpu = |m: &Measurement| m.cpu_us_per_req + m.gateway_cpu_us_per_req.unwrap_or(0.0);
            let rss = |m: &Measurement| (m.peak_rss_kb + m.gateway_rss_kb.unwrap_or(0)) as f64;
            let mut line = format!(
                "| {} | {} | {} | {} | {} |",
                r.peer,
                runtime_label(r.runtime),
                r.point.concurrency,
                thousands(r.median(|m| m.rps)),
                ratio_text(r.ratio(|m| m.rps)),
            );
            if stream {
                let t50 = |m: &Measurement| m.ttft_p50_us.unwrap_or(f64::NAN);
                let t99 = |m: &Measurement| m.ttft_p99_us.unwrap_or(f64::NAN);
                let _ = write!(
                    line,
                    " {:.0} | {} | {:.0} | {} | {:.0} | {} |",
                    r.median(t50),
                    delta_text(r.delta(t50)),
                    r.median(t99),
                    delta_text(r.delta(t99)),
                    r.median(|m| m.p99_us),
                    ratio_text(r.ratio(|m| m.p99_us)),
                );
            } else {
                let _ = write!(
                    line,
                    " {:.0} | {} | {:.0} | {} |",
                    r.median(|m| m.p50_us),
                    ratio_text(r.ratio(|m| m.p50_us)),
                    r.median(|m| m.p99_us),
                    ratio_text(r.ratio(|m| m.p99_us)),
                );
            }
            let gateway = if r.runs.iter().any(|m| m.gateway_cpu_us_per_req.is_some()) {
                format!(
                    " (driver {:.1} + gateway {:.1})",
                    r.median(|m| m.cpu_us_per_req),
                    r.median(|m| m.gateway_cpu_us_per_req.unwrap_or(0.0))
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                line,
                " {:.1}{gateway} | {} | {:.1} | {} | {:.0} % | {} |",
                r.median(cpu),
                delta_text(r.delta(cpu)),
                r.median(rss) / 1024.0,
                ratio_text(r.ratio(rss)),
                r.median(|m| m.upstream_busy) * 100.0,
                r.runs.iter().map(|m| m.errors).sum::<u64>(),
            );
            out.push_str(&line);
        }
        let _ = writeln!(out, "\n</details>\n");
    }

    // Open loop: added latency.
    let open: Vec<&Row<'_>> = rows.iter().filter(|r| r.point.mode == Mode::Open).collect();
    if !open.is_empty() {
        let _ = writeln!(
            out,
            "### Open loop: added latency over bare reqwest at the same rate\n\n\
             Latency runs from each request's scheduled send time, and (the Rust driver's \
             peers, the \"hand-off\" columns) from the moment the scheduler handed the \
             request to the client. The difference is how late the scheduler woke for the \
             send (\"lag\"): mostly tokio's timer wheel, whose 1 ms resolution makes it \
             about 1 ms, but also any time the client kept the runtime busy when a send was \
             due. The hand-off figures leave the lag out (so they miss that second part: \
             compare the lag columns); the scheduled-time figures carry all of it. Added = \
             peer − reqwest in the same repeat, µs. `dropped` counts scheduled sends skipped because the cap of requests in flight \
             was reached or unfinished 5 s after the window (for the Python gateways, up to \
             30 s, until ten answers): a peer with drops could not keep up with the rate.\n"
        );
        let _ = writeln!(
            out,
            "| peer | runtime | rate/s | achieved req/s | p50 µs | added p50 µs | p99 µs | added p99 µs | hand-off p50 µs | added | hand-off p99 µs | added | lag p50 / p99 µs | client CPU µs/req | Δ µs | dropped | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut sorted = open.clone();
        sorted.sort_by_key(|r| {
            (
                r.point.stream,
                r.point.rate,
                runtime_rank(r.runtime),
                peer_rank(r.peer),
            )
        });
        for r in sorted {
            let cpu = |m: &Measurement| m.cpu_us_per_req + m.gateway_cpu_us_per_req.unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| {} | {} | {}{} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
                r.peer,
                runtime_label(r.runtime),
                thousands(f64::from(r.point.rate)),
                if r.point.stream { " (streamed)" } else { "" },
                thousands(r.median(|m| m.rps)),
                r.median(|m| m.p50_us),
                delta_text(r.delta(|m| m.p50_us)),
                r.median(|m| m.p99_us),
                delta_text(r.delta(|m| m.p99_us)),
                us_text(r.median_of(|m| m.sent_p50_us)),
                delta_text(r.delta_of(|m| m.sent_p50_us)),
                us_text(r.median_of(|m| m.sent_p99_us)),
                delta_text(r.delta_of(|m| m.sent_p99_us)),
                match (r.median_of(|m| m.lag_p50_us), r.median_of(|m| m.lag_p99_us)) {
                    (Some(p50), Some(p99)) => format!("{p50:.0} / {p99:.0}"),
                    _ => "—".to_owned(),
                },
                r.median(cpu),
                delta_text(r.delta(cpu)),
                r.runs.iter().map(|m| m.dropped).sum::<u64>(),
                r.runs.iter().map(|m| m.errors).sum::<u64>(),
            );
        }
        let _ = writeln!(out);
    }
    out
}

fn upstream_note(out: &mut String, ms: &[Measurement]) {
    let busiest = ms
        .iter()
        .max_by(|a, b| a.upstream_busy.total_cmp(&b.upstream_busy));
    if let Some(m) = busiest {
        let verdict = if m.upstream_busy < 0.9 {
            "never the bottleneck"
        } else {
            "saturated at that point, which then measures the mock as much as the peer"
        };
        let _ = writeln!(
            out,
            "The mock upstream (hyper, one thread) was at most {:.0} % busy in any point \
             ({} at c = {}, {}), {:.1} µs of its CPU per request: {verdict}.\n",
            m.upstream_busy * 100.0,
            m.peer,
            m.concurrency,
            runtime_label(&m.runtime),
            m.upstream_cpu_us_per_req,
        );
    }
}

/// The chart's series: for each runtime panel (`current`, `multi`), each peer's plain-JSON
/// closed-loop throughput ratio at each concurrency (the median over repeats).
pub fn chart_series(ms: &[Measurement]) -> Vec<Panel> {
    let rows = rows(ms);
    let mut panels = Vec::new();
    for runtime in ["current", "multi"] {
        let mut peers: BTreeMap<(u8, String), Vec<(u32, f64)>> = BTreeMap::new();
        for r in &rows {
            let in_panel = baseline_runtime(r.runtime) == runtime
                && (r.runtime == runtime || runtime == "current");
            if !in_panel || r.point.mode != Mode::Closed || r.point.stream {
                continue;
            }
            if let Some(s) = r.ratio(|m| m.rps) {
                peers
                    .entry(peer_rank(r.peer))
                    .or_default()
                    .push((r.point.concurrency, s.median));
            }
        }
        if peers.is_empty() {
            continue;
        }
        let series = peers
            .into_iter()
            .map(|((_, name), mut pts)| {
                pts.sort_by_key(|p| p.0);
                (name, pts)
            })
            .collect();
        panels.push((runtime_label(runtime).to_owned(), series));
    }
    panels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(peer: &str, runtime: &str, c: u32, repeat: u32, rps: f64) -> Measurement {
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
            cpu_us_per_req: 10.0,
            peak_rss_kb: 10_240,
            upstream_cpu_us_per_req: 5.0,
            upstream_busy: 0.4,
            upstream_requests: rps as u64,
            gateway_cpu_us_per_req: None,
            gateway_rss_kb: None,
        }
    }

    fn lines(ms: &[Measurement]) -> String {
        ms.iter()
            .map(|m| serde_json::to_string(m).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn open_loop_rows_have_every_column_and_a_dash_for_figures_a_peer_lacks() {
        let open = |peer: &str, runtime: &str, sent: Option<f64>| {
            let mut x = m(peer, runtime, 64, 0, 1000.0);
            x.mode = Mode::Open;
            x.rate = 1000;
            x.p50_us = 1_200.0;
            x.p99_us = 2_000.0;
            x.sent_p50_us = sent;
            x.sent_p99_us = sent.map(|s| s * 2.0);
            x.lag_p50_us = sent.map(|_| 1_000.0);
            x.lag_p99_us = sent.map(|_| 1_400.0);
            x
        };
        let ms = [
            open("reqwest", "current", Some(100.0)),
            open("infermux-standard", "current", Some(104.0)),
            open("litellm", "python", None),
        ];
        let md = render(&ms, &Header::default());
        let table: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("| peer | runtime | rate/s"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(table.len(), 5, "{md}");
        for line in &table {
            assert_eq!(line.matches('|').count(), 18, "{line}");
        }
        assert!(
            table[3].starts_with(
                "| infermux-standard | current-thread | 1 000 | 1 000 | 1200 | +0.0 | 2000 | \
                 +0.0 | 104 | +4.0 | 208 | +8.0 | 1000 / 1400 |"
            ),
            "{md}"
        );
        assert!(table[4].contains("| — | — | — | — | — |"), "{md}");
    }

    #[test]
    fn ratios_are_taken_per_repeat_against_reqwest() {
        let input = lines(&[
            m("reqwest", "current", 16, 0, 1000.0),
            m("infermux-standard", "current", 16, 0, 900.0),
            m("reqwest", "current", 16, 1, 2000.0),
            m("infermux-standard", "current", 16, 1, 1900.0),
            m("litellm", "python", 16, 0, 3.0),
        ]);
        let ms = parse_lines(&input).unwrap();
        let md = render(&ms, &Header::default());
        // Per repeat: 0.90 and 0.95; median 0.925.
        assert!(
            md.contains("| infermux-standard | current-thread | 0.93× (0.90–0.95) |"),
            "{md}"
        );
        assert!(
            md.contains("| reqwest | current-thread | 1 500 req/s |"),
            "{md}"
        );
        // A gateway is compared with reqwest on a current-thread runtime, repeat 0 only.
        assert!(md.contains("| litellm | python | 0.0030× |"), "{md}");
        assert!(md.contains("at most 40 % busy"), "{md}");
        let series = chart_series(&ms);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].1.len(), 3);
    }

    #[test]
    fn malformed_or_impossible_lines_are_rejected_by_line_number() {
        let good = lines(&[m("reqwest", "current", 16, 0, 1000.0)]);
        assert!(parse_lines(&good).is_ok());
        let e = parse_lines(&format!("{good}{{\"peer\":\"x\"}}\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_lines(&format!("{good}not json\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let mut none = m("reqwest", "current", 16, 0, 0.0);
        none.requests = 0;
        assert!(parse_lines(&lines(&[none])).is_err());
        let mut upside_down = m("reqwest", "current", 16, 0, 10.0);
        upside_down.p99_us = 1.0;
        assert!(parse_lines(&lines(&[upside_down])).is_err());
        assert!(parse_lines("\n\n").is_err());
    }

    #[test]
    fn ratios_print_two_significant_digits() {
        assert_eq!(sig(0.8812), "0.88");
        assert_eq!(sig(0.0031), "0.0031");
        assert_eq!(sig(1.004), "1.00");
        assert_eq!(thousands(63512.4), "63 512");
    }
}
