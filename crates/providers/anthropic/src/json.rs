//! JSON helpers of the typed wire structs: the shared readers and writer of
//! [`infermux_http::json`], and [`read!`] for the one thing a derived reader refuses that a
//! `Value` took: an object repeating a key.

pub(crate) use infermux_http::json::*;

/// Reads `$json` (bytes or text) as `$ty` and hands the result to `$then` (a function returning
/// `Result`). Invalid JSON fails with `$what` and `Value`'s error, as before. A derived reader
/// refuses an object that repeats a key, which `Value` accepted (the last one wins): such a text
/// is read through a `Value` and printed again, then read as `$ty`, so it means what it meant.
macro_rules! read {
    ($from:ident, $json:expr, $ty:ty, $what:expr, $then:expr) => {{
        let json = $json;
        match serde_json::$from::<$ty>(json) {
            Ok(w) => $then(w),
            Err(_) => match serde_json::$from::<serde_json::Value>(json) {
                Err(e) => Err(crate::wire::decode_err($what, e)),
                Ok(v) => {
                    let text = v.to_string();
                    match serde_json::from_str::<$ty>(&text) {
                        Ok(w) => $then(w),
                        Err(e) => Err(crate::wire::decode_err($what, e)),
                    }
                }
            },
        }
    }};
}
pub(crate) use read;
