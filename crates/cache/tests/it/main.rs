//! infermux-cache's integration tests, one binary (one module per area).

#[cfg(feature = "local-embed")]
mod local_embed;
mod verify;
