//! Incremental decoder for `text/event-stream` (Server-Sent Events).
//!
//! The parsing follows the WHATWG HTML "event stream interpretation" rules,
//! with two deliberate deviations documented on [`SseDecoder`]: invalid UTF-8
//! is an error instead of being replaced by U+FFFD, and an event that is not
//! followed by a blank line before end of stream is still dispatched by
//! [`SseDecoder::finish`]. A provider may also ask for `error:` lines to be read
//! ([`SseDecoder::reading_error_lines`]).

use super::{DEFAULT_MAX_EVENT_BYTES, DecodeError, UTF8_BOM};

/// The longest `id` an [`SseDecoder`] keeps (1 KiB); a longer one is ignored.
pub const MAX_EVENT_ID_BYTES: usize = 1024;

/// One dispatched Server-Sent Event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseEvent {
    /// The event type from the last `event:` line of the event, or `None` if
    /// there was none or it was empty (EventSource would call it `message`).
    pub event: Option<String>,
    /// The `data:` lines of the event joined with `\n` (no trailing newline).
    pub data: String,
    /// The last event ID of the stream when this event was dispatched: set by
    /// the most recent `id:` line of this *or an earlier* event (WHATWG
    /// semantics), `None` if never set or reset by an empty `id:`.
    pub id: Option<String>,
    /// The reconnection time in milliseconds from a valid `retry:` line of this
    /// event, if any (see also [`SseDecoder::retry`]).
    pub retry: Option<u64>,
}

/// Incremental push decoder for a `text/event-stream` body.
///
/// Feed the body with [`feed`](Self::feed) in chunks of any size, then call
/// [`finish`](Self::finish) once at end of body. The result never depends on
/// where the chunks were split.
///
/// Parsing rules (WHATWG EventSource):
///
/// - Lines end with CRLF, LF or CR; a CR ending one chunk followed by an LF
///   starting the next is a single line ending.
/// - One UTF-8 byte order mark at the very start of the stream is ignored.
/// - A line starting with `:` is a comment (e.g. `: keep-alive`) and ignored.
/// - Otherwise a line is `field:value`, with one optional space after the
///   colon stripped from the value (`data:{..}` and `data: {..}` are
///   equivalent), or just `field` with an empty value.
/// - `data` appends its value to the data buffer (several lines are joined
///   with `\n`); `event` sets the event type; `id` sets the last event ID
///   unless the value contains NUL; `retry` sets the reconnection time if the
///   value is only ASCII digits; any other field is ignored (`error` too, unless
///   [`reading_error_lines`](Self::reading_error_lines) asks for it).
/// - A blank line dispatches the event, unless no `data` field was seen since
///   the previous dispatch, in which case the event is dropped. `data:` with an
///   empty value does count, and dispatches an event with empty data.
///
/// Deviations from WHATWG, chosen for API clients:
/// - Invalid UTF-8 (including a character cut off by the end of the body) is a
///   [`DecodeErrorKind::Utf8`](super::DecodeErrorKind::Utf8) error rather
///   than being replaced with U+FFFD.
/// - At [`finish`](Self::finish), an unterminated last line is processed as a
///   complete line and a pending event with data is dispatched even though no
///   blank line followed it: WHATWG says to discard it, but many real servers
///   close the stream right after the last `data:` line.
/// - The bytes buffered for one event (its data, its event type and the
///   current line) are limited to the configured maximum; exceeding it is a
///   [`DecodeErrorKind::TooLarge`](super::DecodeErrorKind::TooLarge) error.
/// - An `id` longer than [`MAX_EVENT_ID_BYTES`] is ignored, as one containing
///   NUL is: the last event ID is copied into every later event, so one long
///   `id:` line followed by many small events would be copied once per event.
///
/// After an error the decoder is poisoned and returns the same error forever.
/// After a successful `finish` it is reset for a new stream, keeping only the
/// last event ID and reconnection time, like an EventSource reconnecting.
#[derive(Clone, Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended with a CR line ending: skip a leading LF.
    skip_lf: bool,
    /// No line has been processed yet, so a BOM may still be stripped.
    at_stream_start: bool,
    /// The data buffer, each `data` value followed by `\n`.
    data: String,
    /// The event type buffer.
    event_type: String,
    /// A valid `retry` value seen since the last dispatch.
    pending_retry: Option<u64>,
    /// The last event ID buffer (persists across events).
    last_event_id: String,
    /// The last valid `retry` value of the stream.
    retry: Option<u64>,
    /// The error that poisoned the decoder, if any.
    failed: Option<DecodeError>,
    /// Read `error:` lines as `error` events (see [`SseDecoder::reading_error_lines`]).
    error_lines: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// Creates a decoder limited to [`DEFAULT_MAX_EVENT_BYTES`] per event.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// Also reads an `error` field, which the standard ignores, as an `error` event: it
    /// sets the event type to `error` and appends its value to the data, as
    /// `event: error` and `data: ...` would. A wire format that uses such lines asks for
    /// it (OpenAI-compatible chat: llama.cpp's server before September 2025 reported a
    /// failure mid-stream on an `error:` line, then sent `data: [DONE]`).
    #[must_use]
    pub fn reading_error_lines(mut self) -> Self {
        self.error_lines = true;
        self
    }

    /// Creates a decoder that buffers at most `max_event_bytes` bytes for one
    /// event (its data, event type and current line together).
    #[must_use]
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            error_lines: false,
            line: Vec::new(),
            skip_lf: false,
            at_stream_start: true,
            data: String::new(),
            event_type: String::new(),
            pending_retry: None,
            last_event_id: String::new(),
            retry: None,
            failed: None,
        }
    }

    /// The configured maximum number of bytes buffered for one event.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The last event ID seen on the stream (`None` if never set or reset).
    #[must_use]
    pub fn last_event_id(&self) -> Option<&str> {
        (!self.last_event_id.is_empty()).then_some(self.last_event_id.as_str())
    }

    /// The most recent valid `retry:` value of the stream in milliseconds,
    /// including one sent in an event that was never dispatched.
    #[must_use]
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feeds the next chunk of the body and returns the events it completed.
    ///
    /// # Errors
    ///
    /// [`Utf8`](super::DecodeErrorKind::Utf8) if a line is not valid UTF-8,
    /// [`TooLarge`](super::DecodeErrorKind::TooLarge) if an event exceeds the
    /// maximum size, or the error that poisoned the decoder earlier.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, DecodeError> {
        let mut events = Vec::new();
        self.feed_into(chunk, &mut events)?;
        Ok(events)
    }

    /// [`feed`](Self::feed), appending the events to `events` (the transport reuses one
    /// buffer for a whole body).
    pub(crate) fn feed_into(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<SseEvent>,
    ) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.feed_inner(chunk, events).inspect_err(|e| {
            self.failed = Some(e.clone());
        })
    }

    /// Ends the stream: processes an unterminated last line and dispatches
    /// the pending event if it has data (see the type docs for why).
    ///
    /// # Errors
    ///
    /// [`Utf8`](super::DecodeErrorKind::Utf8) if the last line is not valid
    /// UTF-8 (e.g. the body ends inside a multi-byte character), or the error
    /// that poisoned the decoder earlier.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.finish_inner() {
            Ok(event) => {
                self.reset_stream();
                Ok(event)
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn finish_inner(&mut self) -> Result<Option<SseEvent>, DecodeError> {
        let mut from_line = None;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            from_line = self.process_line(&line)?;
        }
        Ok(from_line.or_else(|| self.dispatch()))
    }

    /// Clears all per-stream state, keeping the last event ID and retry.
    fn reset_stream(&mut self) {
        self.line.clear();
        self.skip_lf = false;
        self.at_stream_start = true;
        self.data.clear();
        self.event_type.clear();
        self.pending_retry = None;
    }

    fn feed_inner(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), DecodeError> {
        let mut rest = chunk;
        if self.skip_lf
            && let Some((&first, tail)) = rest.split_first()
        {
            self.skip_lf = false;
            if first == b'\n' {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(pos) = memchr::memchr2(b'\r', b'\n', rest) else {
                self.check_size(self.line.len().saturating_add(rest.len()))?;
                self.line.extend_from_slice(rest);
                break;
            };
            let Some((content, after)) = rest.split_at_checked(pos) else {
                break;
            };
            let Some((&terminator, after)) = after.split_first() else {
                break;
            };
            let event = if self.line.is_empty() {
                self.check_size(content.len())?;
                self.process_line(content)?
            } else {
                self.check_size(self.line.len().saturating_add(content.len()))?;
                self.line.extend_from_slice(content);
                let mut line = std::mem::take(&mut self.line);
                let event = self.process_line(&line);
                line.clear();
                self.line = line;
                event?
            };
            events.extend(event);
            rest = after;
            if terminator == b'\r' {
                match rest.split_first() {
                    Some((b'\n', tail)) => rest = tail,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        Ok(())
    }

    /// Fails if buffering a line of `line_len` bytes would exceed the limit.
    fn check_size(&self, line_len: usize) -> Result<(), DecodeError> {
        let total = line_len
            .saturating_add(self.data.len())
            .saturating_add(self.event_type.len());
        if total > self.max_event_bytes {
            return Err(DecodeError::too_large("SSE event", self.max_event_bytes));
        }
        Ok(())
    }

    /// Interprets one complete line (without its terminator).
    fn process_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, DecodeError> {
        let mut line = line;
        if self.at_stream_start {
            self.at_stream_start = false;
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        let line = std::str::from_utf8(line).map_err(|_| DecodeError::utf8("SSE stream"))?;
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "data" => {
                // one allocation for a one-line event: the value and its newline
                self.data.reserve(value.len() + 1);
                self.data.push_str(value);
                self.data.push('\n');
            }
            // not a field of the standard: read only when asked for (`reading_error_lines`)
            "error" if self.error_lines => {
                self.event_type.clear();
                self.event_type.push_str("error");
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id containing NUL is ignored (WHATWG), and one too long to copy into every
            // later event (ours).
            "id" if !value.contains('\0') && value.len() <= MAX_EVENT_ID_BYTES => {
                self.last_event_id.clear();
                self.last_event_id.push_str(value);
            }
            // Only all-digit values count; one too large for u64 is ignored.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                    self.pending_retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Dispatches the pending event, if it has a data field, and resets the
    /// per-event buffers.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let retry = self.pending_retry.take();
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event = if self.event_type.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.event_type))
        };
        Some(SseEvent {
            event,
            data,
            id: self.last_event_id().map(str::to_owned),
            retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DecodeErrorKind, assert_split_invariant, split_at_points};
    use super::*;
    use proptest::prelude::*;

    fn data(d: &str) -> SseEvent {
        SseEvent {
            data: d.to_owned(),
            ..SseEvent::default()
        }
    }

    fn typed(event: &str, d: &str) -> SseEvent {
        SseEvent {
            event: Some(event.to_owned()),
            ..data(d)
        }
    }

    /// Feeds all chunks then finishes, panicking on error.
    fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut dec = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(dec.feed(c).unwrap());
        }
        out.extend(dec.finish().unwrap());
        out
    }

    fn decode(input: &str) -> Vec<SseEvent> {
        decode_chunks(&[input.as_bytes()])
    }

    fn decode_err(chunks: &[&[u8]]) -> DecodeErrorKind {
        let mut dec = SseDecoder::new();
        for c in chunks {
            if let Err(e) = dec.feed(c) {
                return e.kind();
            }
        }
        dec.finish().unwrap_err().kind()
    }

    /// Every two-way and three-way split gives the same events as whole.
    fn assert_all_splits(input: &str, expected: &[SseEvent]) {
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
    fn simple_events_lf() {
        assert_all_splits(
            "data: hello\n\ndata: world\n\n",
            &[data("hello"), data("world")],
        );
    }

    #[test]
    fn crlf_line_endings() {
        assert_all_splits(
            "event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
            &[typed("a", "1"), data("2")],
        );
    }

    #[test]
    fn cr_only_line_endings() {
        assert_all_splits("data: 1\r\rdata: 2\r\r", &[data("1"), data("2")]);
    }

    #[test]
    fn mixed_line_endings() {
        assert_all_splits(
            "data: a\rdata: b\n\r\ndata: c\r\n\n",
            &[data("a\nb"), data("c")],
        );
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_ending() {
        // "data: x\r" | "\n" | "\r\n": if the split CRLF counted twice, the
        // event would be dispatched before the second data line.
        let events = decode_chunks(&[b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![data("x\ny")]);
        // A CR at chunk end followed by a non-LF byte.
        let events = decode_chunks(&[b"data: x\r", b"data: y\r", b"\r"]);
        assert_eq!(events, vec![data("x\ny")]);
        // An empty chunk between CR and LF does not break the pair.
        let events = decode_chunks(&[b"data: x\r", b"", b"\ndata: y\n\n"]);
        assert_eq!(events, vec![data("x\ny")]);
    }

    #[test]
    fn optional_single_space_after_colon() {
        assert_all_splits(
            "data:{\"a\":1}\n\ndata: {\"a\":1}\n\ndata:  two\n\n",
            &[data("{\"a\":1}"), data("{\"a\":1}"), data(" two")],
        );
    }

    #[test]
    fn tgi_data_without_space() {
        let input = "data:{\"token\":{\"id\":1,\"text\":\"Hi\"}}\n\ndata:{\"token\":{\"id\":2,\"text\":\"!\"}}\n\n";
        assert_all_splits(
            input,
            &[
                data("{\"token\":{\"id\":1,\"text\":\"Hi\"}}"),
                data("{\"token\":{\"id\":2,\"text\":\"!\"}}"),
            ],
        );
    }

    #[test]
    fn openai_done_sentinel() {
        let input = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_all_splits(
            input,
            &[
                data("{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}"),
                data("[DONE]"),
            ],
        );
    }

    #[test]
    fn anthropic_ping_and_padded_json() {
        let input = "event: message_start\ndata: {\"type\": \"message_start\"}\n\n\
                     event: ping\ndata: {\"type\": \"ping\"}\n\n\
                     event: content_block_delta\ndata: {\"type\": \"content_block_delta\",   \"delta\": {\"text\": \"Hi\"}}   \n\n";
        assert_all_splits(
            input,
            &[
                typed("message_start", "{\"type\": \"message_start\"}"),
                typed("ping", "{\"type\": \"ping\"}"),
                typed(
                    "content_block_delta",
                    "{\"type\": \"content_block_delta\",   \"delta\": {\"text\": \"Hi\"}}   ",
                ),
            ],
        );
    }

    #[test]
    fn comments_are_ignored() {
        assert_all_splits(
            ": keep-alive\n\n:\ndata: a\n: in the middle\ndata: b\n\n: bye\n",
            &[data("a\nb")],
        );
    }

    #[test]
    fn multi_line_data_joined_with_lf() {
        assert_all_splits("data: a\ndata:\ndata: c\n\n", &[data("a\n\nc")]);
    }

    #[test]
    fn empty_data_field_dispatches_but_no_data_field_does_not() {
        assert_all_splits("data\n\ndata:\n\n", &[data(""), data("")]);
        assert_all_splits("event: x\n\nid: 1\n\nretry: 5\n\n\n\n", &[]);
    }

    #[test]
    fn event_type_resets_after_dispatch_and_after_dropped_event() {
        assert_all_splits(
            "event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n",
            &[typed("a", "1"), data("2"), data("3")],
        );
        // An empty event type means the default type.
        assert_eq!(decode("event:\ndata: 1\n\n"), vec![data("1")]);
        // The last event line wins.
        assert_eq!(
            decode("event: a\nevent: b\ndata: 1\n\n"),
            vec![typed("b", "1")]
        );
    }

    #[test]
    fn id_persists_and_nul_is_ignored() {
        let events = decode("id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n");
        let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("1"), Some("1"), Some("1"), None]);
        let mut dec = SseDecoder::new();
        dec.feed(b"id: 7\n\n").unwrap();
        assert_eq!(dec.last_event_id(), Some("7"));
        assert_eq!(dec.finish().unwrap(), None);
        // Kept after finish, like an EventSource reconnecting.
        assert_eq!(dec.last_event_id(), Some("7"));
    }

    /// The last event ID goes into every later event: a long one is ignored, so one `id:`
    /// line of megabytes followed by thousands of tiny events cannot be copied thousands of
    /// times (a few kilobytes of body asking for gigabytes).
    #[test]
    fn an_id_too_long_to_copy_into_every_event_is_ignored() {
        let long = "x".repeat(MAX_EVENT_ID_BYTES + 1);
        let longest = "y".repeat(MAX_EVENT_ID_BYTES);
        let body = format!(
            "id: 1\ndata: a\n\nid: {long}\ndata: b\n\ndata: c\n\nid: {longest}\ndata: d\n\n"
        );
        let events = decode(&body);
        let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(
            ids,
            vec![Some("1"), Some("1"), Some("1"), Some(longest.as_str())]
        );
    }

    #[test]
    fn retry_only_when_all_digits() {
        let events = decode(
            "retry: 1000\ndata: a\n\nretry: 12a\ndata: b\n\nretry:\ndata: c\n\n\
             retry: -1\ndata: d\n\nretry: 99999999999999999999999\ndata: e\n\nretry:7\n\n",
        );
        let retries: Vec<_> = events.iter().map(|e| e.retry).collect();
        assert_eq!(retries, vec![Some(1000), None, None, None, None]);
        let mut dec = SseDecoder::new();
        dec.feed(b"retry: 1000\n\nretry: 7\n\nretry: x\n\n")
            .unwrap();
        assert_eq!(dec.retry(), Some(7));
    }

    #[test]
    fn unknown_fields_and_fields_without_colon() {
        assert_all_splits(
            "foo: bar\nDATA: nope\ndata: yes\nbaz\n data: no\n\n",
            &[data("yes")],
        );
        // A value may itself contain colons.
        assert_eq!(decode("data: a:b: c\n\n"), vec![data("a:b: c")]);
    }

    #[test]
    fn an_error_line_is_an_error_event() {
        let want = SseEvent {
            event: Some("error".into()),
            data: "{\"code\":400}".into(),
            ..SseEvent::default()
        };
        let body = "data: a\n\nerror: {\"code\":400}\n\ndata: [DONE]\n\n";
        let mut dec = SseDecoder::new().reading_error_lines();
        let mut got = dec.feed(body.as_bytes()).unwrap();
        got.extend(dec.finish().unwrap());
        assert_eq!(got, [data("a"), want, data("[DONE]")]);
        // not asked for, the standard's rule: an unknown field, ignored
        assert_all_splits(body, &[data("a"), data("[DONE]")]);
    }

    #[test]
    fn bom_stripped_only_at_stream_start() {
        assert_all_splits("\u{FEFF}data: a\n\n", &[data("a")]);
        // A second BOM makes the field name "\u{FEFF}data", which is unknown.
        assert_all_splits("\u{FEFF}\u{FEFF}data: a\n\n", &[]);
        // A BOM later on is not stripped either.
        assert_all_splits("data: a\n\n\u{FEFF}data: b\n\n", &[data("a")]);
        assert_all_splits("\u{FEFF}\ndata: a\n\n", &[data("a")]);
    }

    #[test]
    fn emoji_split_across_chunks() {
        let input = "data: h\u{1F600}i \u{00E9}\u{4E2D}\n\n";
        assert_all_splits(input, &[data("h\u{1F600}i \u{00E9}\u{4E2D}")]);
        let bytes = input.as_bytes();
        let emoji_start = input.find('\u{1F600}').unwrap();
        // One byte at a time through the 4-byte emoji.
        let mut chunks: Vec<&[u8]> = vec![&bytes[..emoji_start]];
        for i in emoji_start..emoji_start + 4 {
            chunks.push(&bytes[i..=i]);
        }
        chunks.push(&bytes[emoji_start + 4..]);
        assert_eq!(
            decode_chunks(&chunks),
            vec![data("h\u{1F600}i \u{00E9}\u{4E2D}")]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        assert_eq!(decode_err(&[b"data: \xFF\n\n"]), DecodeErrorKind::Utf8);
        assert_eq!(
            decode_err(&[b"data: \xC3", b"(\n\n"]),
            DecodeErrorKind::Utf8
        );
        // A comment is decoded too.
        assert_eq!(decode_err(&[b": \xE2\x82\n"]), DecodeErrorKind::Utf8);
    }

    #[test]
    fn partial_utf8_at_finish_is_an_error() {
        let mut dec = SseDecoder::new();
        assert_eq!(dec.feed(b"data: \xF0\x9F\x98").unwrap(), vec![]);
        assert_eq!(dec.finish().unwrap_err().kind(), DecodeErrorKind::Utf8);
    }

    #[test]
    fn final_event_without_blank_line_dispatched_at_finish() {
        assert_all_splits("data: a\n\ndata: last", &[data("a"), data("last")]);
        assert_all_splits(
            "data: a\n\nevent: e\ndata: last\n",
            &[data("a"), typed("e", "last")],
        );
        assert_all_splits("data: a\n\nevent: e\r", &[data("a")]);
        assert_all_splits("", &[]);
    }

    #[test]
    fn too_large_event() {
        let mut dec = SseDecoder::with_max_event_bytes(16);
        assert_eq!(dec.max_event_bytes(), 16);
        assert_eq!(
            dec.feed(b"data: 0123456789\n\n").unwrap(),
            vec![data("0123456789")]
        );
        // Data accumulated over several lines counts.
        dec.feed(b"data: 0123456789\n").unwrap();
        let err = dec.feed(b"data: 0123456789\n").unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
        // Poisoned afterwards.
        assert_eq!(dec.feed(b"\n").unwrap_err(), err);
        assert_eq!(dec.finish().unwrap_err(), err);

        // A single long line split across many chunks is caught while buffering.
        let mut dec = SseDecoder::with_max_event_bytes(16);
        dec.feed(b"data: 0123").unwrap();
        dec.feed(b"456789").unwrap();
        assert_eq!(
            dec.feed(b"abcdef").unwrap_err().kind(),
            DecodeErrorKind::TooLarge
        );

        // Comments are bounded as well.
        let mut dec = SseDecoder::with_max_event_bytes(4);
        assert_eq!(
            dec.feed(b": long comment").unwrap_err().kind(),
            DecodeErrorKind::TooLarge
        );
    }

    #[test]
    fn decoder_is_reusable_after_finish() {
        let mut dec = SseDecoder::new();
        assert_eq!(dec.feed(b"data: a\r").unwrap(), vec![]);
        assert_eq!(dec.finish().unwrap(), Some(data("a")));
        // A new stream: the leading LF is not swallowed as half of a CRLF
        // and a BOM is stripped again.
        assert_eq!(
            dec.feed("\u{FEFF}data: b\n\n".as_bytes()).unwrap(),
            vec![data("b")]
        );
        assert_eq!(dec.finish().unwrap(), None);
    }

    // ---- property tests ----

    #[derive(Clone, Debug)]
    struct GenEvent {
        event: Option<String>,
        data_lines: Vec<String>,
        id: Option<String>,
        retry: Option<u64>,
        comment: Option<String>,
    }

    /// Text without line terminators (may contain `:`, spaces, non-ASCII).
    fn line_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 :{}\\[\\]\",.é中😀\t]{0,12}"
    }

    fn gen_event() -> impl Strategy<Value = GenEvent> {
        (
            proptest::option::of("[a-z_]{1,10}"),
            prop::collection::vec(line_text(), 1..4),
            proptest::option::of("[a-z0-9]{1,6}"),
            proptest::option::of(any::<u32>()),
            proptest::option::of(line_text()),
        )
            .prop_map(|(event, data_lines, id, retry, comment)| GenEvent {
                event,
                data_lines,
                id,
                retry: retry.map(u64::from),
                comment,
            })
    }

    fn serialize(events: &[GenEvent], eol: &str, space: bool, bom: bool) -> String {
        let sep = if space { ": " } else { ":" };
        let mut out = String::new();
        if bom {
            out.push('\u{FEFF}');
        }
        for e in events {
            if let Some(c) = &e.comment {
                out.push_str(&format!(":{c}{eol}"));
            }
            if let Some(t) = &e.event {
                out.push_str(&format!("event{sep}{t}{eol}"));
            }
            if let Some(id) = &e.id {
                out.push_str(&format!("id{sep}{id}{eol}"));
            }
            if let Some(r) = e.retry {
                out.push_str(&format!("retry{sep}{r}{eol}"));
            }
            for d in &e.data_lines {
                // With a space separator, values starting with a space keep it.
                out.push_str(&format!("data{sep}{d}{eol}"));
            }
            out.push_str(eol);
        }
        out
    }

    fn expected(events: &[GenEvent], space: bool) -> Vec<SseEvent> {
        let mut last_id = None;
        events
            .iter()
            .map(|e| {
                if e.id.is_some() {
                    last_id.clone_from(&e.id);
                }
                let unspace = |s: &str| {
                    if space {
                        s.to_owned()
                    } else {
                        s.strip_prefix(' ').unwrap_or(s).to_owned()
                    }
                };
                SseEvent {
                    event: e.event.clone(),
                    data: e
                        .data_lines
                        .iter()
                        .map(|d| unspace(d))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    id: last_id.clone(),
                    retry: e.retry,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn prop_valid_stream_any_split(
            events in prop::collection::vec(gen_event(), 0..6),
            eol in prop::sample::select(vec!["\n", "\r", "\r\n"]),
            space in any::<bool>(),
            bom in any::<bool>(),
            drop_last_blank in any::<bool>(),
            points in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut text = serialize(&events, eol, space, bom);
            if drop_last_blank && !events.is_empty() {
                // The final event is then dispatched by finish().
                text.truncate(text.len() - eol.len());
            }
            let bytes = text.as_bytes();
            let want = expected(&events, space);
            prop_assert_eq!(&decode_chunks(&[bytes]), &want);
            let chunks = split_at_points(bytes, &points);
            prop_assert_eq!(&decode_chunks(&chunks), &want);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic_and_split_invariant(
            bytes in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"data:event:id:retry: \r\n\r\n0123456789".to_vec()),
                    prop::sample::select(vec![0xEF, 0xBB, 0xBF, 0xF0, 0x9F, 0x98, 0x80, 0xC3, 0xA9]),
                ],
                0..200,
            ),
            points in prop::collection::vec(any::<usize>(), 0..10),
            max in prop_oneof![Just(DEFAULT_MAX_EVENT_BYTES), 0usize..64],
        ) {
            assert_split_invariant(
                &bytes,
                &points,
                || SseDecoder::with_max_event_bytes(max),
                SseDecoder::feed,
                |d: &mut SseDecoder| d.finish().map(|e| e.into_iter().collect()),
            );
        }
    }
}
