//! Integration tests of infermux-http against raw loopback servers that send exact bytes.

mod support;
mod transport;
