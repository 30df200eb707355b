//! A typed snapshot of a provider's rate-limit headers (`x-ratelimit-*`, `anthropic-ratelimit-*`).

use std::time::Duration;

/// One limited quantity (requests, tokens, input tokens, output tokens) of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RateLimitWindow {
    /// The limit of the window.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// When the window resets, relative to when the response was received.
    pub reset_after: Option<Duration>,
}

impl RateLimitWindow {
    /// Whether nothing was parsed.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset_after.is_none()
    }
    /// Sets the limit.
    pub fn with_limit(mut self, v: u64) -> Self {
        self.limit = Some(v);
        self
    }
    /// Sets what is left.
    pub fn with_remaining(mut self, v: u64) -> Self {
        self.remaining = Some(v);
        self
    }
    /// Sets the reset delay.
    pub fn with_reset_after(mut self, v: Duration) -> Self {
        self.reset_after = Some(v);
        self
    }
}

/// The rate-limit state a response announced. Feeds key selection and GCRA limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// Requests.
    pub requests: RateLimitWindow,
    /// Tokens (input + output).
    pub tokens: RateLimitWindow,
    /// Input tokens (Anthropic).
    pub input_tokens: RateLimitWindow,
    /// Output tokens (Anthropic).
    pub output_tokens: RateLimitWindow,
}

impl RateLimitInfo {
    /// Whether no header was found.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.input_tokens.is_empty()
            && self.output_tokens.is_empty()
    }

    /// The longest reset among exhausted windows (`remaining == 0`), if any.
    pub fn exhausted_until(&self) -> Option<Duration> {
        [
            self.requests,
            self.tokens,
            self.input_tokens,
            self.output_tokens,
        ]
        .iter()
        .filter(|w| w.remaining == Some(0))
        .filter_map(|w| w.reset_after)
        .max()
    }
}
