//! [`Verifier`]: the stage after the vector match that decides whether a cached prompt really
//! means the same as the new one.

use std::fmt;

use async_trait::async_trait;
use infermux_core::Result;

/// Scores whether `query` means the same as a cached `candidate` whose embedding has cosine
/// similarity `cosine` to the query's: a score in `[0, 1]`, compared with the verifier's
/// threshold.
#[async_trait]
pub trait Verifier: Send + Sync + fmt::Debug {
    /// The score that the two mean the same.
    async fn score(&self, query: &str, candidate: &str, cosine: f32) -> Result<f32>;
    /// The score at or above which a candidate is accepted.
    fn threshold(&self) -> f32;
    /// The estimated share of accepted candidates that do not mean the same (1 − precision) at
    /// [`threshold`](Verifier::threshold), as measured on a labelled set; `None` when unknown.
    /// The cache exports it as a metric.
    fn estimated_false_hit_rate(&self) -> Option<f64> {
        None
    }
}
