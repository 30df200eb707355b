//! The pool's configuration: its [`Strategy`], its members ([`MemberSpec`]) and the
//! [`PoolConfig`] knobs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use infermux_core::{ApiKey, Error, ErrorKind, Result};

/// How the pool picks among the members that can take an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Each eligible member in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin: member `i` gets `weight_i / Σ weight` of the picks, spread
    /// evenly (nginx's sequence, precomputed).
    Weighted,
    /// The member with the fewest attempts in flight.
    LeastInFlight,
    /// Peak-EWMA latency times (in flight + 1), the better of two random members (power of
    /// two choices, after tower's `p2c` over `PeakEwma`).
    LowestLatency,
    /// The member with the most RPM/TPM headroom left (members without limits count as full).
    LowestUsage,
    /// The first eligible member in configuration order: a primary, then its standbys, each
    /// taking over only while every member before it cannot serve (cooling, removed, limited,
    /// breaker open or no free permit).
    FirstHealthy,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::Weighted,
        Strategy::LeastInFlight,
        Strategy::LowestLatency,
        Strategy::LowestUsage,
        Strategy::FirstHealthy,
    ];

    /// The strategy's name in configuration files (`round-robin`, `weighted`,
    /// `least-in-flight`, `lowest-latency`, `lowest-usage`, `first-healthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Weighted => "weighted",
            Strategy::LeastInFlight => "least-in-flight",
            Strategy::LowestLatency => "lowest-latency",
            Strategy::LowestUsage => "lowest-usage",
            Strategy::FirstHealthy => "first-healthy",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// Parses [`Strategy::as_str`]'s names; anything else is a [`ErrorKind::Config`] error.
    ///
    /// ```
    /// use infermux_multiplex::Strategy;
    /// assert_eq!("lowest-latency".parse::<Strategy>().unwrap(), Strategy::LowestLatency);
    /// assert!("fastest".parse::<Strategy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "unknown pool strategy `{s}` (expected round-robin, weighted, \
                         least-in-flight, lowest-latency, lowest-usage or first-healthy)"
                    ),
                )
            })
    }
}

/// One member of a pool: an endpoint (an index into the executors handed to
/// [`MultiPool::new`](crate::MultiPool::new)), optionally the key it sends, its weight, the
/// model id it asks for and its per-key limits.
///
/// Members that name the same key alias on the same endpoint share the key's state (its
/// cooldown, removal and limits); members without a key share their endpoint's configured key.
///
/// ```
/// use infermux_core::ApiKey;
/// use infermux_multiplex::MemberSpec;
/// let m = MemberSpec::new(0).with_key("team-a", ApiKey::new("sk-a")).with_weight(3).with_rpm(500);
/// assert!(!format!("{m:?}").contains("sk-a"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MemberSpec {
    /// Index of the member's endpoint in the executors.
    pub endpoint: usize,
    /// The key's alias (safe to log) and the key.
    pub key: Option<(String, ApiKey)>,
    /// Weight for [`Strategy::Weighted`]; default 1, never 0.
    pub weight: u32,
    /// The model id the member asks for (`None`: the request's own).
    pub model: Option<String>,
    /// Requests per minute allowed on the key.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute allowed on the key.
    pub tpm: Option<u32>,
}

impl fmt::Debug for MemberSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberSpec")
            .field("endpoint", &self.endpoint)
            .field("key_alias", &self.key.as_ref().map(|(a, _)| a.as_str()))
            .field("weight", &self.weight)
            .field("model", &self.model)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish()
    }
}

impl MemberSpec {
    /// A member on endpoint `endpoint` (an index into the pool's executors), with the
    /// endpoint's own key, weight 1, the request's model and no limits.
    pub fn new(endpoint: usize) -> Self {
        MemberSpec {
            endpoint,
            key: None,
            weight: 1,
            model: None,
            rpm: None,
            tpm: None,
        }
    }
    /// Sends `key`, known as `alias` in metrics, errors and status (never the key itself).
    pub fn with_key(mut self, alias: &str, key: ApiKey) -> Self {
        self.key = Some((alias.to_owned(), key));
        self
    }
    /// Sets the weight for [`Strategy::Weighted`] (0 is refused by the pool).
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    /// Asks for `model` instead of the request's model.
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = Some(model.to_owned());
        self
    }
    /// Limits the key to `rpm` requests per minute (0 is refused).
    pub fn with_rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }
    /// Limits the key to `tpm` tokens per minute (0 is refused).
    pub fn with_tpm(mut self, tpm: u32) -> Self {
        self.tpm = Some(tpm);
        self
    }
}

/// The pool's knobs.
///
/// ```
/// use infermux_multiplex::{PoolConfig, Strategy};
/// use std::time::Duration;
/// let c = PoolConfig::new(Strategy::Weighted).with_max_queued(64).with_age_step(Duration::from_secs(1));
/// assert_eq!(c.max_ejection_percent, 50);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    /// How members are picked.
    pub strategy: Strategy,
    /// The share of members (in percent) whose breakers may be open before the pool sends an
    /// attempt through an open breaker rather than refuse it (Envoy's
    /// `max_ejection_percent`). Default 50; at most 100 (never override).
    pub max_ejection_percent: u8,
    /// Calls that may wait for a member. Default 1024; 0 means no waiting (`QueueFull`
    /// whenever no member can take the call now).
    pub max_queued: usize,
    /// A waiter's priority level rises by one for every `age_step` waited. Default 2 s.
    pub age_step: Duration,
    /// Output tokens assumed for a request that sets no `max_tokens`, in TPM estimates.
    /// Default 256.
    pub default_output_tokens: u32,
    /// The share (in percent, 1–99) of a per-minute limit that may be spent at once: see
    /// [the limits](crate#limits). Default 50.
    pub limit_burst_percent: u8,
}

impl PoolConfig {
    /// The defaults listed on each field, with `strategy`.
    pub fn new(strategy: Strategy) -> Self {
        PoolConfig {
            strategy,
            max_ejection_percent: 50,
            max_queued: 1024,
            age_step: Duration::from_secs(2),
            default_output_tokens: 256,
            limit_burst_percent: 50,
        }
    }
    /// Sets the ejection cap (percent of members).
    pub fn with_max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent;
        self
    }
    /// Sets the bound of the waiting queue.
    pub fn with_max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }
    /// Sets the ageing step of waiters.
    pub fn with_age_step(mut self, step: Duration) -> Self {
        self.age_step = step;
        self
    }
    /// Sets the output tokens assumed when a request sets no `max_tokens`.
    pub fn with_default_output_tokens(mut self, tokens: u32) -> Self {
        self.default_output_tokens = tokens;
        self
    }
    /// Sets the share of a per-minute limit that may be spent at once (1–99).
    pub fn with_limit_burst_percent(mut self, percent: u8) -> Self {
        self.limit_burst_percent = percent;
        self
    }

    /// Checks the values: an ejection cap of at most 100, a non-zero ageing step and a burst
    /// share of 1–99.
    pub fn validate(self) -> Result<Self> {
        let bad = |m: &'static str| Err(Error::new(ErrorKind::Config, m));
        if self.max_ejection_percent > 100 {
            return bad("max_ejection_percent is a percentage: at most 100");
        }
        if self.age_step.is_zero() {
            return bad("the ageing step must be longer than zero");
        }
        if !(1..=99).contains(&self.limit_burst_percent) {
            return bad("limit_burst_percent must be between 1 and 99");
        }
        Ok(self)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::new(Strategy::default())
    }
}
