//! Incremental decoder for newline-delimited JSON (NDJSON / JSON Lines).
//!
//! The decoder only frames the stream: it yields each non-blank line as a
//! `String` and leaves JSON parsing to the caller (typically
//! `serde_json::from_str` on the yielded line).

use super::{DEFAULT_MAX_EVENT_BYTES, DecodeError, UTF8_BOM};

/// Incremental push decoder splitting a newline-delimited body into lines.
///
/// - Lines end with LF; a CR before the LF (CRLF) is removed with the other
///   surrounding ASCII whitespace, which is trimmed from every line.
/// - Blank and whitespace-only lines are skipped.
/// - One UTF-8 byte order mark at the very start of the stream is ignored.
/// - [`finish`](Self::finish) yields a last line that has no trailing newline.
/// - Each line must be valid UTF-8 and at most the configured maximum size
///   (counting its untrimmed bytes).
///
/// The result never depends on how the body was split into chunks. After an
/// error the decoder is poisoned and returns the same error forever; after a
/// successful `finish` it is reset for a new stream.
#[derive(Clone, Debug)]
pub struct NdjsonDecoder {
    max_event_bytes: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// No line has been completed yet, so a BOM may still be stripped.
    at_stream_start: bool,
    /// The error that poisoned the decoder, if any.
    failed: Option<DecodeError>,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonDecoder {
    /// Creates a decoder limited to [`DEFAULT_MAX_EVENT_BYTES`] per line.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// Creates a decoder that buffers at most `max_event_bytes` bytes for one
    /// line (before trimming, without the LF).
    #[must_use]
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            at_stream_start: true,
            failed: None,
        }
    }

    /// The configured maximum number of bytes buffered for one line.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Feeds the next chunk of the body and returns the lines it completed,
    /// trimmed, blank ones skipped.
    ///
    /// # Errors
    ///
    /// [`Utf8`](super::DecodeErrorKind::Utf8) if a line is not valid UTF-8,
    /// [`TooLarge`](super::DecodeErrorKind::TooLarge) if a line exceeds the
    /// maximum size, or the error that poisoned the decoder earlier.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, DecodeError> {
        let mut lines = Vec::new();
        self.feed_into(chunk, &mut lines)?;
        Ok(lines)
    }

    /// [`feed`](Self::feed), appending the lines to `lines` (the transport reuses one buffer
    /// for a whole body).
    pub(crate) fn feed_into(
        &mut self,
        chunk: &[u8],
        lines: &mut Vec<String>,
    ) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.feed_inner(chunk, lines).inspect_err(|e| {
            self.failed = Some(e.clone());
        })
    }

    /// Ends the stream and returns the last line if it had no trailing
    /// newline and is not blank.
    ///
    /// # Errors
    ///
    /// [`Utf8`](super::DecodeErrorKind::Utf8) if the last line is not valid
    /// UTF-8 (e.g. the body ends inside a multi-byte character), or the error
    /// that poisoned the decoder earlier.
    pub fn finish(&mut self) -> Result<Option<String>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let line = std::mem::take(&mut self.line);
        match self.complete_line(&line) {
            Ok(out) => {
                self.at_stream_start = true;
                Ok(out)
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn feed_inner(&mut self, chunk: &[u8], lines: &mut Vec<String>) -> Result<(), DecodeError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(pos) = memchr::memchr(b'\n', rest) else {
                self.check_size(self.line.len().saturating_add(rest.len()))?;
                self.line.extend_from_slice(rest);
                break;
            };
            let Some((content, after)) = rest.split_at_checked(pos) else {
                break;
            };
            let out = if self.line.is_empty() {
                self.check_size(content.len())?;
                self.complete_line(content)?
            } else {
                self.check_size(self.line.len().saturating_add(content.len()))?;
                self.line.extend_from_slice(content);
                let mut line = std::mem::take(&mut self.line);
                let out = self.complete_line(&line);
                line.clear();
                self.line = line;
                out?
            };
            lines.extend(out);
            // Skip the LF itself.
            rest = after.get(1..).unwrap_or_default();
        }
        Ok(())
    }

    fn check_size(&self, len: usize) -> Result<(), DecodeError> {
        if len > self.max_event_bytes {
            return Err(DecodeError::too_large("NDJSON line", self.max_event_bytes));
        }
        Ok(())
    }

    /// Trims and validates one complete line; `None` if it is blank.
    fn complete_line(&mut self, line: &[u8]) -> Result<Option<String>, DecodeError> {
        let mut line = line;
        if self.at_stream_start {
            self.at_stream_start = false;
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(None);
        }
        match std::str::from_utf8(line) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(DecodeError::utf8("NDJSON line")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DecodeErrorKind, assert_split_invariant, split_at_points};
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<String> {
        let mut dec = NdjsonDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(dec.feed(c).unwrap());
        }
        out.extend(dec.finish().unwrap());
        out
    }

    fn assert_all_splits(input: &str, expected: &[&str]) {
        let bytes = input.as_bytes();
        assert_eq!(decode_chunks(&[bytes]), expected, "whole");
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let chunks = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                assert_eq!(decode_chunks(&chunks), expected, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn lines_lf_and_crlf() {
        assert_all_splits(
            "{\"a\":1}\n{\"b\":2}\r\n{\"c\":3}\n",
            &["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"],
        );
    }

    #[test]
    fn blank_lines_skipped_and_whitespace_trimmed() {
        assert_all_splits(
            "\n\n  {\"a\": 1}  \r\n \t \r\n\r\n\t[1, 2]\n",
            &["{\"a\": 1}", "[1, 2]"],
        );
    }

    #[test]
    fn trailing_line_without_newline_yielded_at_finish() {
        let mut dec = NdjsonDecoder::new();
        assert_eq!(dec.feed(b"{\"a\":1}\n{\"b\"").unwrap(), vec!["{\"a\":1}"]);
        assert_eq!(dec.feed(b":2}").unwrap(), Vec::<String>::new());
        assert_eq!(dec.finish().unwrap().as_deref(), Some("{\"b\":2}"));
        // Reusable, and a blank tail yields nothing.
        assert_eq!(dec.feed(b"1\n  \r").unwrap(), vec!["1"]);
        assert_eq!(dec.finish().unwrap(), None);
        assert_all_splits("", &[]);
    }

    #[test]
    fn ollama_style_stream() {
        let input = "{\"model\":\"llama3\",\"message\":{\"content\":\"Hel\"},\"done\":false}\n\
                     {\"model\":\"llama3\",\"message\":{\"content\":\"lo\"},\"done\":true}\n";
        let lines = decode_chunks(&[input.as_bytes()]);
        assert_eq!(lines.len(), 2);
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["model"], "llama3");
        }
    }

    #[test]
    fn bom_and_emoji_split_across_chunks() {
        assert_all_splits(
            "\u{FEFF}\"h\u{1F600}i\"\n\"\u{00E9}\"",
            &["\"h\u{1F600}i\"", "\"\u{00E9}\""],
        );
        // Only one BOM, only at stream start.
        let lines = decode_chunks(&[b"1\n\xEF\xBB\xBF2\n"]);
        assert_eq!(lines, vec!["1", "\u{FEFF}2"]);
    }

    #[test]
    fn invalid_and_truncated_utf8() {
        let mut dec = NdjsonDecoder::new();
        assert_eq!(
            dec.feed(b"\"\xFF\"\n").unwrap_err().kind(),
            DecodeErrorKind::Utf8
        );
        let mut dec = NdjsonDecoder::new();
        assert_eq!(dec.feed(b"\"\xF0\x9F").unwrap(), Vec::<String>::new());
        let err = dec.finish().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::Utf8);
        assert_eq!(dec.finish().unwrap_err(), err);
    }

    #[test]
    fn too_large_line() {
        let mut dec = NdjsonDecoder::with_max_event_bytes(8);
        assert_eq!(dec.max_event_bytes(), 8);
        assert_eq!(dec.feed(b"12345678\n").unwrap(), vec!["12345678"]);
        dec.feed(b"12345").unwrap();
        let err = dec.feed(b"6789").unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
        assert_eq!(dec.feed(b"\n").unwrap_err(), err);
        let mut dec = NdjsonDecoder::with_max_event_bytes(8);
        assert_eq!(
            dec.feed(b"123456789\n").unwrap_err().kind(),
            DecodeErrorKind::TooLarge
        );
    }

    fn json_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 é😀{}:,\\[\\]]{1,20}"
                .prop_map(|s| serde_json::json!({ "text": s }).to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("null".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn prop_valid_stream_any_split(
            lines in prop::collection::vec(
                (json_line(), "[ \t]{0,2}", "[ \t]{0,2}", any::<bool>(), 0usize..2),
                0..8,
            ),
            final_newline in any::<bool>(),
            points in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut text = String::new();
            for (line, pre, post, crlf, blanks) in &lines {
                for _ in 0..*blanks {
                    text.push('\n');
                }
                text.push_str(&format!("{pre}{line}{post}{}", if *crlf { "\r\n" } else { "\n" }));
            }
            if !final_newline && text.ends_with('\n') {
                text.pop();
            }
            let want: Vec<String> = lines.iter().map(|l| l.0.clone()).collect();
            let bytes = text.as_bytes();
            prop_assert_eq!(&decode_chunks(&[bytes]), &want);
            prop_assert_eq!(&decode_chunks(&split_at_points(bytes, &points)), &want);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic_and_split_invariant(
            bytes in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b" \t\r\n\n{}1".to_vec()),
                    prop::sample::select(vec![0xEF, 0xBB, 0xBF, 0xF0, 0x9F, 0x98, 0x80, 0xC3, 0xA9]),
                ],
                0..200,
            ),
            points in prop::collection::vec(any::<usize>(), 0..10),
            max in prop_oneof![Just(DEFAULT_MAX_EVENT_BYTES), 0usize..32],
        ) {
            assert_split_invariant(
                &bytes,
                &points,
                || NdjsonDecoder::with_max_event_bytes(max),
                NdjsonDecoder::feed,
                |d: &mut NdjsonDecoder| d.finish().map(|l| l.into_iter().collect()),
            );
        }
    }
}
