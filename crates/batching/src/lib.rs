//! Client-side batching for infermux: concurrent single calls coalesced into provider batches,
//! each caller getting its own result.
//!
//! - [`Batcher`], generic: items submitted under a batch key are sent together by a
//!   user-supplied async flush function when the batch holds
//!   [`max_items`](BatchConfig::max_items), would pass [`max_tokens`](BatchConfig::max_tokens),
//!   or [`max_wait`](BatchConfig::max_wait) passed since its first item; an item heavier than a
//!   whole batch goes alone; identical items in a batch are sent once and fanned out; each
//!   caller gets its own result or the batch's error; a caller that goes away does not harm the
//!   batch; a bounded queue refuses at once with
//!   [`ErrorKind::QueueFull`](infermux_core::ErrorKind::QueueFull).
//! - [`EmbeddingBatcher`]: the batcher for [`EmbeddingRequest`](infermux_core::EmbeddingRequest)s
//!   (several inputs per caller, vectors back in order), with [`BatchConfig`] presets for the
//!   providers' limits on one request.
//! - [`BatchStats`] / [`FlushReason`]: counters (batches, items, dedup hits, flushes by
//!   reason, queue full, cancelled, failed batches).
//!
//! Every batch is traced as an `infermux.batch` span (batch id, key, flush reason, size,
//! callers) with one event per item naming the caller's request id.
//!
//! # Crate features
//! This crate has no optional features.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batcher;
mod config;
mod embedding;
mod stats;

pub use batcher::Batcher;
pub use config::{BatchConfig, MAX_WAIT_LIMIT};
pub use embedding::EmbeddingBatcher;
pub use stats::{BatchStats, FlushReason};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
