//! Incremental push decoders for streamed response bodies.
//!
//! Every decoder in this module is fed the body in whatever chunks the
//! transport delivers and yields items as soon as they are complete:
//!
//! - [`SseDecoder`] parses `text/event-stream` (Server-Sent Events) following
//!   the WHATWG EventSource parsing rules and yields [`SseEvent`]s.
//! - [`NdjsonDecoder`] splits newline-delimited JSON into one `String` per
//!   non-blank line (it does not parse the JSON itself).
//! - [`JsonArrayDecoder`] splits a streamed top-level JSON array
//!   (`[ {...}, {...} ]`, as sent by Gemini's `streamGenerateContent` without
//!   `alt=sse`) into the raw JSON text of each element.
//!
//! # Contract shared by all decoders
//!
//! - **Chunking never matters.** Feeding a body whole or split at any byte
//!   positions (including inside a multi-byte UTF-8 character or between the
//!   `\r` and `\n` of a CRLF) yields exactly the same items, and an invalid
//!   body fails with the same [`DecodeErrorKind`]. Items completed in earlier
//!   `feed` calls are of course already returned when a later call fails.
//! - **`feed` then `finish`.** `feed(chunk)` returns every item completed by
//!   the chunk; `finish()` must be called once at end of body to flush or
//!   validate what is still buffered. After `finish` the decoder is back in its
//!   initial state (see each decoder for what, if anything, is kept) and can be
//!   reused for a new body.
//! - **Errors are sticky.** Once a call returned an error, the decoder is
//!   poisoned and every later `feed`/`finish` returns the same error.
//! - **Bounded memory.** The bytes buffered for one item never exceed the
//!   configured maximum ([`DEFAULT_MAX_EVENT_BYTES`] unless changed with
//!   `with_max_event_bytes`); a larger item fails with
//!   [`DecodeErrorKind::TooLarge`].
//! - **Strict UTF-8.** Invalid UTF-8 is an error ([`DecodeErrorKind::Utf8`]),
//!   never replaced and never a panic; a multi-byte character split across
//!   chunks is reassembled.

mod json_array;
mod ndjson;
mod sse;

pub use json_array::JsonArrayDecoder;
pub use ndjson::NdjsonDecoder;
pub use sse::{MAX_EVENT_ID_BYTES, SseDecoder, SseEvent};

use std::fmt;

/// Default upper bound, in bytes, on what a decoder buffers for one item
/// (an SSE event, an NDJSON line, a JSON array element): 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The UTF-8 encoding of U+FEFF BYTE ORDER MARK, stripped at stream start.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What went wrong while decoding a stream; see [`DecodeError::kind`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// The body is not valid UTF-8 (including a character cut off at the end
    /// of the body).
    Utf8,
    /// One item (event, line or element) exceeds the configured maximum size.
    TooLarge,
    /// The body does not follow the expected framing (e.g. junk outside the
    /// elements of a JSON array).
    Syntax,
    /// The body ended in the middle of an item or before its framing was
    /// closed.
    Truncated,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Utf8 => "invalid UTF-8",
            Self::TooLarge => "item too large",
            Self::Syntax => "syntax error",
            Self::Truncated => "truncated stream",
        })
    }
}

/// An error returned by the stream decoders of this module.
///
/// It is opaque: inspect it with [`kind`](Self::kind) and display it for a
/// human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    message: String,
}

impl DecodeError {
    /// Builds an error of the given kind with a human-readable message.
    pub(crate) fn new(kind: DecodeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The category of the error.
    #[must_use]
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// An invalid UTF-8 error for the given stream format.
    pub(crate) fn utf8(what: &str) -> Self {
        Self::new(DecodeErrorKind::Utf8, format!("{what} is not valid UTF-8"))
    }

    /// A too-large error for the given item kind and limit.
    pub(crate) fn too_large(what: &str, max: usize) -> Self {
        Self::new(
            DecodeErrorKind::TooLarge,
            format!("{what} exceeds the maximum of {max} bytes"),
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Splits `bytes` at the given (unsorted, possibly out-of-range) positions.
///
/// Shared by the property tests of the decoders.
#[cfg(test)]
pub(crate) fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for p in points {
        chunks.push(&bytes[start..p]);
        start = p;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// Feeds `chunks` then finishes, collecting the items produced before the
/// first error and that error's kind. Shared by the property tests.
#[cfg(test)]
pub(crate) fn run_chunks<D, T>(
    decoder: &mut D,
    chunks: &[&[u8]],
    feed: impl Fn(&mut D, &[u8]) -> Result<Vec<T>, DecodeError>,
    finish: impl Fn(&mut D) -> Result<Vec<T>, DecodeError>,
) -> (Vec<T>, Option<DecodeErrorKind>) {
    let mut items = Vec::new();
    for chunk in chunks {
        match feed(decoder, chunk) {
            Ok(more) => items.extend(more),
            Err(e) => return (items, Some(e.kind())),
        }
    }
    match finish(decoder) {
        Ok(more) => items.extend(more),
        Err(e) => return (items, Some(e.kind())),
    }
    (items, None)
}

/// Asserts the chunking contract for one input: splitting `bytes` at
/// `points` gives the same items as feeding it whole, and on failure the same
/// error kind, with the items yielded before it being a prefix of those a
/// byte-at-a-time run yields.
#[cfg(test)]
pub(crate) fn assert_split_invariant<D, T>(
    bytes: &[u8],
    points: &[usize],
    make: impl Fn() -> D,
    feed: impl Fn(&mut D, &[u8]) -> Result<Vec<T>, DecodeError> + Copy,
    finish: impl Fn(&mut D) -> Result<Vec<T>, DecodeError> + Copy,
) where
    T: PartialEq + std::fmt::Debug,
{
    let whole = run_chunks(&mut make(), &[bytes], feed, finish);
    let chunks = split_at_points(bytes, points);
    let split = run_chunks(&mut make(), &chunks, feed, finish);
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    let bytewise = run_chunks(&mut make(), &singles, feed, finish);
    assert_eq!(split.1, whole.1, "error kind differs for chunks {chunks:?}");
    assert_eq!(bytewise.1, whole.1, "byte-at-a-time error kind differs");
    if whole.1.is_none() {
        assert_eq!(split.0, whole.0, "items differ for chunks {chunks:?}");
        assert_eq!(bytewise.0, whole.0, "byte-at-a-time items differ");
    } else {
        assert!(bytewise.0.starts_with(&whole.0));
        assert!(
            bytewise.0.starts_with(&split.0),
            "items before the error are not a prefix for chunks {chunks:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_accessors_and_display() {
        let e = DecodeError::too_large("SSE event", 10);
        assert_eq!(e.kind(), DecodeErrorKind::TooLarge);
        assert_eq!(
            e.to_string(),
            "item too large: SSE event exceeds the maximum of 10 bytes"
        );
        let e = DecodeError::utf8("NDJSON line");
        assert_eq!(e.kind(), DecodeErrorKind::Utf8);
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        assert!(boxed.to_string().contains("UTF-8"));
    }

    #[test]
    fn split_helper_covers_input() {
        let chunks = split_at_points(b"abcdef", &[4, 2, 2, 100]);
        assert_eq!(chunks.concat(), b"abcdef");
        // 100 % 7 == 2, duplicates collapse
        assert_eq!(chunks, vec![&b"ab"[..], b"cd", b"ef"]);
        assert_eq!(DEFAULT_MAX_EVENT_BYTES, 16 * 1024 * 1024);
    }
}
