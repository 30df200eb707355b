//! Scrubbing an endpoint's key out of server text before it can reach an error (a server that
//! echoes the `Authorization` header in its error body must not put the key in a log line).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use infermux_core::ApiKey;
use memchr::memmem::Finder;

/// Keys shorter than this are placeholders (`ollama`, `EMPTY`, `none`) that OpenAI-compatible
/// servers ignore, not secrets; scrubbing them would corrupt answers that contain the word.
pub(crate) const MIN_SCRUBBED_KEY_LEN: usize = 8;

/// What a key is replaced with.
pub(crate) const MASK: &str = "***";

/// Replaces an endpoint's key in text. `Debug` shows nothing of the key.
///
/// The key's searcher is built once per endpoint (a SIMD substring search, no UTF-8
/// validation), and a clone shares it: a body without the key costs one pass of `memmem` and
/// no copy; an endpoint without a key (or with a placeholder) costs nothing.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    finder: Option<Arc<Finder<'static>>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

impl Scrubber {
    pub(crate) fn new(key: Option<&ApiKey>) -> Self {
        Scrubber {
            finder: key
                .map(ApiKey::expose)
                .filter(|k| k.len() >= MIN_SCRUBBED_KEY_LEN)
                .map(|k| Arc::new(Finder::new(k.as_bytes()).into_owned())),
        }
    }

    /// Whether there is a key to scrub (not none, not a placeholder).
    pub(crate) fn is_active(&self) -> bool {
        self.finder.is_some()
    }

    /// `text` with every occurrence of the key (leftmost first, not overlapping) replaced by
    /// [`MASK`].
    pub(crate) fn scrub<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(finder) = &self.finder else {
            return Cow::Borrowed(text);
        };
        let Some(first) = finder.find(text) else {
            return Cow::Borrowed(text);
        };
        let key_len = finder.needle().len();
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        let mut at = Some(first);
        while let Some(i) = at {
            out.extend_from_slice(rest.get(..i).unwrap_or(&[]));
            out.extend_from_slice(MASK.as_bytes());
            rest = rest.get(i + key_len..).unwrap_or(&[]);
            at = finder.find(rest);
        }
        out.extend_from_slice(rest);
        Cow::Owned(out)
    }

    /// [`Scrubber::scrub`] for a body, without copying it when the key is not there.
    pub(crate) fn scrub_bytes(&self, body: Bytes) -> Bytes {
        match self.scrub(&body) {
            Cow::Borrowed(_) => body,
            Cow::Owned(v) => Bytes::from(v),
        }
    }

    /// [`Scrubber::scrub`] in place.
    pub(crate) fn scrub_string(&self, text: &mut String) {
        if let Cow::Owned(v) = self.scrub(text.as_bytes()) {
            // the key and the mask are whole UTF-8 strings, so cutting them out keeps the
            // text valid
            *text = String::from_utf8(v).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_in_text_and_bytes() {
        let s = Scrubber::new(Some(&ApiKey::new("sk-secret-123")));
        assert_eq!(
            &*s.scrub(b"Bearer sk-secret-123 and sk-secret-123!"),
            b"Bearer *** and ***!"
        );
        // not UTF-8: the byte search
        let mut bin = vec![0xff, b'x'];
        bin.extend_from_slice(b"sk-secret-123");
        assert_eq!(&*s.scrub(&bin), &[0xff, b'x', b'*', b'*', b'*']);
        let mut t = String::from("key=sk-secret-123");
        s.scrub_string(&mut t);
        assert_eq!(t, "key=***");
        assert!(matches!(s.scrub(b"nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn placeholders_and_no_key_change_nothing() {
        let s = Scrubber::new(Some(&ApiKey::new("ollama")));
        assert_eq!(&*s.scrub(b"ollama says hi"), b"ollama says hi");
        let s = Scrubber::new(None);
        assert_eq!(&*s.scrub(b"anything"), b"anything");
        assert_eq!(format!("{s:?}"), "Scrubber");
    }

    proptest::proptest! {
        /// The searcher replaces exactly what `str::replace` does (leftmost, not overlapping),
        /// and hands back the very input when the key is absent.
        #[test]
        fn scrubbing_is_str_replace(
            text in "(sk-k|ey-1|sk-key-1|x|é|\\*){0,12}",
        ) {
            let s = Scrubber::new(Some(&ApiKey::new("sk-key-1sk-key-1")));
            let key = "sk-key-1sk-key-1";
            let want = text.replace(key, MASK);
            proptest::prop_assert_eq!(&*s.scrub(text.as_bytes()), want.as_bytes());
            proptest::prop_assert_eq!(matches!(s.scrub(text.as_bytes()), Cow::Borrowed(_)), !text.contains(key));
            let mut t = text.clone();
            s.scrub_string(&mut t);
            proptest::prop_assert_eq!(t, want);
        }
    }
}
