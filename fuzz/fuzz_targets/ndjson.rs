//! Fuzz target: the NDJSON decoder never panics and its output does not depend
//! on chunking (whole vs. split at the point given by the first input byte vs.
//! one byte at a time).
#![no_main]

use infermux_http::decode::{DecodeErrorKind, NdjsonDecoder};
use libfuzzer_sys::fuzz_target;

/// Feeds `chunks` then finishes; the lines before the first error and its kind.
fn run(chunks: &[&[u8]]) -> (Vec<String>, Option<DecodeErrorKind>) {
    let mut decoder = NdjsonDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        match decoder.feed(chunk) {
            Ok(more) => events.extend(more),
            Err(e) => return (events, Some(e.kind())),
        }
    }
    match decoder.finish() {
        Ok(last) => events.extend(last),
        Err(e) => return (events, Some(e.kind())),
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let split = usize::from(first) * body.len() / 255;
    let (head, tail) = body.split_at(split);
    let whole = run(&[body]);
    let chunked = run(&[head, tail]);
    let bytewise = run(&body.chunks(1).collect::<Vec<_>>());
    assert_eq!(chunked.1, whole.1);
    assert_eq!(bytewise.1, whole.1);
    if whole.1.is_none() {
        assert_eq!(chunked.0, whole.0);
        assert_eq!(bytewise.0, whole.0);
    } else {
        assert!(bytewise.0.starts_with(&chunked.0));
    }
});
