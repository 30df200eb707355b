//! Exact and semantic response caches for infermux.
//!
//! - [`Embedder`]: turns texts into vectors — any provider with embeddings
//!   ([`ProviderEmbedder`]) or a local model (feature `local-embed`).
//! - [`Verifier`]: after the vector match, decides whether a cached prompt really means the same
//!   as the new one.

pub mod embed;
pub mod verify;

#[cfg(feature = "local-embed")]
pub use embed::LocalEmbedder;
pub use embed::{Embedder, ProviderEmbedder};
pub use verify::Verifier;
