//! [`MultiPool`]: members of (endpoint, key), the eligibility scan, the strategies, admission
//! with waiting, and what reports teach the pool.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use infermux_core::{
    AttemptKey, Clock, EndpointId, Error, ErrorKind, RateLimitInfo, Request, Result, SystemClock,
};
use infermux_resilience::breaker::{BreakerState, Outcome};
use infermux_resilience::queue::ReleaseHook;
use infermux_resilience::{
    Admit, AttemptExecutor, AttemptReport, Lease, Pool, Refusal, StreamHold,
};

use crate::config::{MemberSpec, PoolConfig, Strategy};
use crate::gcra::per_minute_limit;
use crate::member::{KeyState, Member, NEVER};
use crate::queue::{Slot, WaitQueue};
use crate::registry::KeyRegistry;
use crate::status::{MemberInfo, MemberState, MemberStatus, PoolSnapshot, RemovalReason};

/// The most members a pool holds (eligibility is a 64-bit mask).
pub const MAX_MEMBERS: usize = 64;
/// The cooldown of a 429 that says nothing of when to come back.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// How often a waiter re-checks an endpoint whose release hook another owner holds.
const UNHOOKED_RECHECK: Duration = Duration::from_millis(50);
/// When an endpoint whose breaker refused without saying until when (its half-open probes
/// are out; an adapter's open breaker) is looked at again, if none of its permits is released
/// before: a probe may come back with no permit released (the pool's own look at an open
/// breaker gives its probe back unused), and nothing else would.
const BREAKER_RECHECK: Duration = Duration::from_millis(50);

/// Whether a `blocked` value is a breaker refusal that said nothing of when, still in force
/// at `now`: the endpoint returns when one of its permits is released or at the recheck,
/// whichever comes first (so it is judged like a permit wait, not as a time).
fn refused_until_release(blocked: u64, now: u64) -> bool {
    blocked > now && blocked & 1 == 1
}

/// The `blocked` value of a breaker refusal at `now` that said nothing of when: odd, so that a
/// release of one of the endpoint's permits clears it (see [`Signal::on_release`]), and no
/// later than [`BREAKER_RECHECK`] from now.
fn blocked_until_release(now: u64) -> u64 {
    now.saturating_add(dur_ns(BREAKER_RECHECK)) | 1
}

/// The `blocked` value of a breaker refusal until `until` (even: a release does not clear it),
/// at least `now + 1`.
fn blocked_until(now: u64, until: u64) -> u64 {
    until.max(now.saturating_add(2)) & !1
}
/// The weighted schedule's longest length (longer weight sums are scaled down to it).
const MAX_SCHEDULE: u64 = 4096;

/// One endpoint of the pool.
struct Endpoint {
    exec: Arc<AttemptExecutor>,
    id: EndpointId,
    index: usize,
    /// The members on it.
    members: u64,
    /// Whether its release hook wakes this pool.
    hooked: bool,
    /// That hook (taken off the endpoint when the pool ends: the endpoint may outlive it).
    hook: ReleaseHook,
    /// In service (`IN_SERVICE`), taken out by its owner until put back (`OUT`, see
    /// [`MultiPool::take_out`]), or for good (`RETIRED`, [`MultiPool::retire`]).
    service: std::sync::atomic::AtomicU8,
}

const IN_SERVICE: u8 = 0;
const OUT: u8 = 1;
const RETIRED: u8 = 2;

impl Endpoint {
    #[inline]
    fn service(&self) -> u8 {
        self.service.load(Ordering::Acquire)
    }
    #[inline]
    fn is_out(&self) -> bool {
        self.service() != IN_SERVICE
    }
}

/// What the endpoints' release hooks touch (they hold it, not the pool, so no cycle).
struct Signal {
    queue: WaitQueue,
    /// Per endpoint: its breaker refused until (ns; an odd value: until then or until one of
    /// its permits is released, whichever comes first; 1: a probe is free; 0: nothing known).
    blocked: Box<[AtomicU64]>,
    clock: Arc<dyn Clock>,
}

impl Signal {
    /// A permit of endpoint `e` went back to its free count.
    fn on_release(&self, e: usize) {
        if let Some(b) = self.blocked.get(e) {
            let v = b.load(Ordering::Relaxed);
            if v > 1 && v & 1 == 1 {
                let _ = b.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
        if self.queue.len() > 0 {
            self.queue.sweep(self.clock.now());
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    cooldowns: AtomicU64,
    removals: AtomicU64,
    waits: AtomicU64,
    unavailable: AtomicU64,
    queue_full: AtomicU64,
    overrides: AtomicU64,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    keys: Vec<KeyState>,
    members: Vec<Member>,
    config: PoolConfig,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    cursor: AtomicU64,
    rng: AtomicU64,
    schedule: Box<[u8]>,
    signal: Arc<Signal>,
    counters: Counters,
    has_tpm: bool,
    has_limits: bool,
    /// The latest hold end over all keys (each key raises it with its own, its models' too).
    pool_until: Arc<AtomicU64>,
    /// The binding to state shared across processes (see [`MultiPool::with_shared`]).
    #[cfg(feature = "redis")]
    shared: std::sync::OnceLock<crate::shared::SharedPool>,
}

impl Drop for Inner {
    /// The pool ends: its hooks come off the endpoints and its hold end off the keys it
    /// shares, which may outlive it (else each pool built over them stayed called and kept in
    /// memory for as long as they live).
    fn drop(&mut self) {
        for ep in &self.endpoints {
            ep.exec.admission().remove_release_hook(&ep.hook);
        }
        for k in &self.keys {
            k.forget_pool(&self.pool_until);
        }
    }
}

/// A pool of (endpoint, key) members behind one [`Pool`]: the call policy asks it who takes
/// each attempt (see [the crate docs](crate) for the semantics).
///
/// Cheap to clone (clones share the state).
#[derive(Clone)]
pub struct MultiPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for MultiPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiPool")
            .field("strategy", &self.inner.config.strategy)
            .field("members", &self.inner.members.len())
            .field("queued", &self.inner.signal.queue.len())
            .finish_non_exhaustive()
    }
}

/// What the scan found about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    /// It may take the attempt now.
    Now,
    /// Only a permit holds it back: it may return whenever one is released.
    OnRelease,
    /// It returns at this time (ns), maybe also needing a permit then.
    At(u64),
    /// It never returns for this request.
    Never(Never),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Never {
    Removed(RemovalReason),
    TooLarge,
    /// Its endpoint was retired ([`MultiPool::retire`]).
    Retired,
}

/// The outcome of one pick.
enum Picked<'a> {
    Lease(Lease<'a>),
    /// Nothing now; whether some member this pick passed over could serve another waiter:
    /// one held back only by the request's own token estimate, or one on an endpoint this
    /// call's retry avoids.
    None {
        estimate_bound: bool,
    },
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, msg.into())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round-robin sequence over `weights` (reduced by their gcd, scaled
/// down to at most [`MAX_SCHEDULE`] slots).
/// The tokens an answer used, input and output.
fn tokens_used(u: &infermux_core::Usage) -> u64 {
    u.input_tokens.saturating_add(u.output_tokens)
}

fn schedule(weights: &[u32]) -> Box<[u8]> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x) / g.max(1)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u8);
    }
    out.into_boxed_slice()
}

#[inline]
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`th set bit of `mask` (n < popcount).
#[inline]
fn nth_bit(mut mask: u64, n: u32) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

/// The first set bit at or after `start`, wrapping.
#[inline]
fn next_bit(mask: u64, start: usize) -> usize {
    let hi = mask & (!0u64).checked_shl(start as u32).unwrap_or(0);
    if hi != 0 {
        hi.trailing_zeros() as usize
    } else {
        mask.trailing_zeros() as usize
    }
}

impl MultiPool {
    /// A pool over `executors` (the endpoints) with `members` on them, reading the system
    /// clock. A [`ErrorKind::Config`] error when there are no members or more than
    /// [`MAX_MEMBERS`], a member names no executor, has weight 0 or a zero limit, a key alias
    /// is bound to two endpoints, or two members of one key disagree on its limits.
    pub fn new(
        executors: Vec<Arc<AttemptExecutor>>,
        members: Vec<MemberSpec>,
        config: PoolConfig,
    ) -> Result<Self> {
        Self::with_clock(executors, members, config, Arc::new(SystemClock))
    }

    /// [`MultiPool::new`] reading `clock` for cooldowns, limits and latencies (a
    /// [`ManualClock`](infermux_core::ManualClock) in tests). Waiting itself runs on tokio's
    /// timers: a waiter sleeps for the clock's time left until a member returns.
    pub fn with_clock(
        executors: Vec<Arc<AttemptExecutor>>,
        members: Vec<MemberSpec>,
        config: PoolConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::build(executors, members, config, clock, None)
    }

    /// [`MultiPool::new`] holding its keys in `keys`, with every other pool built with it: a
    /// key (endpoint and alias) several pools send is cooled, removed and limited in all of
    /// them by what any of them learns, and its RPM/TPM limits count all their requests (see
    /// [`KeyRegistry`]). The pool reads the registry's clock. Besides `new`'s errors, a
    /// [`ErrorKind::Config`] error when a key is stated with other limits (or another burst
    /// share) than another pool of the registry stated.
    pub fn with_registry(
        executors: Vec<Arc<AttemptExecutor>>,
        members: Vec<MemberSpec>,
        config: PoolConfig,
        keys: &KeyRegistry,
    ) -> Result<Self> {
        Self::build(executors, members, config, keys.clock(), Some(keys))
    }

    fn build(
        executors: Vec<Arc<AttemptExecutor>>,
        members: Vec<MemberSpec>,
        config: PoolConfig,
        clock: Arc<dyn Clock>,
        registry: Option<&KeyRegistry>,
    ) -> Result<Self> {
        let config = config.validate()?;
        if members.is_empty() {
            return Err(config_error("a pool needs at least one member"));
        }
        if members.len() > MAX_MEMBERS {
            return Err(config_error(format!(
                "a pool holds at most {MAX_MEMBERS} members, not {}",
                members.len()
            )));
        }
        let mut keys: Vec<KeyState> = Vec::new();
        let pool_until = Arc::new(AtomicU64::new(0));
        // (endpoint, alias) → key index; alias → endpoint
        // (endpoint, alias) → (key index, rpm, tpm)
        type Limits = (usize, Option<u32>, Option<u32>);
        let mut by_key: HashMap<(usize, Option<String>), Limits> = HashMap::new();
        let mut alias_endpoint: HashMap<String, usize> = HashMap::new();
        let mut built = Vec::with_capacity(members.len());
        for (i, spec) in members.iter().enumerate() {
            let Some(exec) = executors.get(spec.endpoint) else {
                return Err(config_error(format!(
                    "member {i} names endpoint {} but the pool has {} executors",
                    spec.endpoint,
                    executors.len()
                )));
            };
            if spec.weight == 0 {
                return Err(config_error(format!("member {i} has weight 0")));
            }
            if spec.rpm == Some(0) || spec.tpm == Some(0) {
                return Err(config_error(format!(
                    "member {i} has a zero rpm or tpm limit"
                )));
            }
            let alias = spec.key.as_ref().map(|(a, _)| a.clone());
            if let Some(a) = &alias {
                if a.is_empty() {
                    return Err(config_error(format!("member {i} has an empty key alias")));
                }
                match alias_endpoint.get(a) {
                    Some(&e) if e != spec.endpoint => {
                        return Err(config_error(format!(
                            "key `{a}` is bound to endpoint `{}` and cannot serve `{}` too \
                             (member {i})",
                            executors[e].provider().endpoint(),
                            exec.provider().endpoint()
                        )));
                    }
                    _ => {
                        alias_endpoint.insert(a.clone(), spec.endpoint);
                    }
                }
            }
            let key = match by_key.get(&(spec.endpoint, alias.clone())) {
                Some(&(k, rpm, tpm)) => {
                    let (rpm2, tpm2) = (spec.rpm.or(rpm), spec.tpm.or(tpm));
                    if (spec.rpm.is_some() && rpm.is_some() && spec.rpm != rpm)
                        || (spec.tpm.is_some() && tpm.is_some() && spec.tpm != tpm)
                        || (rpm2, tpm2) != (rpm, tpm)
                    {
                        return Err(config_error(format!(
                            "member {i} states other limits than an earlier member with the \
                             same key: state a key's limits once, identically"
                        )));
                    }
                    k
                }
                None => {
                    let burst = config.limit_burst_percent;
                    keys.push(match registry {
                        None => KeyState::new(
                            alias.as_deref().map(Arc::from),
                            spec.rpm.and_then(|l| per_minute_limit(l, burst)),
                            spec.tpm.and_then(|l| per_minute_limit(l, burst)),
                            pool_until.clone(),
                        ),
                        Some(r) => {
                            let (core, held) = r.core(
                                exec.provider().endpoint(),
                                alias.as_deref(),
                                (spec.rpm, spec.tpm, burst),
                                &pool_until,
                            )?;
                            if held {
                                KeyState::sharing(
                                    alias.as_deref().map(Arc::from),
                                    core,
                                    pool_until.clone(),
                                )
                            } else {
                                KeyState {
                                    alias: alias.as_deref().map(Arc::from),
                                    members: 0,
                                    core,
                                }
                            }
                        }
                    });
                    by_key.insert(
                        (spec.endpoint, alias.clone()),
                        (keys.len() - 1, spec.rpm, spec.tpm),
                    );
                    keys.len() - 1
                }
            };
            let attempt_key = spec
                .key
                .as_ref()
                .map(|(a, k)| AttemptKey::new(exec.provider().endpoint().clone(), a, k.clone()));
            built.push(Member {
                endpoint: spec.endpoint,
                key,
                weight: spec.weight,
                model: spec.model.as_deref().map(Arc::from),
                attempt_key,
                in_flight: Default::default(),
                picks: Default::default(),
                ewma: Default::default(),
                ewma_stamp: Default::default(),
            });
        }
        let weights: Vec<u32> = built.iter().map(|m| m.weight).collect();
        let has_tpm = keys.iter().any(|k| k.tpm.is_some());
        let has_limits = has_tpm || keys.iter().any(|k| k.rpm.is_some());
        // pools sharing keys count time from one epoch
        let epoch = registry.map_or_else(|| clock.now(), KeyRegistry::epoch);
        let signal = Arc::new(Signal {
            queue: WaitQueue::new(config.age_step),
            blocked: executors.iter().map(|_| AtomicU64::new(0)).collect(),
            clock: clock.clone(),
        });
        let endpoints = executors
            .iter()
            .enumerate()
            .map(|(e, exec)| {
                let s = signal.clone();
                let hook: ReleaseHook = Arc::new(move || s.on_release(e));
                Endpoint {
                    hooked: exec.admission().on_release(hook.clone()).is_ok(),
                    hook,
                    id: exec.provider().endpoint().clone(),
                    index: e,
                    members: built
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| m.endpoint == e)
                        .fold(0, |mask, (i, _)| mask | 1 << i),
                    exec: exec.clone(),
                    service: Default::default(),
                }
            })
            .collect();
        for (k, key) in keys.iter_mut().enumerate() {
            key.members = built
                .iter()
                .enumerate()
                .filter(|(_, m)| m.key == k)
                .fold(0, |mask, (i, _)| mask | 1 << i);
        }
        let inner = Arc::new(Inner {
            endpoints,
            keys,
            members: built,
            signal,
            config,
            clock,
            epoch,
            cursor: AtomicU64::new(0),
            rng: AtomicU64::new(0x5EED),
            schedule: schedule(&weights),
            counters: Counters::default(),
            has_tpm,
            has_limits,
            pool_until,
            #[cfg(feature = "redis")]
            shared: std::sync::OnceLock::new(),
        });
        Ok(MultiPool { inner })
    }

    /// Who member `i` is; `None` past the last member.
    pub fn member(&self, i: u32) -> Option<MemberInfo> {
        let m = self.inner.members.get(i as usize)?;
        Some(MemberInfo {
            endpoint: self.inner.endpoints[m.endpoint].id.clone(),
            key_alias: self.inner.keys[m.key].alias.clone(),
            model: m.model.clone(),
        })
    }

    /// The provider's model id member `i` asks for (`None`: the request's own, or past the
    /// last member).
    pub fn model_of(&self, i: u32) -> Option<&str> {
        self.inner.members.get(i as usize)?.model.as_deref()
    }

    /// The key member `i` sends (`None`: the endpoint's own, or past the last member).
    pub fn key_of(&self, i: u32) -> Option<&AttemptKey> {
        self.inner.members.get(i as usize)?.attempt_key.as_ref()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    /// Always `false`: a pool has at least one member.
    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Every member's status now.
    pub fn status(&self) -> Vec<MemberStatus> {
        let inner = &*self.inner;
        let now = inner.now_ns();
        inner
            .members
            .iter()
            .map(|m| {
                let key = &inner.keys[m.key];
                let ep = &inner.endpoints[m.endpoint];
                let at = |ns: u64| inner.epoch + Duration::from_nanos(ns);
                let cool = key
                    .cool_until
                    .load(Ordering::Acquire)
                    .max(key.model_hold(m.model.as_deref(), now));
                // (a key whose limiter lets no request, or not one token, through now)
                let limited = key
                    .limited_until
                    .load(Ordering::Acquire)
                    .max(key.limits_ready_at(1, now));
                let state = if ep.is_out() {
                    MemberState::OutOfService
                } else if let Some((reason, until)) = key.removal(now) {
                    MemberState::Removed {
                        reason,
                        until: (until != NEVER).then(|| at(until)),
                    }
                } else if cool > now {
                    MemberState::Cooling { until: at(cool) }
                } else if limited > now {
                    MemberState::Limited { until: at(limited) }
                } else if ep.exec.breaker_state() == BreakerState::Open {
                    MemberState::Ejected
                } else {
                    MemberState::Eligible
                };
                MemberStatus {
                    endpoint: ep.id.clone(),
                    key_alias: key.alias.clone(),
                    state,
                    in_flight: m.in_flight.load(Ordering::Acquire),
                    picks: m.picks.load(Ordering::Acquire),
                    ewma_latency: m.ewma_ns().map(|ns| Duration::from_nanos(ns as u64)),
                }
            })
            .collect()
    }

    /// The pool's counters.
    pub fn counters(&self) -> PoolSnapshot {
        let c = &self.inner.counters;
        PoolSnapshot {
            picks: self
                .inner
                .members
                .iter()
                .map(|m| m.picks.load(Ordering::Relaxed))
                .collect(),
            cooldowns: c.cooldowns.load(Ordering::Relaxed),
            removals: c.removals.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            ejection_overrides: c.overrides.load(Ordering::Relaxed),
            queued: self.inner.signal.queue.len(),
            shared_state_up: self.shared_up(),
            shared_state_fallbacks: self.shared_fallbacks(),
            shared_state_ahead: self.shared_ahead(),
        }
    }

    /// Appends the pool's metrics in Prometheus text: per member (labelled `pool`, `endpoint`,
    /// `key` — the alias, never the key — and `model`, the member's own or empty) its picks,
    /// attempts in flight, state and latency; per pool its cooldowns, removals, waits,
    /// refusals, ejection-cap overrides and queue. Several pools in one scrape:
    /// [`MultiPool::render_prometheus_all`].
    pub fn render_prometheus(&self, pool_name: &str, out: &mut String) {
        Self::render_prometheus_all(&[(pool_name, self)], out);
    }

    /// [`MultiPool::render_prometheus`] of several pools at once: each metric family once
    /// (its `HELP` and `TYPE` lines, then every pool's samples), as the text format requires
    /// of a scrape.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux_core::EndpointConfig;
    /// use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
    /// use infermux_openai_compat::OpenAiCompat;
    /// use infermux_resilience::{AttemptExecutor, queue::QueueConfig};
    /// use std::sync::Arc;
    ///
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    /// let endpoint = Arc::new(AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap());
    /// let pool = || MultiPool::new(vec![endpoint.clone()], vec![MemberSpec::new(0)], PoolConfig::new(Strategy::LeastInFlight)).unwrap();
    /// let (chat, backup) = (pool(), pool());
    /// let mut out = String::new();
    /// MultiPool::render_prometheus_all(&[("chat", &chat), ("backup", &backup)], &mut out);
    /// assert_eq!(out.matches("# TYPE infermux_pool_member_picks_total ").count(), 1);
    /// assert_eq!(out.matches("infermux_pool_member_picks_total{").count(), 2);
    /// # }
    /// ```
    pub fn render_prometheus_all(pools: &[(&str, &MultiPool)], out: &mut String) {
        let pools: Vec<_> = pools
            .iter()
            .map(|(name, p)| (escape(name), *p, p.status(), p.counters()))
            .collect();
        let member = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      v: &dyn Fn(&MemberStatus) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (pool, p, status, _) in &pools {
                for (s, m) in status.iter().zip(p.inner.members.iter()) {
                    let _ = writeln!(
                        out,
                        "{name}{{pool=\"{pool}\",endpoint=\"{}\",key=\"{}\",model=\"{}\"}} {}",
                        escape(s.endpoint.as_str()),
                        escape(s.key_alias.as_deref().unwrap_or("")),
                        escape(m.model.as_deref().unwrap_or("")),
                        v(s)
                    );
                }
            }
        };
        member(
            out,
            "infermux_pool_member_picks_total",
            "counter",
            "Times the member was picked (a lease given back unused counts too).",
            &|s| s.picks.to_string(),
        );
        member(
            out,
            "infermux_pool_member_in_flight",
            "gauge",
            "Attempts leased to the member and not yet reported.",
            &|s| s.in_flight.to_string(),
        );
        member(
            out,
            "infermux_pool_member_eligible",
            "gauge",
            "1 when the member may take attempts.",
            &|s| u8::from(s.state == MemberState::Eligible).to_string(),
        );
        member(
            out,
            "infermux_pool_member_state",
            "gauge",
            "0 eligible, 1 cooling, 2 removed, 3 limited, 4 ejected, 5 out of service.",
            &|s| {
                match s.state {
                    MemberState::Eligible => "0",
                    MemberState::Cooling { .. } => "1",
                    MemberState::Removed { .. } => "2",
                    MemberState::Limited { .. } => "3",
                    MemberState::Ejected => "4",
                    MemberState::OutOfService => "5",
                }
                .to_owned()
            },
        );
        member(
            out,
            "infermux_pool_member_latency_ewma_seconds",
            "gauge",
            "Peak-EWMA latency of the member.",
            &|s| {
                s.ewma_latency
                    .map_or_else(|| "NaN".to_owned(), |d| d.as_secs_f64().to_string())
            },
        );
        type Field = fn(&PoolSnapshot) -> u64;
        let families: [(&str, &str, &str, Field); 7] = [
            (
                "infermux_pool_cooldowns_total",
                "counter",
                "Keys put to cool down, or models held on a key, after a 429.",
                |c| c.cooldowns,
            ),
            (
                "infermux_pool_removals_total",
                "counter",
                "Keys taken out (auth, quota).",
                |c| c.removals,
            ),
            (
                "infermux_pool_waits_total",
                "counter",
                "Admissions that waited in the pool's queue.",
                |c| c.waits,
            ),
            (
                "infermux_pool_unavailable_total",
                "counter",
                "Admissions refused: no member before the deadline.",
                |c| c.unavailable,
            ),
            (
                "infermux_pool_queue_full_total",
                "counter",
                "Admissions refused: the queue was full.",
                |c| c.queue_full,
            ),
            (
                "infermux_pool_ejection_overrides_total",
                "counter",
                "Attempts sent through an open breaker by the ejection cap.",
                |c| c.ejection_overrides,
            ),
            (
                "infermux_pool_queued",
                "gauge",
                "Calls waiting for a member.",
                |c| c.queued as u64,
            ),
        ];
        for (name, kind, help, v) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (pool, _, _, c) in &pools {
                let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {}", v(c));
            }
        }
        let shared: Vec<_> = pools
            .iter()
            .filter_map(|(pool, _, _, c)| {
                c.shared_state_up.map(|up| {
                    (
                        pool.as_ref(),
                        up,
                        c.shared_state_fallbacks,
                        c.shared_state_ahead,
                    )
                })
            })
            .collect();
        render_shared(out, &shared);
    }

    /// A lease now, without waiting, when a member can take an attempt reserving `estimate`
    /// tokens (preferring members not in `tried`); `None` otherwise. Waiters in the queue are
    /// not served first: this is for callers that would rather not wait at all, and for
    /// benchmarks. Report its attempt with [`Pool::report`] like an admitted one, or hand the
    /// lease back unused with [`MultiPool::give_back`].
    pub fn try_lease(&self, estimate: u64, tried: &[u32]) -> Option<Lease<'_>> {
        let inner = &*self.inner;
        let tokens = if inner.has_tpm { estimate } else { 0 };
        match inner.pick(inner.now_ns(), tokens, None, inner.tried_mask(tried)) {
            Picked::Lease(lease) => Some(lease),
            Picked::None { .. } => None,
        }
    }

    /// Takes every member on `endpoint` out of service (its server is starting or restarting):
    /// no attempt is leased to them until [`MultiPool::put_back`]. Admission meanwhile waits
    /// for them within the call's deadline instead of failing at once. Returns whether the
    /// pool has that endpoint (`false`: nothing changed).
    pub fn take_out(&self, endpoint: &EndpointId) -> bool {
        self.set_service(endpoint, OUT)
    }

    /// Takes every member on `endpoint` out of service for good (its server has stopped or
    /// failed and will not come back by itself): a call no other member can take is refused
    /// at once with [`ErrorKind::Unavailable`], the calls waiting for it included, instead of
    /// waiting out its deadline. [`MultiPool::put_back`] undoes it. Returns whether the pool
    /// has that endpoint.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux_core::{ChatRequest, EndpointConfig, EndpointId, ErrorKind, Message, Request, RequestContext};
    /// use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
    /// use infermux_openai_compat::OpenAiCompat;
    /// use infermux_resilience::{AttemptExecutor, CallPolicy, queue::QueueConfig, retry::StandardRetry};
    /// use std::sync::Arc;
    ///
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    /// let endpoint = Arc::new(AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap());
    /// let pool = MultiPool::new(vec![endpoint], vec![MemberSpec::new(0)], PoolConfig::new(Strategy::LeastInFlight)).unwrap();
    /// pool.retire(&EndpointId::new("local"));
    /// // no deadline: a call waiting for a member only taken out would wait for good
    /// let policy = CallPolicy::new(Arc::new(StandardRetry::disabled()), None);
    /// let request = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
    /// let refused = policy.call(&pool, &request, &RequestContext::new()).await.unwrap_err();
    /// assert_eq!(refused.kind(), ErrorKind::Unavailable);
    /// # }
    /// ```
    pub fn retire(&self, endpoint: &EndpointId) -> bool {
        let found = self.set_service(endpoint, RETIRED);
        if found {
            // the calls waiting for it look again, and are refused if nothing else serves
            self.inner.signal.queue.sweep(self.inner.clock.now());
        }
        found
    }

    /// Puts the members on `endpoint` back in service (after [`MultiPool::take_out`] or
    /// [`MultiPool::retire`]) and wakes the calls waiting for a member. Returns whether the
    /// pool has that endpoint.
    pub fn put_back(&self, endpoint: &EndpointId) -> bool {
        let found = self.set_service(endpoint, IN_SERVICE);
        if found {
            self.inner.signal.queue.sweep(self.inner.clock.now());
        }
        found
    }

    /// Whether the members on `endpoint` are out of service ([`MultiPool::take_out`],
    /// [`MultiPool::retire`]); `None` when the pool has no such endpoint.
    pub fn is_out_of_service(&self, endpoint: &EndpointId) -> Option<bool> {
        let mut eps = self.inner.endpoints.iter().filter(|e| &e.id == endpoint);
        eps.next().map(Endpoint::is_out)
    }

    fn set_service(&self, endpoint: &EndpointId, service: u8) -> bool {
        let mut found = false;
        for ep in self.inner.endpoints.iter().filter(|e| &e.id == endpoint) {
            ep.service.store(service, Ordering::Release);
            found = true;
        }
        found
    }

    /// The member the strategy would pick at `now` for a request without a token estimate,
    /// taking nothing (no permit, no limit, no pick counted; round-robin and weighted advance
    /// their cursor). For diagnostics and the selection benchmark.
    pub fn select(&self, now: Instant) -> Option<u32> {
        let inner = &*self.inner;
        let now = inner.ns(now);
        let mask = inner.eligible(now, 0, None, true);
        (mask != 0).then(|| inner.choose(mask, now) as u32)
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Inner {
    #[inline]
    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NEVER - 1)
    }
    #[inline]
    fn now_ns(&self) -> u64 {
        self.ns(self.clock.now())
    }
    /// The members on the endpoints the members in `tried` (a mask) failed on.
    ///
    /// A tried member whose key the pool is holding back now (cooling after a 429, its model
    /// held, removed after a 401/403 or a spent quota) failed by its *key*, not its endpoint:
    /// its endpoint is not counted for it, and another key there may take the retry at once
    /// (the held key itself is not eligible until its hold ends).
    fn failed_endpoints(&self, tried: u64, now: u64) -> u64 {
        let by_key = |m: &Member| {
            let key = &self.keys[m.key];
            key.held_until() > now
                || key.model_hold(m.model.as_deref(), now) > now
                || key.removal(now).is_some()
        };
        // (endpoints are the client's indices, any number of them: compared, not masked)
        bits(tried)
            .filter_map(|i| self.members.get(i))
            .filter(|m| !by_key(m))
            .fold(0u64, |mask, failed| {
                let on_it = self.members.iter().enumerate();
                on_it
                    .filter(|(_, m)| m.endpoint == failed.endpoint)
                    .fold(mask, |mask, (i, _)| mask | (1 << i))
            })
    }

    /// Whether a member outside `skip` (a mask) is fit to take an attempt now: its endpoint
    /// in service, its breaker admitting, its key neither cooling, removed nor at its RPM/TPM
    /// limit (busy permits are only a wait), and a request of `tokens` able to fit its TPM
    /// burst.
    fn fit_outside(&self, skip: u64, now: u64, tokens: u64) -> bool {
        self.members.iter().enumerate().any(|(i, m)| {
            let ep = &self.endpoints[m.endpoint];
            let key = &self.keys[m.key];
            skip & (1 << i) == 0
                && !ep.is_out()
                && self.breaker_may_admit(ep, now)
                && key.held_until() <= now
                && key.model_hold(m.model.as_deref(), now) <= now
                && !matches!(key.removal(now), Some((_, NEVER)))
                && key.limits_ready_at(0, now) <= now
                && key.limits_ready_at(tokens, now) != NEVER
        })
    }

    /// The members on the endpoints the members in `tried` (a mask) failed on (see
    /// [`Inner::failed_endpoints`]), when a member on another endpoint is
    /// [fit](Inner::fit_outside): a retry avoids them then, waiting for the fit one rather
    /// than going back at once to an endpoint that just failed. `0` when there is no such
    /// member (or nothing failed by its endpoint). A member no request of `tokens` can ever fit
    /// (over its TPM burst) is not fit.
    fn avoid_failed(&self, tried: u64, now: u64, tokens: u64) -> u64 {
        if tried == 0 {
            return 0;
        }
        let failed = self.failed_endpoints(tried, now);
        // (a member that failed in this call is no fit one elsewhere, whatever its key says)
        if failed != 0 && self.fit_outside(failed | tried, now, tokens) {
            failed
        } else {
            0
        }
    }

    fn tried_mask(&self, tried: &[u32]) -> u64 {
        tried
            .iter()
            .filter(|&&t| (t as usize) < self.members.len())
            .fold(0u64, |m, &t| m | (1 << t))
    }
    #[inline]
    fn rand(&self) -> u64 {
        splitmix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    #[inline]
    fn blocked(&self, e: usize) -> &AtomicU64 {
        &self.signal.blocked[e]
    }

    /// Whether endpoint `e`'s breaker may admit at `now` (as far as the pool knows without
    /// asking it).
    ///
    /// The pool learns when an open breaker lets a probe through from its refusals
    /// ([`Inner::learn_breakers`]); an open breaker it knows nothing of is held back.
    #[inline]
    fn breaker_may_admit(&self, ep: &Endpoint, now: u64) -> bool {
        let blocked = self.blocked(ep.index).load(Ordering::Relaxed);
        blocked <= now && (blocked != 0 || ep.exec.breaker_state() != BreakerState::Open)
    }

    /// Asks each open breaker the pool knows nothing of when it lets a probe through (a
    /// probe ticket it hands out is given back unused at once).
    fn learn_breakers(&self, now: u64) {
        for ep in &self.endpoints {
            if self.blocked(ep.index).load(Ordering::Relaxed) != 0
                || ep.exec.breaker_state() != BreakerState::Open
            {
                continue;
            }
            let Some(b) = ep.exec.breaker() else { continue };
            let at = match b.try_acquire() {
                Ok(ticket) => {
                    b.on_outcome(ticket, Outcome::Ignored, Duration::ZERO);
                    1
                }
                Err(e) => e.retry_after().map_or_else(
                    || blocked_until_release(now),
                    |d| blocked_until(now, now.saturating_add(dur_ns(d))),
                ),
            };
            let _ =
                self.blocked(ep.index)
                    .compare_exchange(0, at, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The members that can take an attempt of `tokens` now: the scan (endpoints, then keys).
    /// With `limits` false the keys' RPM/TPM limits are left to the lease's reservation
    /// (which refuses a limited member), so a pick reads no limiter it does not reserve on.
    #[inline]
    fn eligible(&self, now: u64, tokens: u64, model: Option<&str>, limits: bool) -> u64 {
        let mut by_endpoint = 0u64;
        for ep in &self.endpoints {
            if !ep.is_out()
                && self.breaker_may_admit(ep, now)
                && ep.exec.admission().available() > 0
            {
                by_endpoint |= ep.members;
            }
        }
        if by_endpoint == 0 {
            return 0;
        }
        let limits = limits && self.has_limits;
        // no key held and no limit to read: every key can (one load instead of one a key)
        if !limits && self.pool_until.load(Ordering::Relaxed) <= now {
            return by_endpoint;
        }
        let mut by_key = 0u64;
        for key in &self.keys {
            if key.members & by_endpoint != 0
                && key.held_until() <= now
                && (!limits || key.limits_ready_at(tokens, now) <= now)
            {
                by_key |= key.members;
            }
        }
        let mut mask = by_endpoint & by_key;
        // the members whose key holds the model they would send (theirs, else the
        // request's): read only while a key has such a hold
        for key in &self.keys {
            if key.members & mask != 0 && key.models_held_until() > now {
                for i in bits(key.members & mask) {
                    let m = self.members[i].model.as_deref().or(model);
                    if key.model_hold(m, now) > now {
                        mask &= !(1 << i);
                    }
                }
            }
        }
        mask
    }

    /// Holds `model` on `m`'s key until `until` (a model-scoped 429): every member of every
    /// pool sending that key for that model waits, the key's other models go on.
    fn hold_model(&self, m: &Member, model: &str, until: u64, now: u64) {
        self.keys[m.key].hold_model(model, until, now);
        self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
    }

    /// When member `i` could take an attempt of `tokens`.
    fn returns(&self, i: usize, now: u64, tokens: u64, model: Option<&str>) -> Return {
        let m = &self.members[i];
        let key = &self.keys[m.key];
        if let Some((reason, NEVER)) = key.removal(now) {
            return Return::Never(Never::Removed(reason));
        }
        let limits = key.limits_ready_at(tokens, now);
        if limits == NEVER {
            return Return::Never(Never::TooLarge);
        }
        let ep = &self.endpoints[m.endpoint];
        match ep.service() {
            IN_SERVICE => {}
            RETIRED => return Return::Never(Never::Retired),
            // back when its owner puts it back (which wakes the queue), like a permit release
            _ => return Return::OnRelease,
        }
        let mut at = key
            .held_until()
            .max(limits)
            .max(key.model_hold(m.model.as_deref().or(model), now));
        let blocked = self.blocked(ep.index).load(Ordering::Relaxed);
        let blocked = if blocked == 0 && ep.exec.breaker_state() == BreakerState::Open {
            NEVER
        } else {
            blocked
        };
        let mut on_release = ep.exec.admission().available() == 0;
        if blocked == NEVER || refused_until_release(blocked, now) {
            on_release = true;
        } else {
            at = at.max(blocked);
        }
        if at > now {
            Return::At(at)
        } else if on_release {
            Return::OnRelease
        } else {
            Return::Now
        }
    }

    /// The strategy's choice among `mask` (not empty).
    #[inline]
    fn choose(&self, mask: u64, now: u64) -> usize {
        let n = self.members.len();
        match self.config.strategy {
            Strategy::Weighted => {
                let c = self.cursor.fetch_add(1, Ordering::Relaxed);
                let slot = self.schedule[(c % self.schedule.len() as u64) as usize] as usize;
                if mask & (1 << slot) != 0 {
                    return slot;
                }
                // the scheduled member cannot: a weighted draw among those that can
                let total: u64 = bits(mask).map(|i| u64::from(self.members[i].weight)).sum();
                let mut r = self.rand() % total.max(1);
                for i in bits(mask) {
                    let w = u64::from(self.members[i].weight);
                    if r < w {
                        return i;
                    }
                    r -= w;
                }
                mask.trailing_zeros() as usize
            }
            Strategy::LeastInFlight => {
                let start = (self.cursor.fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
                self.best_from(mask, start, |i| {
                    -f64::from(self.members[i].in_flight.load(Ordering::Relaxed))
                })
            }
            Strategy::LowestLatency => {
                let count = mask.count_ones();
                if count == 1 {
                    return mask.trailing_zeros() as usize;
                }
                // two distinct members from the two halves of one draw, each reduced by a
                // multiply-shift instead of a division (bias < count / 2³², nil for ≤ 64)
                let r = self.rand();
                let a = (((r & 0xFFFF_FFFF) * u64::from(count)) >> 32) as u32;
                let b = a + 1 + (((r >> 32) * u64::from(count - 1)) >> 32) as u32;
                let b = if b >= count { b - count } else { b };
                let (a, b) = (nth_bit(mask, a), nth_bit(mask, b));
                if self.members[b].cost() < self.members[a].cost() {
                    b
                } else {
                    a
                }
            }
            Strategy::LowestUsage => {
                let start = (self.cursor.fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
                self.best_from(mask, start, |i| {
                    self.keys[self.members[i].key].headroom(now)
                })
            }
            Strategy::FirstHealthy => mask.trailing_zeros() as usize,
            _ => {
                let start = (self.cursor.fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
                next_bit(mask, start)
            }
        }
    }

    /// The member of `mask` with the highest `score`, ties to the first from `start` on.
    #[inline]
    fn best_from(&self, mask: u64, start: usize, score: impl Fn(usize) -> f64) -> usize {
        let rotated = mask.rotate_right(start as u32);
        let n = self.members.len();
        let mut best = (f64::NEG_INFINITY, next_bit(mask, start));
        for j in bits(rotated) {
            let i = (j + start) % 64;
            if i >= n {
                continue;
            }
            let s = score(i);
            if s > best.0 {
                best = (s, i);
            }
        }
        best.1
    }

    /// One pick: the scan, the strategy, then the member's limits and its executor's grant.
    fn pick(&self, now: u64, tokens: u64, model: Option<&str>, tried: u64) -> Picked<'_> {
        let mut failed = 0u64;
        // an open breaker the pool knows nothing of is asked when it lets a probe through,
        // even while other members serve: a recovered endpoint must be probed to rejoin
        self.learn_breakers(now);
        // a retry: not back to an endpoint that failed while another is fit (only a wait)
        let avoid = self.avoid_failed(tried, now, tokens);
        let mut mask = self.eligible(now, tokens, model, false) & !avoid;
        for round in 0..=self.members.len() {
            if round > 0 {
                mask = self.eligible(now, tokens, model, false) & !failed & !avoid;
            }
            if mask == 0 {
                break;
            }
            let fresh = mask & !tried;
            let i = self.choose(if fresh != 0 { fresh } else { mask }, now);
            if let Some(lease) = self.lease(i, now, tokens, false) {
                return Picked::Lease(lease);
            }
            failed |= 1 << i;
        }
        if let Some(lease) = self.ejection_cap(now, tokens, model) {
            return Picked::Lease(lease);
        }
        let estimate_bound = self.has_tpm
            && tokens > 0
            && self.members.iter().any(|m| {
                let k = &self.keys[m.key];
                k.limits_ready_at(0, now) <= now && k.limits_ready_at(tokens, now) > now
            });
        // a member this retry avoids may be free for a waiter behind it: pass the baton on
        let avoided = avoid != 0 && self.eligible(now, tokens, model, false) & avoid != 0;
        // as may a member held only for this call's model (a model-scoped 429): a call for
        // another model goes there now
        let model_held =
            model.is_some() && self.eligible(now, tokens, None, false) & !avoid & !failed != 0;
        Picked::None {
            estimate_bound: estimate_bound || avoided || model_held,
        }
    }

    /// Reserves member `i`'s limits and takes its executor's grant.
    fn lease(&self, i: usize, now: u64, tokens: u64, past_open: bool) -> Option<Lease<'_>> {
        let m = &self.members[i];
        let key = &self.keys[m.key];
        let reserved = if key.tpm.is_some() { tokens } else { 0 };
        if self.has_limits && !key.reserve(reserved, now) {
            return None;
        }
        let ep = &self.endpoints[m.endpoint];
        match ep.exec.try_grant(past_open) {
            Ok(grant) => {
                m.picks.fetch_add(1, Ordering::Relaxed);
                m.in_flight.fetch_add(1, Ordering::Relaxed);
                Some(
                    Lease::new(&ep.exec, grant, i as u32)
                        .with_key(m.attempt_key.clone())
                        .with_model(m.model.as_deref())
                        .with_reserved(reserved),
                )
            }
            Err(refusal) => {
                if self.has_limits {
                    key.unreserve(reserved);
                }
                if let Refusal::CircuitOpen { retry_after } = refusal {
                    let until = retry_after.map_or_else(
                        || blocked_until_release(now),
                        |d| blocked_until(now, now.saturating_add(dur_ns(d))),
                    );
                    self.blocked(ep.index).store(until, Ordering::Release);
                }
                None
            }
        }
    }

    /// Members whose only hold is an open breaker.
    fn breaker_only(&self, now: u64, tokens: u64, model: Option<&str>) -> u64 {
        let mut mask = 0;
        for (i, m) in self.members.iter().enumerate() {
            let key = &self.keys[m.key];
            let ep = &self.endpoints[m.endpoint];
            if !ep.is_out()
                && key.held_until() <= now
                && key.model_hold(m.model.as_deref().or(model), now) <= now
                && key.limits_ready_at(tokens, now) <= now
                && ep.exec.admission().available() > 0
                && (ep.exec.breaker_state() == BreakerState::Open
                    || self.blocked(ep.index).load(Ordering::Relaxed) > now)
            {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// The ejection cap: when more than `max_ejection_percent` of the members have open
    /// breakers and nothing else can take the attempt, it goes through the open breaker that
    /// reopens soonest.
    fn ejection_cap(&self, now: u64, tokens: u64, model: Option<&str>) -> Option<Lease<'_>> {
        let n = self.members.len();
        let open = self
            .members
            .iter()
            .filter(|m| self.endpoints[m.endpoint].exec.breaker_state() == BreakerState::Open)
            .count();
        if open * 100 <= usize::from(self.config.max_ejection_percent) * n {
            return None;
        }
        let candidates = self.breaker_only(now, tokens, model);
        let i = bits(candidates).min_by_key(|&i| {
            let b = self
                .blocked(self.members[i].endpoint)
                .load(Ordering::Relaxed);
            // one that said nothing of when it reopens sorts last (as `NEVER` did)
            let b = if refused_until_release(b, now) {
                NEVER
            } else {
                b
            };
            (b, i)
        })?;
        let lease = self.lease(i, now, tokens, true)?;
        self.counters.overrides.fetch_add(1, Ordering::Relaxed);
        Some(lease)
    }

    /// The error when nothing returns before the deadline (`at`: ns), naming the earliest.
    fn unavailable(
        &self,
        now: u64,
        tokens: u64,
        model: Option<&str>,
        deadline_ns: Option<u64>,
    ) -> Option<Error> {
        let mut earliest: Option<(u64, usize)> = None;
        let mut never: Option<Never> = None;
        for i in 0..self.members.len() {
            match self.returns(i, now, tokens, model) {
                Return::Now | Return::OnRelease => return None,
                Return::At(at) => {
                    if earliest.is_none_or(|(e, _)| at < e) {
                        earliest = Some((at, i));
                    }
                }
                Return::Never(n) => never = never.or(Some(n)),
            }
        }
        let describe = |i: usize| {
            let m = &self.members[i];
            let alias = self.keys[m.key].alias.as_deref();
            let ep = &self.endpoints[m.endpoint].id;
            match alias {
                Some(a) => format!("member {i} (endpoint `{ep}`, key `{a}`)"),
                None => format!("member {i} (endpoint `{ep}`)"),
            }
        };
        match earliest {
            Some((at, i)) => {
                if deadline_ns.is_some_and(|d| at <= d) || deadline_ns.is_none() {
                    return None;
                }
                let after = Duration::from_nanos(at - now);
                Some(
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "no pool member can take the call before its deadline: the \
                             earliest, {}, returns in {:.3}s",
                            describe(i),
                            after.as_secs_f64()
                        ),
                    )
                    .with_retry_after(after),
                )
            }
            None => Some(match never {
                // too large for every member still there (not one removed or retired, whose
                // limit might have taken it)
                Some(Never::TooLarge)
                    if self.members.iter().all(|m| {
                        self.keys[m.key].removal(now).is_none()
                            && self.endpoints[m.endpoint].service() != RETIRED
                    }) =>
                {
                    Error::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "the request's estimate of {tokens} tokens exceeds what any pool \
                             member's tokens-per-minute limit admits at once"
                        ),
                    )
                }
                _ if self
                    .members
                    .iter()
                    .any(|m| self.endpoints[m.endpoint].service() == RETIRED) =>
                {
                    Error::new(
                        ErrorKind::Unavailable,
                        "no pool member can ever take the call: every member's key was \
                         removed or its endpoint retired (its server stopped or failed)",
                    )
                }
                _ => Error::new(
                    ErrorKind::Unavailable,
                    "no pool member can ever take the call: every key was removed \
                     (refused, or its quota exhausted) until the pool is reconfigured",
                ),
            }),
        }
    }

    /// The tokens an attempt reserves.
    fn estimate(&self, req: &Admit<'_>) -> u64 {
        if !self.has_tpm {
            return 0;
        }
        req.request.map_or(req.estimate, |r| {
            r.estimate_tokens(self.config.default_output_tokens)
                .max(req.estimate)
        })
    }

    /// When a waiter should look again (ns), if anything but a release can change its answer.
    fn next_return(&self, now: u64, tokens: u64, model: Option<&str>) -> (Option<u64>, bool) {
        let mut at: Option<u64> = None;
        let mut unhooked = false;
        for (i, m) in self.members.iter().enumerate() {
            if let Return::At(t) = self.returns(i, now, tokens, model) {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
            // an endpoint that may return with no release we hear of (its hook is another
            // owner's, or its breaker refused without a time) is looked at again a while later
            if !self.endpoints[m.endpoint].hooked
                || refused_until_release(self.blocked(m.endpoint).load(Ordering::Relaxed), now)
            {
                unhooked = true;
            }
        }
        (at, unhooked)
    }

    fn cool(&self, key: &KeyState, until: u64) {
        key.cool(until);
        self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
    }
}

/// The set bits of a mask, lowest first.
#[inline]
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// How soon a waiter whose timer fired while another held the baton looks again.
const DEFERRED_RECHECK: Duration = Duration::from_millis(50);

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER - 1)
}

/// When a rate-limit snapshot says the throttled key comes back.
/// When a 429's key may be tried again by its rate-limit headers: the exhausted windows'
/// latest reset, else (no window says `remaining: 0` — a request larger than the tokens left,
/// say) the latest reset of any window. Not the requests window's alone: when tokens were the
/// limit, that reset (often milliseconds) only met the 429 again.
fn reset_of(info: &RateLimitInfo) -> Option<Duration> {
    info.exhausted_until().or_else(|| {
        [
            info.requests,
            info.tokens,
            info.input_tokens,
            info.output_tokens,
        ]
        .iter()
        .filter_map(|w| w.reset_after)
        .max()
    })
}

/// A stream's member counted in flight until the stream ends ([`Pool::hold_stream`]).
struct StreamInFlight {
    inner: Arc<Inner>,
    member: usize,
}

impl Drop for StreamInFlight {
    fn drop(&mut self) {
        if let Some(m) = self.inner.members.get(self.member) {
            let _ = m
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

/// A lease waiting for the shared state's word (`MultiPool::confirm`): dropped with it (the
/// caller's future cancelled mid round trip), it is given back.
#[cfg(feature = "redis")]
struct Unconfirmed<'a> {
    pool: &'a MultiPool,
    lease: Option<Lease<'a>>,
}

#[cfg(feature = "redis")]
impl Drop for Unconfirmed<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.pool.give_back(lease);
        }
    }
}

/// Removes a waiter from the queue when dropped (granted, failed or cancelled).
struct Waiting<'a> {
    queue: &'a WaitQueue,
    slot: Arc<Slot>,
    clock: &'a Arc<dyn Clock>,
    pass: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queue.remove(&self.slot, self.clock.now(), self.pass);
    }
}

impl MultiPool {
    /// Picks a member now, or waits in the pool's priority queue until one can take the
    /// attempt; refuses at once when none can before the deadline.
    async fn admit_local<'a>(&'a self, req: Admit<'_>) -> Result<Lease<'a>> {
        let inner = &*self.inner;
        if req.deadline.is_spent() {
            // no time at all: a member free now would send past the deadline
            return Err(Error::new(
                ErrorKind::Timeout,
                "the call deadline had passed before a pool member was picked",
            )
            .with_reached_server(false));
        }
        let tokens = inner.estimate(&req);
        let model = req.request.and_then(Request::model);
        let tried = inner.tried_mask(req.tried);
        let now = inner.now_ns();
        if inner.signal.queue.len() == 0
            && let Picked::Lease(lease) = inner.pick(now, tokens, model, tried)
        {
            return Ok(lease);
        }
        // nothing now: fail at once when nothing returns before the deadline
        let deadline = req.deadline.at();
        let deadline_ns = deadline.map(|d| {
            let left = d.saturating_duration_since(tokio::time::Instant::now());
            now.saturating_add(dur_ns(left))
        });
        if let Some(e) = inner.unavailable(now, tokens, model, deadline_ns) {
            inner.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let Some(slot) = inner.signal.queue.push(
            req.ctx.priority(),
            inner.clock.now(),
            inner.config.max_queued,
        ) else {
            inner.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::QueueFull,
                format!(
                    "the pool's queue is full ({} waiting)",
                    inner.config.max_queued
                ),
            ));
        };
        inner.counters.waits.fetch_add(1, Ordering::Relaxed);
        let mut waiting = Waiting {
            queue: &inner.signal.queue,
            slot: slot.clone(),
            clock: &inner.clock,
            pass: false,
        };
        // let the queue's order decide who goes first
        inner.signal.queue.sweep(inner.clock.now());
        let mut timer = pin!(None::<tokio::time::Sleep>);
        let mut timer_at: Option<u64> = None;
        let mut deadline_timer = pin!(deadline.map(tokio::time::sleep_until));
        poll_fn(|cx| {
            slot.set_waker(cx.waker());
            let now = inner.now_ns();
            let mut baton = slot.woken.swap(false, Ordering::AcqRel);
            // the baton went to a waiter ahead: it passes it on when it is done (and when it
            // sat on an earlier one untried, this waiter looks again in a while)
            let mut deferred = slot.recheck.swap(false, Ordering::AcqRel) && !baton;
            let timer_fired = timer
                .as_mut()
                .as_pin_mut()
                .is_some_and(|t| t.poll(cx).is_ready());
            if timer_fired {
                // a fired `Sleep` stays ready: polled again it would fire again
                timer.set(None);
                timer_at = None;
            }
            if timer_fired && !baton {
                // something returned (a cooldown, a limit): every waiter's timer fires at
                // once, so the queue's order decides who tries first, not the timers' — a
                // sweep hands the baton to the first waiter by priority (maybe this one)
                inner.signal.queue.sweep(inner.clock.now());
                baton = slot.woken.swap(false, Ordering::AcqRel);
                deferred = !baton;
            }
            if baton || timer_fired {
                let picked = if baton {
                    inner.pick(now, tokens, model, tried)
                } else {
                    Picked::None {
                        estimate_bound: false,
                    }
                };
                match picked {
                    Picked::Lease(mut lease) => {
                        lease.grant.set_waited();
                        waiting.pass = true;
                        return Poll::Ready(Ok(lease));
                    }
                    Picked::None { estimate_bound } => {
                        if baton && estimate_bound {
                            inner.signal.queue.pass(inner.clock.now());
                        }
                    }
                }
                if let Some(e) = inner.unavailable(now, tokens, model, deadline_ns) {
                    inner.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                    // the baton goes on: the waiters behind may be refused too (a retired
                    // endpoint wakes one), or served (their model, their estimate)
                    waiting.pass |= baton;
                    return Poll::Ready(Err(e));
                }
                timer_at = None;
            }
            if let Some(d) = deadline_timer.as_mut().as_pin_mut()
                && d.poll(cx).is_ready()
            {
                waiting.pass |= baton;
                return Poll::Ready(Err(Error::new(
                    ErrorKind::Timeout,
                    "the call deadline passed while waiting for a pool member",
                )));
            }
            // one timer: until the earliest member returns (or a re-check of an endpoint
            // whose release hook is not ours)
            let (at, unhooked) = inner.next_return(now, tokens, model);
            let at = match (at, unhooked) {
                (a, true) => Some(a.unwrap_or(NEVER).min(now + dur_ns(UNHOOKED_RECHECK))),
                (a, false) => a,
            };
            // while a waiter ahead holds the baton, what is free now is its to take: it passes
            // the baton on when it is done; look again a while later in case it never does
            // (a waiter its owner stopped polling: a sweep then passes over it, see
            // `queue::STALLED_AFTER`), never in a loop
            let at = if deferred {
                // within 50 ms, or sooner when a member returns sooner (never at once: a
                // return already past would fire the timer in a loop)
                let recheck = now.saturating_add(dur_ns(DEFERRED_RECHECK));
                Some(match at {
                    Some(a) if a > now => a.min(recheck),
                    _ => recheck,
                })
            } else {
                at
            };
            if let Some(at) = at
                && timer_at != Some(at)
            {
                timer_at = Some(at);
                let sleep = tokio::time::sleep(Duration::from_nanos(at.saturating_sub(now)));
                timer.set(Some(sleep));
                if timer
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|t| t.poll(cx).is_ready())
                {
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Learns cooldowns (429), removals (401/403, quota), provider-announced limits, latency
    /// and real token usage. Constant time.
    fn report_local(&self, r: &AttemptReport<'_>) {
        let inner = &*self.inner;
        let Some(m) = inner.members.get(r.member as usize) else {
            return;
        };
        let _ = m
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let key = &inner.keys[m.key];
        let now = inner.now_ns();
        if !r.latency.is_zero() {
            m.observe(r.latency.as_nanos() as f64, now);
        }
        let mut freed = false;
        match r.result {
            Ok(usage) => {
                if let Some(u) = usage {
                    freed = key.settle_tokens(r.reserved, tokens_used(u), now);
                }
                if let Some(d) = r.rate_limits.and_then(RateLimitInfo::exhausted_until) {
                    key.limit(now.saturating_add(dur_ns(d)));
                }
            }
            Err(e) => {
                if let Some(tpm) = &key.tpm
                    && r.reserved > 0
                {
                    tpm.give_back(r.reserved);
                    freed = true;
                }
                match e.kind() {
                    ErrorKind::RateLimited => {
                        let d = e
                            .retry_after()
                            .or_else(|| e.rate_limit().and_then(reset_of))
                            .or_else(|| r.rate_limits.and_then(reset_of))
                            .unwrap_or(DEFAULT_COOLDOWN);
                        let until = now.saturating_add(dur_ns(d));
                        // the model the attempt sent (its member's, else the request's)
                        match r.model.filter(|_| e.is_model_scoped()) {
                            Some(model) => inner.hold_model(m, model, until, now),
                            None => inner.cool(key, until),
                        }
                    }
                    kind @ (ErrorKind::Auth | ErrorKind::QuotaExceeded) => {
                        // for good, unless the error itself says when to try again (its own
                        // Retry-After, never a rate-limit reset header riding on it: on a
                        // spent quota that is the request window's, often milliseconds, and
                        // the key was picked again at once)
                        let until = e
                            .retry_after()
                            .map_or(NEVER, |d| now.saturating_add(dur_ns(d)));
                        let reason = if kind == ErrorKind::Auth {
                            RemovalReason::Auth
                        } else {
                            RemovalReason::Quota
                        };
                        key.remove(reason, until);
                        inner.counters.removals.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
        if freed && inner.signal.queue.len() > 0 {
            inner.signal.queue.sweep(inner.clock.now());
        }
    }
}

// ---- the `Pool` seam, and state shared across processes (feature `redis`, crate::shared) ----

impl Pool for MultiPool {
    /// Picks a member now, or waits in the pool's priority queue until one can take the
    /// attempt; refuses at once when none can before the deadline. With shared state, the
    /// pick is confirmed on Redis too (see `MultiPool::with_shared`, feature `redis`).
    async fn admit<'a>(&'a self, req: Admit<'_>) -> Result<Lease<'a>> {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.inner.shared.get() {
            return self.admit_shared(shared, req).await;
        }
        self.admit_local(req).await
    }

    /// Keeps a streaming member counted in flight until its stream ends, so least-in-flight
    /// and lowest-latency picks see the streams it is still generating.
    fn hold_stream(&self, member: u32) -> Option<StreamHold> {
        let m = self.inner.members.get(member as usize)?;
        m.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(StreamHold::new(StreamInFlight {
            inner: Arc::clone(&self.inner),
            member: member as usize,
        }))
    }

    /// The stream counted in flight, and its token reservation settled with its usage when it
    /// ends (its opening was reported before any usage was known).
    fn hold_stream_reserved(&self, member: u32, reserved: u64) -> Option<StreamHold> {
        let hold = self.hold_stream(member)?;
        if !self.inner.has_tpm {
            return Some(hold);
        }
        let pool = self.clone();
        Some(hold.with_settle(move |u| pool.settle_tokens(member as usize, reserved, u)))
    }

    /// Learns cooldowns (429), removals (401/403, quota), provider-announced limits, latency
    /// and real token usage. Constant time (writes to shared state go off the caller's path).
    fn report(&self, r: &AttemptReport<'_>) {
        self.report_local(r);
        #[cfg(feature = "redis")]
        if let Some(shared) = self.inner.shared.get() {
            self.report_shared(shared, r);
        }
    }

    /// A member that did not fail in this call, on an endpoint none of the failed attempts
    /// failed on (a 429, 401/403 or spent quota fails its key, not its endpoint: another key
    /// there counts), fit to take an attempt (its endpoint in service, its breaker admitting,
    /// its key neither cooling nor removed; busy permits are only a wait): the next attempt
    /// can fail over there at once. Otherwise the retry policy's pause (and the failed
    /// endpoint's Retry-After) applies, since the next pick could only go back to an endpoint
    /// that just failed.
    fn can_fail_over(&self, tried: &[u32]) -> bool {
        let inner = &*self.inner;
        let now = inner.now_ns();
        inner.learn_breakers(now);
        let tried = inner.tried_mask(tried);
        tried != 0 && inner.fit_outside(tried | inner.failed_endpoints(tried, now), now, 0)
    }

    /// Always: a success that says its key's window is spent (`remaining: 0`) holds the
    /// key until the reset, limits configured or not.
    fn wants_meta(&self) -> bool {
        true
    }
}

fn render_shared(out: &mut String, pools: &[(&str, bool, u64, u64)]) {
    if pools.is_empty() {
        return;
    }
    let family =
        |out: &mut String, name: &str, kind: &str, help: &str, v: &dyn Fn(usize) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, (pool, ..)) in pools.iter().enumerate() {
                let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {}", v(i));
            }
        };
    family(
        out,
        "infermux_pool_shared_state_up",
        "gauge",
        "1 when the shared state (Redis) answers.",
        &|i| u64::from(pools[i].1),
    );
    family(
        out,
        "infermux_pool_shared_state_fallbacks_total",
        "counter",
        "Decisions taken on local state: the shared state was down or slow.",
        &|i| pools[i].2,
    );
    family(
        out,
        "infermux_pool_shared_state_ahead_total",
        "counter",
        "Decisions that took a reservation made ahead on the shared state (no round trip).",
        &|i| pools[i].3,
    );
}

impl MultiPool {
    #[cfg(not(feature = "redis"))]
    fn shared_up(&self) -> Option<bool> {
        None
    }
    #[cfg(not(feature = "redis"))]
    fn shared_fallbacks(&self) -> u64 {
        0
    }
    #[cfg(not(feature = "redis"))]
    fn shared_ahead(&self) -> u64 {
        0
    }
}

impl MultiPool {
    /// Settles a stream's token reservation with what it used: gives back what it did not
    /// use, charges what it used beyond (locally, and on the shared state when bound).
    fn settle_tokens(&self, member: usize, reserved: u64, u: &infermux_core::Usage) {
        let inner = &*self.inner;
        let Some(m) = inner.members.get(member) else {
            return;
        };
        let key = &inner.keys[m.key];
        if key.tpm.is_none() {
            return;
        }
        let used = tokens_used(u);
        if key.settle_tokens(reserved, used, inner.now_ns()) && inner.signal.queue.len() > 0 {
            inner.signal.queue.sweep(inner.clock.now());
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = inner.shared.get() {
            shared.settle_tokens(m.key, reserved, used);
        }
    }
}

impl MultiPool {
    /// Gives back a lease of this pool whose attempt never ran (from [`MultiPool::try_lease`],
    /// `MultiPool::try_lease_shared` (feature `redis`) or [`Pool::admit`]): its grant's drop releases the
    /// permit, and its place in flight and its local reservation are undone (its pick stays
    /// counted). A lease
    /// dropped without this or a [`Pool::report`] leaves its member counted in flight, which
    /// load-based picks then avoid.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux_core::EndpointConfig;
    /// use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
    /// use infermux_openai_compat::OpenAiCompat;
    /// use infermux_resilience::{AttemptExecutor, queue::QueueConfig};
    /// use std::sync::Arc;
    ///
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    /// let endpoint = Arc::new(AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap());
    /// let pool = MultiPool::new(vec![endpoint], vec![MemberSpec::new(0)], PoolConfig::new(Strategy::LeastInFlight)).unwrap();
    /// let lease = pool.try_lease(0, &[]).expect("an idle member");
    /// assert_eq!(pool.status()[0].in_flight, 1);
    /// // … decided not to send after all
    /// pool.give_back(lease);
    /// assert_eq!(pool.status()[0].in_flight, 0);
    /// # }
    /// ```
    pub fn give_back(&self, lease: Lease<'_>) {
        let inner = &*self.inner;
        let Some(m) = inner.members.get(lease.member as usize) else {
            return;
        };
        let reserved = lease.reserved;
        drop(lease);
        // (its pick stays counted: the picks are a counter, which never goes down)
        let _ = m
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if inner.has_limits {
            inner.keys[m.key].unreserve(reserved);
        }
    }
}

#[cfg(feature = "redis")]
impl MultiPool {
    fn shared_up(&self) -> Option<bool> {
        self.inner.shared.get().map(crate::shared::SharedPool::up)
    }
    fn shared_fallbacks(&self) -> u64 {
        self.inner
            .shared
            .get()
            .map_or(0, crate::shared::SharedPool::fallbacks)
    }
    fn shared_ahead(&self) -> u64 {
        self.inner
            .shared
            .get()
            .map_or(0, crate::shared::SharedPool::ahead_hits)
    }

    /// Binds the pool to `state`, shared with the pools of other processes under the same
    /// namespace and `pool_name` (feature `redis`; see [`SharedState`](crate::SharedState)):
    /// its keys' limits, cooldowns and removals are held together with theirs. Every process
    /// must state the same members' limits and burst share. A [`ErrorKind::Config`] error
    /// when the pool is already bound, or the pool name or a key alias holds braces (or the
    /// name whitespace).
    pub fn with_shared(self, state: crate::SharedState, pool_name: &str) -> Result<Self> {
        use crate::shared::{SharedPool, valid_name};
        let inner = &*self.inner;
        if !valid_name(pool_name) {
            return Err(config_error(
                "a shared pool's name must be non-empty, without braces or whitespace",
            ));
        }
        let mut names = Vec::with_capacity(inner.keys.len());
        for (k, key) in inner.keys.iter().enumerate() {
            names.push(match &key.alias {
                Some(a) if a.contains(['{', '}']) => {
                    return Err(config_error(format!(
                        "key alias `{a}` holds braces: it cannot name shared state"
                    )));
                }
                Some(a) => (a.to_string(), true),
                None => {
                    let e = inner
                        .members
                        .iter()
                        .find(|m| m.key == k)
                        .map_or(0, |m| m.endpoint);
                    (inner.endpoints[e].id.to_string(), false)
                }
            });
        }
        let bound = SharedPool::new(
            state,
            pool_name,
            inner.keys.iter().zip(&names).map(|(key, (name, alias))| {
                (name.as_str(), *alias, key.rpm.as_ref(), key.tpm.as_ref())
            }),
        );
        inner
            .shared
            .set(bound)
            .map_err(|_| config_error("the pool is already bound to shared state"))?;
        Ok(self)
    }

    /// [`MultiPool::try_lease`] confirmed on the shared state (one round trip): a lease now,
    /// or `None` (a refusal by the shared state holds the key locally for as long as it
    /// said). `try_lease` itself decides on local state alone.
    pub async fn try_lease_shared(&self, estimate: u64, tried: &[u32]) -> Option<Lease<'_>> {
        let lease = self.try_lease(estimate, tried)?;
        match self.inner.shared.get() {
            Some(shared) => self.confirm(shared, lease).await,
            None => Some(lease),
        }
    }

    /// Confirms a local lease on the shared state: the lease, or `None` (given back, its key
    /// held locally for as long as the shared state said). Cancelled during the round trip,
    /// the lease goes back as a refused one does: nothing stays counted in flight or
    /// reserved locally.
    async fn confirm<'a>(
        &'a self,
        shared: &crate::shared::SharedPool,
        lease: Lease<'a>,
    ) -> Option<Lease<'a>> {
        use crate::shared::Decision;
        let inner = &*self.inner;
        let m = &inner.members[lease.member as usize];
        let reserved = lease.reserved;
        let mut pending = Unconfirmed {
            pool: self,
            lease: Some(lease),
        };
        let hold = shared.reserve(m.key, reserved).await;
        let lease = pending.lease.take()?;
        if let Decision::Reserved | Decision::Fallback = hold {
            return Some(lease);
        }
        self.give_back(lease);
        let key = &inner.keys[m.key];
        let now = inner.now_ns();
        let until = |d: Duration| now.saturating_add(dur_ns(d)).max(now + 1);
        match (hold, &key.tpm) {
            (Decision::Cooling(d), _) => key.cool(until(d)),
            // the tokens were the limit: the local limiter learns how far ahead the shared
            // one is (a request of this size fits in `d`, a smaller one may sooner)
            (Decision::Limited(d, true), Some(tpm)) => tpm.not_before(reserved, until(d)),
            (Decision::Limited(d, _), _) => key.limit(until(d)),
            (Decision::Removed(reason, d), _) => key.remove(reason, d.map_or(NEVER, until)),
            (Decision::Reserved | Decision::Fallback, _) => {}
        }
        None
    }

    /// The local pick, confirmed on the shared state; a refusal there holds the key locally
    /// for as long as Redis said and the pool picks again.
    async fn admit_shared<'a>(
        &'a self,
        shared: &crate::shared::SharedPool,
        req: Admit<'_>,
    ) -> Result<Lease<'a>> {
        loop {
            let lease = self.admit_local(req).await?;
            if let Some(mut lease) = self.confirm(shared, lease).await {
                // the round trip was a wait: the attempt starts after it, and its deadline is
                // read then (the call's, fixed on first read, and the transport's agree; else
                // the transport's timer fires the round trip's time before the caller's
                // deadline, and the breaker counts it as the endpoint's timeout)
                lease.grant.set_waited();
                return Ok(lease);
            }
        }
    }

    /// Tells the shared state what [`MultiPool::report_local`] learnt: cooldowns, removals
    /// and token usage (off the caller's path).
    fn report_shared(&self, shared: &crate::shared::SharedPool, r: &AttemptReport<'_>) {
        let inner = &*self.inner;
        let Some(m) = inner.members.get(r.member as usize) else {
            return;
        };
        let key = &inner.keys[m.key];
        let now = inner.now_ns();
        match r.result {
            Ok(usage) => {
                if let (Some(_), Some(u)) = (&key.tpm, usage) {
                    shared.settle_tokens(m.key, r.reserved, tokens_used(u));
                }
            }
            Err(e) => {
                if key.tpm.is_some() {
                    shared.adjust_tokens(m.key, r.reserved, false);
                }
                match e.kind() {
                    // a hold of one model stays in this process (the key is not cooling)
                    ErrorKind::RateLimited if !(e.is_model_scoped() && r.model.is_some()) => {
                        let until = key.cool_until.load(Ordering::Acquire);
                        if until > now {
                            shared.cool(m.key, Duration::from_nanos(until - now));
                        }
                    }
                    ErrorKind::Auth | ErrorKind::QuotaExceeded => {
                        if let Some((reason, until)) = key.removal(now) {
                            let span = (until != NEVER).then(|| Duration::from_nanos(until - now));
                            shared.remove(m.key, reason, span);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
