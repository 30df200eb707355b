//! Incremental decoder for a streamed top-level JSON array.
//!
//! Gemini's `streamGenerateContent` (without `alt=sse`) sends one JSON array
//! whose elements arrive over time: `[{...}\n,\r\n{...}\n]`. The decoder yields
//! the raw JSON text of each element as soon as it is complete, so the caller
//! can parse it with `serde_json::from_str` without waiting for the `]`.

use super::{DEFAULT_MAX_EVENT_BYTES, DecodeError, DecodeErrorKind, UTF8_BOM};

/// Where the decoder is in the array framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but (part of) a byte order mark seen; the count of BOM bytes
    /// matched so far.
    Start(usize),
    /// Before the opening `[`.
    BeforeOpen,
    /// After `[`: an element or `]` (empty array) may follow.
    BeforeFirst,
    /// After `,`: an element must follow.
    BeforeNext,
    /// Inside an element.
    InElement(Element),
    /// After an element: `,` or `]` must follow.
    AfterElement,
    /// After the closing `]`: only whitespace may follow.
    Closed,
}

/// What kind of element is being collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    /// An object or array; complete when its brackets balance.
    Container,
    /// A string; complete at its closing quote.
    String,
    /// A number, `true`, `false` or `null`; complete at the next delimiter.
    Scalar,
}

/// Incremental push decoder for a body that is one JSON array, yielding the
/// raw JSON text of each top-level element.
///
/// Only the framing is checked: the opening `[`, the `,` between elements,
/// the closing `]`, balanced `{}`/`[]` inside elements (strings and their
/// `\"`/`\\` escapes are tracked so brackets inside strings do not count), and
/// that scalar elements (numbers, `true`, `false`, `null`) consist of scalar
/// characters. The contents of an element are not validated; parse the yielded
/// text with `serde_json` to get a value. Insignificant whitespace may appear
/// anywhere between tokens, and one UTF-8 byte order mark at the very start is
/// ignored.
///
/// Errors:
///
/// - [`Syntax`](DecodeErrorKind::Syntax): anything but whitespace before the
///   `[`, between elements other than one `,`, a trailing comma, mismatched
///   brackets, or anything but whitespace after the closing `]` (e.g. a second
///   `]`).
/// - [`Truncated`](DecodeErrorKind::Truncated): [`finish`](Self::finish) was
///   called before the array was closed (including on an empty body).
/// - [`Utf8`](DecodeErrorKind::Utf8): an element is not valid UTF-8.
/// - [`TooLarge`](DecodeErrorKind::TooLarge): an element exceeds the
///   configured maximum size.
///
/// The result never depends on how the body was split into chunks. After an
/// error the decoder is poisoned and returns the same error forever; after a
/// successful `finish` it is reset for a new stream.
#[derive(Clone, Debug)]
pub struct JsonArrayDecoder {
    max_event_bytes: usize,
    state: State,
    /// Bytes of the element being collected.
    buf: Vec<u8>,
    /// Closing brackets expected inside the current container element.
    stack: Vec<u8>,
    /// Inside a string of the current element.
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
    /// Number of bytes consumed so far, for error messages.
    offset: u64,
    /// The error that poisoned the decoder, if any.
    failed: Option<DecodeError>,
}

impl Default for JsonArrayDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// JSON insignificant whitespace.
fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that may appear in a number or literal after its first byte.
fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

impl JsonArrayDecoder {
    /// Creates a decoder limited to [`DEFAULT_MAX_EVENT_BYTES`] per element.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// Creates a decoder that buffers at most `max_event_bytes` bytes for one
    /// array element.
    #[must_use]
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            state: State::Start(0),
            buf: Vec::new(),
            stack: Vec::new(),
            in_string: false,
            escape: false,
            offset: 0,
            failed: None,
        }
    }

    /// The configured maximum number of bytes buffered for one element.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Whether the closing `]` of the array has been seen.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Feeds the next chunk of the body and returns the raw JSON text of the
    /// elements it completed.
    ///
    /// # Errors
    ///
    /// [`Syntax`](DecodeErrorKind::Syntax),
    /// [`Utf8`](DecodeErrorKind::Utf8) or
    /// [`TooLarge`](DecodeErrorKind::TooLarge) as described on the type, or
    /// the error that poisoned the decoder earlier.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, DecodeError> {
        let mut elements = Vec::new();
        self.feed_into(chunk, &mut elements)?;
        Ok(elements)
    }

    /// [`feed`](Self::feed), appending the elements to `elements` (the transport reuses one
    /// buffer for a whole body).
    pub(crate) fn feed_into(
        &mut self,
        chunk: &[u8],
        elements: &mut Vec<String>,
    ) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.feed_inner(chunk, elements).inspect_err(|e| {
            self.failed = Some(e.clone());
        })
    }

    /// Ends the stream, checking that the array was closed.
    ///
    /// # Errors
    ///
    /// [`Truncated`](DecodeErrorKind::Truncated) if the closing `]` was not
    /// seen (an element may be incomplete), or the error that poisoned the
    /// decoder earlier.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.state != State::Closed {
            let what = match self.state {
                State::InElement(_) => "inside an array element",
                State::Start(_) | State::BeforeOpen => "before the opening '['",
                _ => "before the closing ']'",
            };
            let e = DecodeError::new(
                DecodeErrorKind::Truncated,
                format!("JSON array stream ended {what} at byte {}", self.offset),
            );
            self.failed = Some(e.clone());
            return Err(e);
        }
        *self = Self::with_max_event_bytes(self.max_event_bytes);
        Ok(())
    }

    fn syntax(&self, byte: u8, context: &str) -> DecodeError {
        let shown = if byte.is_ascii_graphic() {
            format!("'{}'", char::from(byte))
        } else {
            format!("byte 0x{byte:02x}")
        };
        DecodeError::new(
            DecodeErrorKind::Syntax,
            format!("unexpected {shown} {context} at byte {}", self.offset),
        )
    }

    fn too_large(&self) -> DecodeError {
        DecodeError::too_large("JSON array element", self.max_event_bytes)
    }

    fn feed_inner(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), DecodeError> {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            // Fast path: copy a run of plain string contents in one go.
            if self.in_string && !self.escape {
                let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                if run > 0 {
                    let (plain, after) = rest.split_at_checked(run).unwrap_or((rest, &[]));
                    if self.buf.len().saturating_add(plain.len()) > self.max_event_bytes {
                        return Err(self.too_large());
                    }
                    self.buf.extend_from_slice(plain);
                    self.offset = self.offset.saturating_add(plain.len() as u64);
                    rest = after;
                    continue;
                }
            }
            self.step(b, out)?;
            self.offset = self.offset.saturating_add(1);
            rest = tail;
        }
        Ok(())
    }

    /// Appends one byte to the current element.
    fn push(&mut self, b: u8) -> Result<(), DecodeError> {
        if self.buf.len() >= self.max_event_bytes {
            return Err(self.too_large());
        }
        self.buf.push(b);
        Ok(())
    }

    /// Yields the current element.
    fn complete(&mut self, out: &mut Vec<String>) -> Result<(), DecodeError> {
        let bytes = std::mem::take(&mut self.buf);
        self.stack.clear();
        self.in_string = false;
        self.escape = false;
        self.state = State::AfterElement;
        match String::from_utf8(bytes) {
            Ok(s) => {
                out.push(s);
                Ok(())
            }
            Err(_) => Err(DecodeError::utf8("JSON array element")),
        }
    }

    /// Starts a new element with its first byte.
    fn start_element(&mut self, b: u8) -> Result<(), DecodeError> {
        let element = match b {
            b'{' | b'[' => {
                self.stack.push(if b == b'{' { b'}' } else { b']' });
                Element::Container
            }
            b'"' => {
                self.in_string = true;
                Element::String
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Element::Scalar,
            _ => return Err(self.syntax(b, "where an array element was expected")),
        };
        self.state = State::InElement(element);
        self.push(b)
    }

    /// Processes one byte.
    fn step(&mut self, b: u8, out: &mut Vec<String>) -> Result<(), DecodeError> {
        match self.state {
            State::Start(matched) => {
                if UTF8_BOM.get(matched) == Some(&b) {
                    self.state = if matched + 1 == UTF8_BOM.len() {
                        State::BeforeOpen
                    } else {
                        State::Start(matched + 1)
                    };
                    Ok(())
                } else if matched > 0 {
                    Err(self.syntax(b, "inside a byte order mark"))
                } else {
                    self.state = State::BeforeOpen;
                    self.step(b, out)
                }
            }
            State::BeforeOpen => match b {
                b'[' => {
                    self.state = State::BeforeFirst;
                    Ok(())
                }
                _ if is_json_ws(b) => Ok(()),
                _ => Err(self.syntax(b, "before the opening '[' of the JSON array")),
            },
            State::BeforeFirst => match b {
                b']' => {
                    self.state = State::Closed;
                    Ok(())
                }
                _ if is_json_ws(b) => Ok(()),
                _ => self.start_element(b),
            },
            State::BeforeNext => match b {
                _ if is_json_ws(b) => Ok(()),
                _ => self.start_element(b),
            },
            State::AfterElement => match b {
                b',' => {
                    self.state = State::BeforeNext;
                    Ok(())
                }
                b']' => {
                    self.state = State::Closed;
                    Ok(())
                }
                _ if is_json_ws(b) => Ok(()),
                _ => Err(self.syntax(b, "after an array element (expected ',' or ']')")),
            },
            State::Closed => {
                if is_json_ws(b) {
                    Ok(())
                } else {
                    Err(self.syntax(b, "after the closing ']' of the JSON array"))
                }
            }
            State::InElement(Element::Scalar) => {
                if is_scalar_byte(b) {
                    self.push(b)
                } else if is_json_ws(b) || b == b',' || b == b']' {
                    self.complete(out)?;
                    self.step(b, out)
                } else {
                    Err(self.syntax(b, "inside a scalar array element"))
                }
            }
            State::InElement(element) => {
                self.push(b)?;
                if self.in_string {
                    if self.escape {
                        self.escape = false;
                    } else if b == b'\\' {
                        self.escape = true;
                    } else if b == b'"' {
                        self.in_string = false;
                        if element == Element::String {
                            self.complete(out)?;
                        }
                    }
                    return Ok(());
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' => self.stack.push(b'}'),
                    b'[' => self.stack.push(b']'),
                    b'}' | b']' => {
                        if self.stack.pop() != Some(b) {
                            return Err(
                                self.syntax(b, "(mismatched bracket) inside an array element")
                            );
                        }
                        if self.stack.is_empty() {
                            self.complete(out)?;
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_split_invariant, split_at_points};
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<String> {
        let mut dec = JsonArrayDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(dec.feed(c).unwrap());
        }
        dec.finish().unwrap();
        out
    }

    fn decode_err(chunks: &[&[u8]]) -> DecodeErrorKind {
        let mut dec = JsonArrayDecoder::new();
        for c in chunks {
            if let Err(e) = dec.feed(c) {
                return e.kind();
            }
        }
        dec.finish().unwrap_err().kind()
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
    fn gemini_style_stream() {
        let input = "[{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}]}}]\n}\n,\r\n{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo]}\"}]}}]\n}\n]";
        let elements = decode_chunks(&[input.as_bytes()]);
        assert_eq!(elements.len(), 2);
        let v: Value = serde_json::from_str(&elements[1]).unwrap();
        assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "lo]}");
        assert_all_splits(
            "[{\"a\":[1,{\"b\":2}]}\n,\r\n{}\n]",
            &["{\"a\":[1,{\"b\":2}]}", "{}"],
        );
    }

    #[test]
    fn elements_yielded_as_soon_as_complete() {
        let mut dec = JsonArrayDecoder::new();
        assert_eq!(dec.feed(b"[{\"a\":").unwrap(), Vec::<String>::new());
        assert_eq!(dec.feed(b"1}").unwrap(), vec!["{\"a\":1}"]);
        assert_eq!(dec.feed(b",\"s\"").unwrap(), vec!["\"s\""]);
        // A scalar is only complete at the next delimiter.
        assert_eq!(dec.feed(b", 12").unwrap(), Vec::<String>::new());
        assert_eq!(dec.feed(b"3").unwrap(), Vec::<String>::new());
        assert!(!dec.is_closed());
        assert_eq!(dec.feed(b"]").unwrap(), vec!["123"]);
        assert!(dec.is_closed());
        dec.finish().unwrap();
        // Reusable after finish.
        assert_eq!(dec.feed(b"[1]").unwrap(), vec!["1"]);
        dec.finish().unwrap();
    }

    #[test]
    fn strings_with_escapes_and_brackets() {
        assert_all_splits(
            r#"["a\"b", "c\\", "\\\"", {"k": "}]\"[{"}, ["\\"]]"#,
            &[
                r#""a\"b""#,
                r#""c\\""#,
                r#""\\\"""#,
                r#"{"k": "}]\"[{"}"#,
                r#"["\\"]"#,
            ],
        );
    }

    #[test]
    fn scalars_and_whitespace() {
        assert_all_splits(
            " \r\n[ 1 ,-2.5e+3,true\t,\nfalse , null,0]\n ",
            &["1", "-2.5e+3", "true", "false", "null", "0"],
        );
        assert_all_splits("[]", &[]);
        assert_all_splits("  [ \n ]  ", &[]);
        assert_all_splits("[[],{}]", &["[]", "{}"]);
    }

    #[test]
    fn bom_and_emoji_split_across_chunks() {
        assert_all_splits(
            "\u{FEFF}[\"h\u{1F600}i\",{\"\u{00E9}\":\"\u{4E2D}\"}]",
            &["\"h\u{1F600}i\"", "{\"\u{00E9}\":\"\u{4E2D}\"}"],
        );
        assert_eq!(decode_err(&[b"\xEF\xBB["]), DecodeErrorKind::Syntax);
        assert_eq!(decode_err(&[b" \xEF\xBB\xBF[]"]), DecodeErrorKind::Syntax);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "{\"error\": {}}",
            "x[1]",
            "[1]]",
            "[1] x",
            "[1][2]",
            "[1 2]",
            "[{} {}]",
            "[,1]",
            "[1,]",
            "[1,,2]",
            "[}",
            "[{]}",
            "[[}]",
            "[1\"a\"]",
            "[x]",
            "[1}",
            "[\u{00E9}]",
        ] {
            assert_eq!(
                decode_err(&[bad.as_bytes()]),
                DecodeErrorKind::Syntax,
                "{bad}"
            );
        }
    }

    #[test]
    fn truncated() {
        for bad in [
            "",
            "   ",
            "\u{FEFF}",
            "[",
            "[1",
            "[1,",
            "[{\"a\":1}",
            "[{\"a\":",
            "[\"abc",
            "[\"a\\",
        ] {
            assert_eq!(
                decode_err(&[bad.as_bytes()]),
                DecodeErrorKind::Truncated,
                "{bad:?}"
            );
        }
        let mut dec = JsonArrayDecoder::new();
        assert_eq!(dec.feed(b"[{}").unwrap(), vec!["{}"]);
        let err = dec.finish().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::Truncated);
        assert_eq!(dec.finish().unwrap_err(), err);
        assert_eq!(dec.feed(b"]").unwrap_err(), err);
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(decode_err(&[b"[\"\xFF\"]"]), DecodeErrorKind::Utf8);
        assert_eq!(
            decode_err(&[b"[{\"a\":\"\xC3", b"(\"}]"]),
            DecodeErrorKind::Utf8
        );
        // Outside elements a non-ASCII byte is just junk.
        assert_eq!(decode_err(&[b"[1,\xFF]"]), DecodeErrorKind::Syntax);
    }

    #[test]
    fn too_large_element() {
        let mut dec = JsonArrayDecoder::with_max_event_bytes(8);
        assert_eq!(dec.max_event_bytes(), 8);
        assert_eq!(dec.feed(b"[\"123456\",").unwrap(), vec!["\"123456\""]);
        let err = dec.feed(b"\"1234567\"").unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
        assert_eq!(dec.feed(b"]").unwrap_err(), err);
        let mut dec = JsonArrayDecoder::with_max_event_bytes(8);
        assert_eq!(dec.feed(b"[{\"a\":").unwrap(), Vec::<String>::new());
        assert_eq!(
            dec.feed(b"[1,2]}").unwrap_err().kind(),
            DecodeErrorKind::TooLarge
        );
        // Whitespace between elements is not buffered and not limited.
        let mut dec = JsonArrayDecoder::with_max_event_bytes(2);
        let ws = " ".repeat(100);
        assert_eq!(
            dec.feed(format!("[{ws}1{ws},{ws}2{ws}]").as_bytes())
                .unwrap(),
            vec!["1", "2"]
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Exactly representable fractions round-trip with any parser.
            (-100_000i32..100_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            "[a-zA-Z0-9 \"\\\\/\\[\\]{},:\n\t\u{0}\u{1F}é中😀]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"\\\\{}\\[\\] ]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_serialized_array_any_split(
            elements in prop::collection::vec(arb_value(), 0..6),
            pretty in any::<bool>(),
            points in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let value = Value::Array(elements.clone());
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let bytes = text.as_bytes();
            let whole = decode_chunks(&[bytes]);
            let split = decode_chunks(&split_at_points(bytes, &points));
            prop_assert_eq!(&split, &whole);
            let parsed: Vec<Value> = whole
                .iter()
                .map(|s| serde_json::from_str(s).unwrap())
                .collect();
            prop_assert_eq!(&parsed, &elements);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic_and_split_invariant(
            bytes in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"[[[]]]{}{}\"\"\\\\,,, \n1tn".to_vec()),
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
                || JsonArrayDecoder::with_max_event_bytes(max),
                JsonArrayDecoder::feed,
                |d: &mut JsonArrayDecoder| d.finish().map(|()| Vec::new()),
            );
        }

        #[test]
        fn prop_gemini_framing_any_split(
            elements in prop::collection::vec(arb_value(), 1..5),
            seps in prop::collection::vec("[ \t\r\n]{0,3}", 12),
            points in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            // Arbitrary whitespace around every structural token.
            let mut text = format!("{}[{}", seps[0], seps[1]);
            for (i, e) in elements.iter().enumerate() {
                if i > 0 {
                    text.push_str(&format!("{},{}", seps[2 + i % 4], seps[6 + i % 4]));
                }
                text.push_str(&serde_json::to_string_pretty(e).unwrap());
            }
            text.push_str(&format!("{}]{}", seps[10], seps[11]));
            let split = decode_chunks(&split_at_points(text.as_bytes(), &points));
            let parsed: Vec<Value> = split.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
            prop_assert_eq!(&parsed, &elements);
        }
    }

    #[test]
    fn json_macro_roundtrip() {
        let value = json!([{"a": [1, 2, {"b": "]"}]}, "x", 3, null, [[]]]);
        for text in [
            value.to_string(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let parsed: Vec<Value> = decode_chunks(&[text.as_bytes()])
                .iter()
                .map(|s| serde_json::from_str(s).unwrap())
                .collect();
            assert_eq!(Value::Array(parsed), value);
        }
    }
}
