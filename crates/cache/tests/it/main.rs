//! Integration tests of infermux-cache: one binary, one module per area.

mod canon;
mod coalesce;
mod exact;
mod index;
#[cfg(feature = "local-embed")]
mod local_embed;
mod props;
mod redis;
mod semantic;
mod stream;
mod support;
mod verify;
