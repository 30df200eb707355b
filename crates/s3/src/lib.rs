//! S3-compatible model storage for infermux, on `aws-sdk-s3`.
//!
//! An [`S3Kit`] holds several endpoints (each with its region, credentials, addressing,
//! breaker, admission queue and counters) behind the same pool
//! ([`infermux_multiplex::MultiPool`]) and call policy ([`infermux_resilience::CallPolicy`])
//! as the inference providers: every S3 request is one attempt the pool admits, the breaker
//! judges and the call policy retries — on another endpoint when one fails.
//!
//! - single-request operations: [`S3Kit::head`], [`S3Kit::list`], [`S3Kit::put_bytes`],
//!   [`S3Kit::get_bytes`], [`S3Kit::get_range`], [`S3Kit::delete`], [`S3Kit::delete_many`],
//!   [`S3Kit::copy`], [`S3Kit::presign_get`], [`S3Kit::presign_put`];
//! - transfers: [`S3Kit::upload_file`] (multipart with parallel parts, resumable with
//!   [`S3Kit::resume_upload`]), [`S3Kit::upload_stream`], [`S3Kit::download_file`]
//!   (parallel ranges, resumable);
//! - folders: [`S3Kit::sync_up`] and [`S3Kit::fetch`] (only what changed, by SHA-256).
//!
//! Integrity end to end: each part and each single `PUT` carries its CRC32C
//! (`x-amz-checksum-crc32c`, which the server checks); the object carries the file's SHA-256 in its metadata ([`SHA256_META`]);
//! a download is checked against it before the file appears under its name.
//!
//! TLS: the AWS SDK's HTTPS client runs rustls on `ring`, the crypto provider reqwest's rustls
//! already uses in infermux, so one provider is compiled (no aws-lc, no C toolchain).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod key;
mod kit;
mod profile;
mod sync;
mod transfer;

pub use config::{
    MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3Config, S3Credentials, S3EndpointConfig, Selection,
    TransferConfig,
};
pub use error::S3Error;
pub use key::{check_key, local_path};
pub use kit::{EndpointStatus, ObjectInfo, S3Kit, SHA256_META, Uploaded};
pub use sync::SyncReport;
pub use transfer::{Downloaded, Progress, sha256_file};

pub use infermux_resilience::breaker::BreakerState;

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
