//! Integration tests of infermux-cache: one binary, one module per area.

mod exact;
mod index;
mod props;
mod redis;
mod semantic;
mod stream;
mod support;
