//! Scrubbing an endpoint's key out of server text before it can reach an error (a server that
//! echoes the `Authorization` header in its error body must not put the key in a log line).

use std::borrow::Cow;

use bytes::Bytes;
use infermux_core::ApiKey;

/// Keys shorter than this are placeholders (`ollama`, `EMPTY`, `none`) that OpenAI-compatible
/// servers ignore, not secrets; scrubbing them would corrupt answers that contain the word.
pub(crate) const MIN_SCRUBBED_KEY_LEN: usize = 8;

/// What a key is replaced with.
pub(crate) const MASK: &str = "***";

/// Replaces an endpoint's key in text. `Debug` shows nothing of the key.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    key: Option<ApiKey>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

impl Scrubber {
    pub(crate) fn new(key: Option<&ApiKey>) -> Self {
        Scrubber {
            key: key
                .filter(|k| k.expose().len() >= MIN_SCRUBBED_KEY_LEN)
                .cloned(),
        }
    }

    fn needle(&self) -> Option<&str> {
        self.key.as_ref().map(ApiKey::expose)
    }

    /// `text` with every occurrence of the key replaced by [`MASK`].
    pub(crate) fn scrub<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(key) = self.needle() else {
            return Cow::Borrowed(text);
        };
        if let Ok(s) = std::str::from_utf8(text) {
            return if s.contains(key) {
                Cow::Owned(s.replace(key, MASK).into_bytes())
            } else {
                Cow::Borrowed(text)
            };
        }
        let key = key.as_bytes();
        let mut out: Option<Vec<u8>> = None;
        let mut rest = text;
        while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            buf.extend_from_slice(rest.get(..at).unwrap_or(&[]));
            buf.extend_from_slice(MASK.as_bytes());
            rest = rest.get(at + key.len()..).unwrap_or(&[]);
        }
        match out {
            Some(mut buf) => {
                buf.extend_from_slice(rest);
                Cow::Owned(buf)
            }
            None => Cow::Borrowed(text),
        }
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
        if let Some(key) = self.needle()
            && text.contains(key)
        {
            *text = text.replace(key, MASK);
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
}
