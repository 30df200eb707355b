//! Integration tests of infermux-http against raw loopback servers that send exact bytes.

mod attempt;
mod errors;
mod secrets;
mod support;
mod transport;
