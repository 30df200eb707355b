//! TGI's `/metrics` (Prometheus text) as a typed snapshot of a few gauges and counters.

use serde::Serialize;

/// A few of TGI's metrics, summed over label sets; `None` when the server did not report one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[non_exhaustive]
pub struct TgiMetrics {
    /// Requests waiting in the queue (`tgi_queue_size`).
    pub queue_size: Option<f64>,
    /// Requests in the running batch (`tgi_batch_current_size`).
    pub batch_current_size: Option<f64>,
    /// Maximum tokens of the running batch (`tgi_batch_current_max_tokens`).
    pub batch_current_max_tokens: Option<f64>,
    /// Requests received (`tgi_request_count`).
    pub request_count: Option<f64>,
    /// Requests that succeeded (`tgi_request_success`).
    pub request_success: Option<f64>,
    /// Requests that failed (`tgi_request_failure`).
    pub request_failure: Option<f64>,
}

impl TgiMetrics {
    /// Parses Prometheus text; lines it does not understand are skipped.
    ///
    /// ```
    /// let m = infermux_hf_tgi::TgiMetrics::parse("# TYPE tgi_queue_size gauge\ntgi_queue_size 3\ntgi_request_count{method=\"POST\"} 10\ntgi_request_count{method=\"GET\"} 2\n");
    /// assert_eq!(m.queue_size, Some(3.0));
    /// assert_eq!(m.request_count, Some(12.0));
    /// assert_eq!(m.batch_current_size, None);
    /// ```
    pub fn parse(text: &str) -> Self {
        let mut m = TgiMetrics::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name_labels, value) = match line.rsplit_once('}') {
                Some((nl, rest)) => (nl, rest.trim()),
                None => match line.split_once(char::is_whitespace) {
                    Some((n, v)) => (n, v.trim()),
                    None => continue,
                },
            };
            let name = name_labels.split('{').next().unwrap_or("").trim();
            let Some(v) = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let slot = match name {
                "tgi_queue_size" => &mut m.queue_size,
                "tgi_batch_current_size" => &mut m.batch_current_size,
                "tgi_batch_current_max_tokens" => &mut m.batch_current_max_tokens,
                "tgi_request_count" => &mut m.request_count,
                "tgi_request_success" => &mut m.request_success,
                "tgi_request_failure" => &mut m.request_failure,
                _ => continue,
            };
            *slot = Some(slot.unwrap_or(0.0) + v);
        }
        m
    }
}
