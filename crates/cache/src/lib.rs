//! Exact and semantic response caches for infermux.
//!
//! - [`Cache`]: the one entry point — [`Cache::call`] and [`Cache::stream`] wrap any call (the
//!   facade's), or [`Cache::lookup`] / [`Cache::store`] / [`Cache::lookup_stream`] /
//!   [`Cache::tee`] drive it by hand. An exact tier keyed by [`CacheKey`] (the canonical form
//!   of everything that changes the answer), and a semantic tier
//!   ([`Cache::with_semantic`]) that embeds the last user turn, finds the nearest stored ones
//!   in a [`VectorIndex`] and lets a [`Verifier`] decide.
//! - [`Embedder`]: turns texts into vectors — any provider with embeddings
//!   ([`ProviderEmbedder`]) or a local model (feature `local-embed`).
//! - [`Verifier`]: after the vector match, decides whether a cached prompt really means the same
//!   as the new one.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    feature = "redis",
    doc = "- Stores: in memory (default, `moka`: TinyLFU admission, LRU eviction) or Redis
  ([`RedisStore`], feature `redis`) shared by several processes.

# Crate features
- `redis`: [`RedisStore`] and [`Cache::with_redis`].
- `local-embed`: `LocalEmbedder` (all-MiniLM-L6-v2 in process with candle, from a model
  folder) and `ContextualVerifier`, the verifier that reads its token vectors."
)]
#![cfg_attr(
    not(feature = "redis"),
    doc = "- Stores: in memory (default, `moka`: TinyLFU admission, LRU eviction) or Redis
  (`RedisStore`, feature `redis`) shared by several processes.

# Crate features
- `redis`: `RedisStore` and `Cache::with_redis`.
- `local-embed`: `LocalEmbedder` (all-MiniLM-L6-v2 in process with candle, from a model
  folder) and `ContextualVerifier`, the verifier that reads its token vectors."
)]

mod cache;
mod canon;
mod config;
pub mod embed;
mod index;
mod key;
#[cfg(feature = "redis")]
mod redis_store;
mod stream;
pub mod verify;

pub use cache::{Cache, CacheSnapshot, StreamAnswer};
pub use config::{
    CacheConfig, DEFAULT_MAX_BYTES, DEFAULT_SEMANTIC_MAX_BYTES, MAX_SEMANTIC_CHARS, SemanticConfig,
};
#[cfg(feature = "local-embed")]
pub use embed::LocalEmbedder;
pub use embed::{Embedder, ProviderEmbedder};
pub use index::{IndexConfig, Match, VectorIndex};
pub use key::{CacheKey, canonical_json};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
#[cfg(feature = "local-embed")]
pub use verify::ContextualVerifier;
pub use verify::{ContextualModel, LexicalVerifier, TokenVectors, Verifier};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
