//! [`ApiKey`]: a secret that cannot be printed.

use std::fmt;
use std::sync::Arc;

/// An API key. `Debug` prints `ApiKey(***)`; there is no `Display` and no `Serialize`, so a key
/// cannot end up in a log line, an error or a metric by accident. Read it only where it is sent.
///
/// ```
/// use infermux_core::ApiKey;
/// let key = ApiKey::new("sk-secret");
/// assert_eq!(format!("{key:?}"), "ApiKey(***)");
/// assert_eq!(key.expose(), "sk-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl AsRef<str>) -> Self {
        ApiKey(Arc::from(key.as_ref().trim()))
    }

    /// Reads a key from an environment variable; `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(ApiKey::new)
    }

    /// The key itself. Call this only to put the key on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` contains this key (for tests and log scrubbing).
    pub fn appears_in(&self, text: &str) -> bool {
        !self.0.is_empty() && text.contains(&*self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// An environment variable's name as an error may show it: the name itself when it looks like
/// one (digits and `_` with capitals only or small letters only, not starting with a digit,
/// at most 64 characters, and words between `_`s that read as words: at most 24 characters,
/// and at most 12 where letters and digits mix), else a placeholder. A key pasted where its
/// variable's name goes (`--api-key-env sk-…`, `env = "sk-…"`: most keys mix cases or hold a
/// `-`; Azure's and self-hosted servers' are often lower-case hex) is not printed back in the
/// error that says the variable is not set.
///
/// ```
/// use infermux_core::shown_var_name;
/// assert_eq!(shown_var_name("OPENAI_API_KEY"), "OPENAI_API_KEY");
/// assert_eq!(shown_var_name("openai_key"), "openai_key");
/// assert_eq!(shown_var_name("AZURE_OPENAI_KEY_2"), "AZURE_OPENAI_KEY_2");
/// let hidden = "(a name that looks like a value, not shown)";
/// assert_eq!(shown_var_name("sk-proj-abc123"), hidden);
/// assert_eq!(shown_var_name("hf_AbCdEf0123456789"), hidden);
/// // `openssl rand -hex 16`, and a 32-character key of letters only
/// assert_eq!(shown_var_name("a3f29c0b5e7d41c8b2a6f0e9d8c7b6a5"), hidden);
/// assert_eq!(shown_var_name("qwertzuiopasdfghjklyxcvbnmqwertz"), hidden);
/// ```
pub fn shown_var_name(name: &str) -> &str {
    let one_case = |upper: bool| {
        name.bytes().all(|b| {
            b.is_ascii_digit()
                || b == b'_'
                || (upper && b.is_ascii_uppercase())
                || (!upper && b.is_ascii_lowercase())
        })
    };
    let word = |w: &str| {
        let mixed =
            w.bytes().any(|b| b.is_ascii_digit()) && w.bytes().any(|b| b.is_ascii_alphabetic());
        w.len() <= 24 && !(mixed && w.len() > 12)
    };
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && (one_case(true) || one_case(false))
        && name.split('_').all(word);
    if looks_like_a_name {
        name
    } else {
        "(a name that looks like a value, not shown)"
    }
}
