//! Token usage, including cached and reasoning tokens.

/// Tokens a call consumed, as the provider reported them.
///
/// ```
/// use infermux_core::Usage;
/// let mut u = Usage::new(100, 20);
/// u.cached_input_tokens = Some(64);
/// assert_eq!(u.total_tokens(), 120);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens (including cached ones).
    pub input_tokens: u64,
    /// Generated tokens (including reasoning ones).
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, OpenAI's `cache_write_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Generated tokens spent on reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Usage with input and output counts.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        }
    }
    /// Input plus output (saturating: counts come from servers).
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
    /// Adds another usage (summing optional fields present in either).
    pub fn add(&mut self, other: &Usage) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            }
        }
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = sum(self.cached_input_tokens, other.cached_input_tokens);
        self.cache_creation_input_tokens = sum(
            self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        self.reasoning_tokens = sum(self.reasoning_tokens, other.reasoning_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::Usage;

    /// Counts come from servers: sums saturate, never panic (debug) or wrap (release).
    #[test]
    fn sums_of_server_counts_saturate() {
        let mut u = Usage::new(u64::MAX, 1);
        assert_eq!(u.total_tokens(), u64::MAX);
        u.cached_input_tokens = Some(u64::MAX);
        let mut more = Usage::new(5, u64::MAX);
        more.cached_input_tokens = Some(1);
        u.add(&more);
        assert_eq!((u.input_tokens, u.output_tokens), (u64::MAX, u64::MAX));
        assert_eq!(u.cached_input_tokens, Some(u64::MAX));
    }
}
