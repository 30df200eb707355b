//! infermux-cache's integration tests, one binary.

#[cfg(feature = "local-embed")]
mod local_embed;
