//! A rough token estimator for budgeting (TPM limits, batch sizes) before a provider counts.

/// Estimates the number of tokens `text` costs: about four bytes of English per token, digits
/// in groups of at most three (as GPT tokenizers split numbers), a token per character outside
/// ASCII (CJK, emoji), and at least one token per word or punctuation run. Over-estimates
/// rather than under-estimates.
///
/// ```
/// use infermux_core::estimate_tokens;
/// assert_eq!(estimate_tokens(""), 0);
/// assert!(estimate_tokens("Hello, world!") >= 3);
/// let long = "lorem ipsum ".repeat(1000);
/// let n = estimate_tokens(&long);
/// assert!((2000..=4000).contains(&n));
/// // numbers: 3000 digits are 1000 tokens to cl100k and o200k
/// assert!(estimate_tokens(&"7".repeat(3000)) >= 1000);
/// // a character outside ASCII is a token or more
/// assert!(estimate_tokens(&"漢".repeat(300)) >= 300);
/// ```
pub fn estimate_tokens(text: &str) -> u32 {
    let mut words = 0u32;
    let mut in_word = false;
    // the estimate by kind: digit groups, characters outside ASCII, other ASCII bytes / 4
    let (mut digit_groups, mut digit_run, mut non_ascii, mut ascii) = (0u64, 0u64, 0u64, 0u64);
    for c in text.chars() {
        if c.is_ascii_digit() {
            digit_run += 1;
        } else {
            digit_groups += digit_run.div_ceil(3);
            digit_run = 0;
            if c.is_ascii() {
                ascii += 1;
            } else {
                non_ascii += 1;
            }
        }
        if c.is_alphanumeric() {
            if !in_word {
                words = words.saturating_add(1);
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                words = words.saturating_add(1);
            }
        }
    }
    digit_groups += digit_run.div_ceil(3);
    let by_kind = digit_groups + non_ascii + ascii.div_ceil(4);
    let by_kind = u32::try_from(by_kind).unwrap_or(u32::MAX);
    let by_bytes = u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX);
    by_bytes.max(words).max(by_kind)
}
