//! A rough token estimator for budgeting (TPM limits, batch sizes) before a provider counts.

/// Estimates the number of tokens `text` costs: about four bytes of English per token, and at
/// least one token per word or punctuation run. Over-estimates rather than under-estimates.
///
/// ```
/// use infermux_core::estimate_tokens;
/// assert_eq!(estimate_tokens(""), 0);
/// assert!(estimate_tokens("Hello, world!") >= 3);
/// let long = "lorem ipsum ".repeat(1000);
/// let n = estimate_tokens(&long);
/// assert!((2000..=4000).contains(&n));
/// ```
pub fn estimate_tokens(text: &str) -> u32 {
    let mut words = 0u32;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if !in_word {
                words += 1;
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                words += 1;
            }
        }
    }
    let by_bytes = u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX);
    by_bytes.max(words)
}
