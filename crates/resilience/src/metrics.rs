//! Prometheus text rendering of endpoint counter snapshots.

use std::fmt::Write;

use infermux_core::{CounterSnapshot, EndpointId, ErrorKind, RejectReason};

use crate::breaker::BreakerState;

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders snapshots in the Prometheus text exposition format (version 0.0.4).
///
/// The layout is fixed: whatever the traffic, every scrape has the same series — every error
/// kind under `infermux_failures_total`, every reason under `infermux_rejected_total`, every
/// state under `infermux_breaker_state` (1 for the current one, 0 for the others) and the
/// same latency buckets ([`LATENCY_BOUNDS_MICROS`](infermux_core::LATENCY_BOUNDS_MICROS)).
/// Attempts are counted after admission: a call refused by a full queue or an open breaker
/// is a rejection, not an attempt, and has no latency.
///
/// ```
/// use infermux_core::{EndpointCounters, EndpointId, ErrorKind};
/// use infermux_resilience::render_prometheus;
/// use std::time::Duration;
/// let c = EndpointCounters::new();
/// c.record_request();
/// c.record_failure(ErrorKind::RateLimited, Duration::from_millis(3));
/// let text = render_prometheus(&[(EndpointId::new("openai"), c.snapshot())]);
/// assert!(text.contains(r#"infermux_failures_total{endpoint="openai",kind="rate_limited"} 1"#));
/// assert!(text.contains(r#"infermux_failures_total{endpoint="openai",kind="server"} 0"#));
/// assert!(text.contains(r#"infermux_breaker_state{endpoint="openai",state="closed"} 1"#));
/// ```
pub fn render_prometheus(snapshots: &[(EndpointId, CounterSnapshot)]) -> String {
    let mut out = String::new();
    let mut metric =
        |name: &str, kind: &str, help: &str, values: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in values {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let ep = |id: &EndpointId| format!("endpoint=\"{}\"", label(id.as_str()));
    let simple = |f: fn(&CounterSnapshot) -> u64| {
        snapshots
            .iter()
            .map(move |(id, s)| (ep(id), f(s).to_string()))
            .collect::<Vec<_>>()
    };
    metric(
        "infermux_requests_total",
        "counter",
        "Attempts sent to the endpoint (after admission; rejections are not attempts).",
        &mut simple(|s| s.requests).into_iter(),
    );
    metric(
        "infermux_successes_total",
        "counter",
        "Attempts that succeeded.",
        &mut simple(|s| s.successes).into_iter(),
    );
    metric(
        "infermux_failures_total",
        "counter",
        "Attempts that failed, by error kind.",
        &mut snapshots.iter().flat_map(|(id, s)| {
            ErrorKind::ALL.into_iter().map(move |k| {
                (
                    format!("{},kind=\"{}\"", ep(id), k.as_str()),
                    s.failures(k).to_string(),
                )
            })
        }),
    );
    metric(
        "infermux_rejected_total",
        "counter",
        "Calls refused before an attempt (queue full, circuit open, deadline while queued), by reason.",
        &mut snapshots.iter().flat_map(|(id, s)| {
            RejectReason::ALL.into_iter().map(move |r| {
                (
                    format!("{},reason=\"{}\"", ep(id), r.as_str()),
                    s.rejected(r).to_string(),
                )
            })
        }),
    );
    metric(
        "infermux_retries_total",
        "counter",
        "Retries scheduled.",
        &mut simple(|s| s.retries).into_iter(),
    );
    metric(
        "infermux_in_flight",
        "gauge",
        "Attempts in flight.",
        &mut simple(|s| s.in_flight).into_iter(),
    );
    metric(
        "infermux_queued",
        "gauge",
        "Requests waiting for admission.",
        &mut simple(|s| s.queued).into_iter(),
    );
    metric(
        "infermux_queue_wait_seconds_total",
        "counter",
        "Time spent waiting for admission.",
        &mut snapshots
            .iter()
            .map(|(id, s)| (ep(id), format!("{:.6}", s.queue_wait.as_secs_f64()))),
    );
    metric(
        "infermux_tokens_in_total",
        "counter",
        "Input tokens reported.",
        &mut simple(|s| s.tokens_in).into_iter(),
    );
    metric(
        "infermux_tokens_out_total",
        "counter",
        "Output tokens reported.",
        &mut simple(|s| s.tokens_out).into_iter(),
    );
    metric(
        "infermux_breaker_state",
        "gauge",
        "Breaker state: 1 for the current state, 0 for the others.",
        &mut snapshots.iter().flat_map(|(id, s)| {
            BreakerState::ALL.into_iter().map(move |st| {
                (
                    format!("{},state=\"{}\"", ep(id), st.as_str()),
                    u64::from(s.breaker_state == st.code()).to_string(),
                )
            })
        }),
    );
    metric(
        "infermux_breaker_trips_total",
        "counter",
        "Breaker CLOSED to OPEN transitions.",
        &mut simple(|s| s.breaker_trips).into_iter(),
    );
    let _ = writeln!(
        out,
        "# HELP infermux_latency_seconds Latency of finished attempts (rejections excluded)."
    );
    let _ = writeln!(out, "# TYPE infermux_latency_seconds histogram");
    for (id, s) in snapshots {
        // (the shards are read one bucket array after the other while attempts record: the
        // total is taken no lower than the last finite bucket, so the buckets stay cumulative)
        let mut total = s.latency.count;
        for (upper_us, cumulative) in s.latency.fixed_cumulative() {
            total = total.max(cumulative);
            let _ = writeln!(
                out,
                "infermux_latency_seconds_bucket{{{},le=\"{:.6}\"}} {cumulative}",
                ep(id),
                upper_us as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "infermux_latency_seconds_bucket{{{},le=\"+Inf\"}} {total}",
            ep(id),
        );
        let _ = writeln!(
            out,
            "infermux_latency_seconds_sum{{{}}} {:.6}",
            ep(id),
            s.latency.sum.as_secs_f64()
        );
        let _ = writeln!(out, "infermux_latency_seconds_count{{{}}} {total}", ep(id),);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot read while attempts record may hold a latency in a finite bucket and not
    /// yet in the total: `+Inf` and `_count` are never below the last finite bucket (a
    /// histogram whose buckets go down is refused or misread by Prometheus).
    #[test]
    fn the_inf_bucket_is_never_below_a_finite_one() {
        let mut s = CounterSnapshot::default();
        s.latency.fixed = vec![1; infermux_core::LATENCY_BOUNDS_MICROS.len()];
        s.latency.count = 1;
        let text = render_prometheus(&[(EndpointId::new("e"), s)]);
        let value = |prefix: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} in {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let n = infermux_core::LATENCY_BOUNDS_MICROS.len() as u64;
        assert_eq!(
            value("infermux_latency_seconds_bucket{endpoint=\"e\",le=\"+Inf\"}"),
            n
        );
        assert_eq!(value("infermux_latency_seconds_count{endpoint=\"e\"}"), n);
    }
}
