//! Prometheus text exposition format (what vLLM serves at `/metrics`), parsed into a
//! [`MetricsSnapshot`], and the vLLM figures worth acting on as [`VllmMetrics`].

use infermux_core::{Error, ErrorKind, Result};

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// The metric name (`vllm:num_requests_running`).
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape.
///
/// ```
/// use infermux_vllm::MetricsSnapshot;
/// let text = "# TYPE vllm:num_requests_running gauge\n\
///             vllm:num_requests_running{model_name=\"m\"} 3.0\n";
/// let snap = MetricsSnapshot::parse(text).unwrap();
/// assert_eq!(snap.value("vllm:num_requests_running"), Some(3.0));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The samples, in the order written.
    pub samples: Vec<Sample>,
}

fn bad(line_no: usize, what: &str) -> Error {
    Error::new(ErrorKind::Decode, format!("metrics line {line_no}: {what}"))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// Parses `{a="x",b="y"}` (starting after `{`); returns the labels and the rest after `}`.
fn parse_labels(mut s: &str, line_no: usize) -> Result<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s
            .find('=')
            .ok_or_else(|| bad(line_no, "label without `=`"))?;
        let name = s[..eq].trim().to_owned();
        let rest = s[eq + 1..].trim_start();
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| bad(line_no, "label value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(bad(line_no, "unterminated label value")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(bad(line_no, "unterminated label value")),
            }
        };
        labels.push((name, value));
        s = &rest[end + 1..];
    }
}

impl MetricsSnapshot {
    /// Parses Prometheus text (version 0.0.4). Comments (`# HELP`, `# TYPE`) and blank lines
    /// are skipped; a malformed sample line is a `Decode` error naming the line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .ok_or_else(|| bad(line_no, "sample without a value"))?;
            let name = line[..name_end].to_owned();
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(after) => parse_labels(after, line_no)?,
                None => (Vec::new(), &line[name_end..]),
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(parse_value)
                .ok_or_else(|| bad(line_no, "sample value is not a number"))?;
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Ok(MetricsSnapshot { samples })
    }

    /// The samples of metric `name`.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of every sample of metric `name` (over all label sets), or `None` when absent.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut it = self.samples(name).peekable();
        it.peek()?;
        Some(it.map(|s| s.value).sum())
    }

    /// The largest sample of metric `name` (over all label sets), or `None` when absent.
    pub fn max_value(&self, name: &str) -> Option<f64> {
        self.samples(name).map(|s| s.value).reduce(f64::max)
    }

    /// The vLLM figures of this snapshot.
    pub fn vllm(&self) -> VllmMetrics {
        let first = |names: &[&str]| names.iter().find_map(|n| self.value(n));
        let count = |names: &[&str]| first(names).map(|v| v.max(0.0).round() as u64);
        VllmMetrics {
            requests_running: count(&["vllm:num_requests_running"]),
            requests_waiting: count(&["vllm:num_requests_waiting"]),
            // a fraction per engine (one sample each): the fullest one, never a sum past 1
            kv_cache_usage: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
                .iter()
                .find_map(|n| self.max_value(n)),
            prompt_tokens_total: count(&["vllm:prompt_tokens_total"]),
            generation_tokens_total: count(&["vllm:generation_tokens_total"]),
            preemptions_total: count(&["vllm:num_preemptions_total"]),
            requests_finished_total: count(&["vllm:request_success_total"]),
        }
    }
}

/// The vLLM figures a scheduler or a dashboard acts on (each `None` when the server does not
/// export it; summed over models when several are served).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct VllmMetrics {
    /// Requests being generated (`vllm:num_requests_running`).
    pub requests_running: Option<u64>,
    /// Requests queued (`vllm:num_requests_waiting`).
    pub requests_waiting: Option<u64>,
    /// KV-cache usage, 0 to 1 (`vllm:kv_cache_usage_perc`, formerly
    /// `vllm:gpu_cache_usage_perc`): with several engines, the fullest one's.
    pub kv_cache_usage: Option<f64>,
    /// Prompt tokens processed (`vllm:prompt_tokens_total`).
    pub prompt_tokens_total: Option<u64>,
    /// Tokens generated (`vllm:generation_tokens_total`).
    pub generation_tokens_total: Option<u64>,
    /// Preemptions (`vllm:num_preemptions_total`).
    pub preemptions_total: Option<u64>,
    /// Finished requests, all finish reasons (`vllm:request_success_total`).
    pub requests_finished_total: Option<u64>,
}
