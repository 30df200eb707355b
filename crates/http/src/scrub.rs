//! Scrubbing an endpoint's key (and the key an attempt sends instead, chosen by a pool) out of
//! server text before it can reach an error (a server that echoes the `Authorization` header in
//! its error body must not put the key in a log line).

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

/// Replaces an endpoint's key, and the attempt's key when it sends another, in text. `Debug`
/// shows nothing of either.
///
/// The endpoint key's searcher is built once per endpoint (a SIMD substring search, no UTF-8
/// validation), and a clone shares it: a body without the key costs one pass of `memmem` and
/// no copy; an endpoint without a key (or with a placeholder) costs nothing. An attempt's key
/// gets its own searcher, built once per key and kept with it
/// ([`Scrubber::with_attempt_finder`]).
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    finder: Option<Arc<Finder<'static>>>,
    /// The attempt's key, when it is not the endpoint's.
    attempt: Option<Arc<Finder<'static>>>,
}

pub(crate) fn finder(key: &ApiKey) -> Option<Arc<Finder<'static>>> {
    Some(key.expose())
        .filter(|k| k.len() >= MIN_SCRUBBED_KEY_LEN)
        .map(|k| Arc::new(Finder::new(k.as_bytes()).into_owned()))
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

impl Scrubber {
    pub(crate) fn new(key: Option<&ApiKey>) -> Self {
        Scrubber {
            finder: key.and_then(finder),
            attempt: None,
        }
    }

    /// This scrubber, also scrubbing `key` (an attempt's key), unless it is the endpoint's own
    /// or a placeholder.
    pub(crate) fn with_attempt_key(&self, key: &ApiKey) -> Self {
        self.with_attempt_finder(key, || finder(key))
    }

    /// [`Scrubber::with_attempt_key`] with the key's searcher from `make` (built already, kept
    /// with the key), called only when the key is not the endpoint's own.
    pub(crate) fn with_attempt_finder(
        &self,
        key: &ApiKey,
        make: impl FnOnce() -> Option<Arc<Finder<'static>>>,
    ) -> Self {
        let same = self
            .finder
            .as_ref()
            .is_some_and(|f| f.needle() == key.expose().as_bytes());
        Scrubber {
            finder: self.finder.clone(),
            attempt: if same { None } else { make() },
        }
    }

    /// Whether there is a key to scrub (not none, not a placeholder).
    pub(crate) fn is_active(&self) -> bool {
        self.finder.is_some() || self.attempt.is_some()
    }

    /// `text` with every occurrence of the keys replaced by [`MASK`]: for one key, leftmost
    /// first and not overlapping (what `str::replace` does); with two, each run of bytes
    /// covered by overlapping occurrences of either becomes one mask, so no part of a key
    /// survives next to the other.
    pub(crate) fn scrub<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        match (&self.finder, &self.attempt) {
            (None, None) => Cow::Borrowed(text),
            (Some(f), None) | (None, Some(f)) => scrub_one(f, text),
            (Some(a), Some(b)) => scrub_two(a, b, text),
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
        if let Cow::Owned(v) = self.scrub(text.as_bytes()) {
            // the key and the mask are whole UTF-8 strings, so cutting them out keeps the
            // text valid
            *text = String::from_utf8(v).unwrap_or_default();
        }
    }
}

/// `text` with every occurrence of `finder`'s key (leftmost first, not overlapping) masked.
fn scrub_one<'a>(finder: &Finder<'static>, text: &'a [u8]) -> Cow<'a, [u8]> {
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

/// `text` with the occurrences of two keys masked: each key's occurrences as [`scrub_one`]
/// finds them, and a run where occurrences overlap masked as one.
fn scrub_two<'a>(a: &Finder<'static>, b: &Finder<'static>, text: &'a [u8]) -> Cow<'a, [u8]> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for f in [a, b] {
        let n = f.needle().len();
        found.extend(f.find_iter(text).map(|i| (i, i + n)));
    }
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    found.sort_unstable();
    let mut out = Vec::with_capacity(text.len());
    let mut done = 0;
    let mask = |out: &mut Vec<u8>, (start, end): (usize, usize), done: &mut usize| {
        out.extend_from_slice(text.get(*done..start).unwrap_or(&[]));
        out.extend_from_slice(MASK.as_bytes());
        *done = end;
    };
    let mut run = found.first().copied().unwrap_or_default();
    for &(start, end) in found.iter().skip(1) {
        if start < run.1 {
            run.1 = run.1.max(end);
        } else {
            mask(&mut out, run, &mut done);
            run = (start, end);
        }
    }
    mask(&mut out, run, &mut done);
    out.extend_from_slice(text.get(done..).unwrap_or(&[]));
    Cow::Owned(out)
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

    #[test]
    fn an_attempt_key_is_scrubbed_with_the_endpoint_key() {
        let s = Scrubber::new(Some(&ApiKey::new("sk-endpoint-1")))
            .with_attempt_key(&ApiKey::new("sk-attempt-2"));
        assert!(s.is_active());
        assert_eq!(
            &*s.scrub(b"a sk-attempt-2 b sk-endpoint-1 c sk-attempt-2"),
            b"a *** b *** c ***"
        );
        // overlapping occurrences of the two keys are one mask: no part of either survives
        let s = Scrubber::new(Some(&ApiKey::new("xxxxyyyy")))
            .with_attempt_key(&ApiKey::new("yyyyzzzz"));
        assert_eq!(&*s.scrub(b"<xxxxyyyyzzzz>"), b"<***>");
        // without an endpoint key, or with a placeholder one
        let s = Scrubber::new(None).with_attempt_key(&ApiKey::new("sk-attempt-2"));
        assert_eq!(&*s.scrub(b"Bearer sk-attempt-2"), b"Bearer ***");
        let s = Scrubber::new(Some(&ApiKey::new("EMPTY"))).with_attempt_key(&ApiKey::new("ollama"));
        assert!(!s.is_active());
        assert_eq!(format!("{s:?}"), "Scrubber");
    }

    proptest::proptest! {
        /// With two keys, no key survives (keys hold no `*`, so masks cannot make one), and a
        /// text holding only one of them is scrubbed as that key alone would be.
        #[test]
        fn two_keys_leave_neither(
            text in "(sk-k|ey-1|sk-key-1|ey-2|sk-key-2|x|é|\\*){0,12}",
        ) {
            let (k1, k2) = ("sk-key-1sk-key-1", "ey-1sk-key-2");
            let s = Scrubber::new(Some(&ApiKey::new(k1))).with_attempt_key(&ApiKey::new(k2));
            let out = s.scrub(text.as_bytes()).into_owned();
            let out = String::from_utf8(out).unwrap();
            proptest::prop_assert!(!out.contains(k1) && !out.contains(k2), "{:?} -> {:?}", text, out);
            if !text.contains(k2) {
                proptest::prop_assert_eq!(&out, &text.replace(k1, MASK));
            }
            if !text.contains(k1) {
                proptest::prop_assert_eq!(&out, &text.replace(k2, MASK));
            }
        }

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
