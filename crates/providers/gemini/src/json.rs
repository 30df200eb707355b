//! JSON helpers of the typed wire structs: the shared readers and writer of
//! [`infermux_http::json`].

pub(crate) use infermux_http::json::*;
