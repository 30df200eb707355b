//! The peer benchmark: the same OpenAI chat workload through bare reqwest, infermux and other
//! clients and gateways, against one mock upstream, each point in a fresh process.
//!
//! `cargo xtask bench peers [--quick]` orchestrates it (see `xtask/src/bench.rs`); this module
//! is the Rust side, driven by the `peers` binary:
//!
//! - [`upstream`]: the hyper mock (one thread, loopback only, reports its own CPU);
//! - [`drive`]: one peer × one concurrency (or rate) × one mode × one runtime flavour → one
//!   [`Measurement`] printed as a JSON line (the Python drivers in `benches/peers/` print the
//!   same line);
//! - [`report`]: JSON lines → a markdown table and a PNG chart, every figure as a ratio to bare
//!   reqwest of the same run and repeat;
//! - [`targets`]: the targets for `standard()` checked against a run, pass or fail.
//!
//! Adding a peer is a variant of [`drive::Peer`] and its arms in [`drive::Client`] (the
//! multiplex pool's, `infermux-pool`, was added so), and a name in xtask's `RUST_PEERS`.

pub mod chart;
pub mod drive;
pub mod procfs;
pub mod report;
pub mod targets;
pub mod upstream;

use serde::{Deserialize, Serialize};

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Closed loop: `concurrency` callers, each sending its next request when the last
    /// answered.
    Closed,
    /// Open loop: requests sent on a fixed schedule of `rate` per second, latency measured from
    /// the scheduled send time.
    Open,
}

/// One measured point: what a driver prints, one JSON object on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// The peer's name (`reqwest`, `infermux-disabled`, …).
    pub peer: String,
    /// The client runtime: `current` (current-thread tokio), `multi` (2 workers), or the
    /// gateway's own (`python`, `node`).
    pub runtime: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Streamed answers (time to first token measured) or plain JSON.
    pub stream: bool,
    /// Callers in a closed loop; the cap on requests in flight in an open loop.
    pub concurrency: u32,
    /// Requests per second scheduled in an open loop; 0 in a closed loop.
    pub rate: u32,
    /// Which repeat of the run this point belongs to (0-based).
    pub repeat: u32,
    /// The measured window in seconds (after the warm-up).
    pub secs: f64,
    /// Requests answered successfully in the window.
    pub requests: u64,
    /// Requests that failed in the window.
    pub errors: u64,
    /// Open loop: scheduled sends skipped because `concurrency` requests were in flight, plus
    /// requests still unfinished 5 s after the window (the Python gateways' driver waits up to
    /// 30 s for ten answers at least; the peer could not keep up).
    pub dropped: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency (µs); from the scheduled send time in an open loop.
    pub p50_us: f64,
    /// 99th percentile latency (µs).
    pub p99_us: f64,
    /// Open loop, the Rust driver's peers (not the Python gateways): median latency from the
    /// moment the scheduler handed the request to the client (µs), without the scheduler's
    /// lag in waking for it.
    pub sent_p50_us: Option<f64>,
    /// Open loop, the Rust driver's peers: 99th percentile latency from the hand-off (µs).
    pub sent_p99_us: Option<f64>,
    /// Open loop, the Rust driver's peers: median of how late the scheduler woke for a send
    /// (hand-off − scheduled time, µs): tokio's timer, and any time the client kept the
    /// runtime busy when a send was due.
    pub lag_p50_us: Option<f64>,
    /// Open loop, the Rust driver's peers: 99th percentile of that lag (µs).
    pub lag_p99_us: Option<f64>,
    /// Streams: median time to the first text delta (µs).
    pub ttft_p50_us: Option<f64>,
    /// Streams: 99th percentile time to the first text delta (µs).
    pub ttft_p99_us: Option<f64>,
    /// Client CPU time per successful request (µs): the driver process, all threads.
    pub cpu_us_per_req: f64,
    /// The driver process's peak resident set (KiB).
    pub peak_rss_kb: u64,
    /// The mock upstream's CPU per request it served in the window (µs).
    pub upstream_cpu_us_per_req: f64,
    /// The mock upstream's CPU time over the window's wall time (1.0 = its one thread saturated).
    pub upstream_busy: f64,
    /// Requests the upstream served in the window.
    pub upstream_requests: u64,
    /// A gateway in its own process (Portkey): its CPU per request (µs).
    pub gateway_cpu_us_per_req: Option<f64>,
    /// A gateway in its own process: its peak resident set (KiB).
    pub gateway_rss_kb: Option<u64>,
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank; 0 for no samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
