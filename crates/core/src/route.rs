//! [`Served`]: which deployment, endpoint and key answered a call, after how many attempts, and
//! whether a fallback was taken — set on every response the facade's client returns.

use std::fmt;
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::id::EndpointId;

/// A fallback from one model group to another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackTaken {
    /// The group the call was addressed to.
    pub from: Arc<str>,
    /// The error kind that triggered the (last) fallback.
    pub trigger: ErrorKind,
    /// How many groups were left behind.
    pub hops: u32,
}

impl FallbackTaken {
    /// A fallback from group `from` after an error of kind `trigger`, `hops` groups on.
    pub fn new(from: impl Into<Arc<str>>, trigger: ErrorKind, hops: u32) -> Self {
        FallbackTaken {
            from: from.into(),
            trigger,
            hops,
        }
    }
}

/// Who answered a call. Never carries a key, only its alias.
///
/// ```
/// use infermux_core::{EndpointId, Served};
/// let s = Served::new("chat-fast", "sim-a", EndpointId::new("sim-a"), "m");
/// assert_eq!(s.to_string(), "chat-fast/sim-a (sim-a) model m, 1 attempt");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// The model group the answer came from.
    pub group: Arc<str>,
    /// The deployment within the group.
    pub deployment: Arc<str>,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// The key's alias, if the deployment has keys.
    pub key_alias: Option<Arc<str>>,
    /// The provider's model id sent on the wire.
    pub model: Arc<str>,
    /// Attempts made in total (all groups).
    pub attempts: u32,
    /// The fallback taken, if any.
    pub fallback: Option<FallbackTaken>,
}

impl Served {
    /// Served by `deployment` of `group` at `endpoint`, first attempt, no key, no fallback.
    pub fn new(
        group: impl AsRef<str>,
        deployment: impl AsRef<str>,
        endpoint: EndpointId,
        model: impl AsRef<str>,
    ) -> Self {
        Self::from_shared(
            Arc::from(group.as_ref()),
            Arc::from(deployment.as_ref()),
            endpoint,
            Arc::from(model.as_ref()),
        )
    }

    /// [`Served::new`] from names already shared (kept, not copied).
    pub fn from_shared(
        group: Arc<str>,
        deployment: Arc<str>,
        endpoint: EndpointId,
        model: Arc<str>,
    ) -> Self {
        Served {
            group,
            deployment,
            endpoint,
            key_alias: None,
            model,
            attempts: 1,
            fallback: None,
        }
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({}", self.group, self.deployment, self.endpoint)?;
        if let Some(k) = &self.key_alias {
            write!(f, ", key {k}")?;
        }
        write!(f, ") model {}, {} attempt", self.model, self.attempts)?;
        if self.attempts != 1 {
            f.write_str("s")?;
        }
        if let Some(fb) = &self.fallback {
            write!(
                f,
                ", fallback from {} after {} ({} hop{})",
                fb.from,
                fb.trigger,
                fb.hops,
                if fb.hops == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// Which cache tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheTier {
    /// The same request (canonical form) was answered before.
    Exact,
    /// A request meaning the same was answered before: the last user turn matched by embedding
    /// similarity and passed the verifier.
    Semantic,
}

impl fmt::Display for CacheTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheTier::Exact => "exact",
            CacheTier::Semantic => "semantic",
        })
    }
}

/// An answer served from the cache rather than by a provider: set on the response (`cache`
/// field, [`Response::cache_hit`](crate::Response::cache_hit)) so a caller always knows.
///
/// ```
/// use std::time::Duration;
/// use infermux_core::{CacheHit, CacheTier};
/// let hit = CacheHit::semantic(0.93, 0.98, Duration::from_secs(4));
/// assert_eq!(hit.tier, CacheTier::Semantic);
/// assert_eq!(hit.to_string(), "semantic cache hit (similarity 0.930, verifier 0.980), 4.0 s old");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheHit {
    /// Which tier answered.
    pub tier: CacheTier,
    /// Cosine similarity of the last user turn to the cached one (semantic tier only).
    pub similarity: Option<f32>,
    /// The verifier's score that the two mean the same (semantic tier only).
    pub verifier_score: Option<f32>,
    /// How long ago the cached answer was stored.
    pub age: std::time::Duration,
}

impl CacheHit {
    /// An exact hit on an answer stored `age` ago.
    pub fn exact(age: std::time::Duration) -> Self {
        CacheHit {
            tier: CacheTier::Exact,
            similarity: None,
            verifier_score: None,
            age,
        }
    }
    /// A semantic hit with its similarity and verifier score.
    pub fn semantic(similarity: f32, verifier_score: f32, age: std::time::Duration) -> Self {
        CacheHit {
            tier: CacheTier::Semantic,
            similarity: Some(similarity),
            verifier_score: Some(verifier_score),
            age,
        }
    }
}

impl fmt::Display for CacheHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cache hit", self.tier)?;
        if let (Some(s), Some(v)) = (self.similarity, self.verifier_score) {
            write!(f, " (similarity {s:.3}, verifier {v:.3})")?;
        }
        write!(f, ", {:.1} s old", self.age.as_secs_f64())
    }
}
