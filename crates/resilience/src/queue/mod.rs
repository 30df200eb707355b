//! Admission: a bounded three-level priority queue in front of a pool's concurrency permits.
//!
//! A request takes a permit at once when one is free and nobody waits; otherwise it waits in
//! its level (HIGH, NORMAL, LOW), FIFO within the level. A freed permit goes straight to the
//! best waiter — the highest level, where a waiter's level rises by one for every `age_step`
//! it has waited, so LOW is never starved; ties go to the earliest. A full queue refuses at
//! once with [`ErrorKind::QueueFull`](infermux_core::ErrorKind); nothing already queued is
//! dropped. Dropping a waiting future frees its place; dropping a [`Permit`] frees the permit.
//! No polling: a release wakes exactly the waiter it hands the permit to. A wait and a full
//! queue are `tracing` events (in module `queue`).
//!
//! While nobody waits, a permit is taken and given back with one atomic operation each; the
//! queue's lock is taken only to wait, to hand a permit to a waiter, and to leave the queue.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use infermux_core::Priority;
//! use infermux_resilience::queue::{Admission, QueueConfig};
//!
//! let admission = Admission::new(QueueConfig::standard().with_permits(1).with_max_queued(10)).unwrap();
//! let first = admission.acquire(Priority::Normal).await.unwrap();
//! let waiting = tokio::spawn({
//!     let admission = admission.clone();
//!     async move { admission.acquire(Priority::High).await.map(|_| "got it") }
//! });
//! admission.wait_queued(1).await;
//! drop(first); // the permit goes to the waiter
//! assert_eq!(waiting.await.unwrap().unwrap(), "got it");
//! # }
//! ```

mod admission;

pub(crate) use admission::BorrowedPermit;
pub use admission::{Admission, Permit, QueueConfig, ReleaseHook};
