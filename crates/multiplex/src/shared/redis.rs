//! [`SharedState`]: the Redis (or Valkey) connection the pools of several processes share,
//! guarded by a timeout and a breaker, and the Lua scripts that decide on it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script};
use infermux_core::{Error, ErrorKind, Result};

/// The script of one decision (see `reserve.lua`).
const RESERVE: &str = include_str!("reserve.lua");
/// The script of a TPM give-back or extra charge (see `adjust.lua`).
const ADJUST: &str = include_str!("adjust.lua");
/// The script of a cooldown or removal (see `hold.lua`).
const HOLD: &str = include_str!("hold.lua");

/// State shared by the pools of several processes through one Redis (or Valkey) server, so
/// they act as one client: per-key RPM/TPM limiters, cooldowns and removals (feature
/// `redis`). Bind it to a pool with [`MultiPool::with_shared`](crate::MultiPool::with_shared).
///
/// Each admission runs one script (one `EVALSHA`, one round trip) that checks the key's
/// shared removal and cooldown and reserves on its shared limiters, on Redis's clock. Each
/// Redis call is bounded by [`SharedState::with_timeout`] (default 50 ms; connecting, by the
/// longer of 1 s and that, and it goes on when the call that started it gives up); the first failure
/// marks Redis down (one `warn` log), and until a probe every
/// [`SharedState::with_retry_interval`] (default 1 s) succeeds again (one `warn` log), pools
/// decide on their local state alone (which they keep up to date all along), counting
/// [`PoolSnapshot::shared_state_fallbacks`](crate::PoolSnapshot::shared_state_fallbacks).
///
/// Writes (cooldowns, removals, token give-backs) run in a spawned task; while Redis is down
/// they are dropped (each process keeps them in its local state).
///
/// Cheap to clone (clones share the connection). Redis keys name key aliases only, never a
/// key. Its `Debug` shows the namespace, never the URL (which may carry a password).
///
/// ```
/// use infermux_multiplex::SharedState;
/// use std::time::Duration;
/// let s = SharedState::redis("redis://127.0.0.1:6379", "prod").unwrap()
///     .with_timeout(Duration::from_millis(20));
/// assert!(!format!("{s:?}").contains("6379"));
/// assert!(SharedState::redis("not a url", "prod").is_err());
/// assert!(SharedState::redis("redis://127.0.0.1", "a{b}").is_err());
/// ```
#[derive(Clone)]
pub struct SharedState {
    conn: Arc<Conn>,
    namespace: Arc<str>,
    pub(crate) timeout: Duration,
    retry_interval: Duration,
    pub(crate) removal_ttl: Duration,
    /// How long a reservation made ahead for a key's next decision stays usable (`None`: no
    /// reservations ahead).
    pub(crate) prefetch: Option<Duration>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// The connection and its health.
struct Conn {
    client: Client,
    /// The open connection (`None`: connect on the next call).
    current: Mutex<Option<MultiplexedConnection>>,
    /// Held by the one connection attempt running (in a task of its own).
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Why the last connection attempt failed (for the calls that waited on it).
    failed: Mutex<Option<RedisError>>,
    reserve: Script,
    adjust: Script,
    hold: Script,
    health: Health,
}

/// A breaker of one: down at the first failure, a probe once every retry interval.
struct Health {
    up: AtomicBool,
    /// While down: no call before this (ms since `origin`).
    retry_at: AtomicU64,
    /// A probe is running.
    probing: AtomicBool,
    origin: Instant,
}

/// A word with Redis that may be had now, or not (down: decide locally).
pub(crate) struct Permit<'a> {
    health: &'a Health,
    /// Redis is down and this call probes it, holding the probe flag (else it is up, or
    /// this is an explicit connect while another call probes).
    probe: bool,
    /// How long to wait before the next probe when this one ends unanswered.
    retry_interval: Duration,
    /// Its outcome was recorded ([`SharedState::settle`]).
    settled: bool,
}

impl Drop for Permit<'_> {
    /// A probe ends with its call, settled or not: one cancelled mid-call (its caller gave
    /// up during the round trip) lets the next call probe after the retry interval, instead
    /// of keeping Redis counted down for good.
    fn drop(&mut self) {
        if self.probe {
            if !self.settled {
                self.health.retry_later(self.retry_interval);
            }
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

impl Conn {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Health {
    fn ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn permit(&self, retry_interval: Duration) -> Option<Permit<'_>> {
        let permit = |probe| Permit {
            health: self,
            probe,
            retry_interval,
            settled: false,
        };
        if self.up.load(Ordering::Acquire) {
            return Some(permit(false));
        }
        if self.ms() >= self.retry_at.load(Ordering::Acquire)
            && !self.probing.swap(true, Ordering::AcqRel)
        {
            return Some(permit(true));
        }
        None
    }

    /// No call before `retry_interval` from now.
    fn retry_later(&self, retry_interval: Duration) {
        let retry = u64::try_from(retry_interval.as_millis()).unwrap_or(u64::MAX);
        self.retry_at
            .store(self.ms().saturating_add(retry), Ordering::Release);
    }

    fn success(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                target: "infermux::multiplex",
                "shared state (redis) is back up: pools decide on it again"
            );
        }
    }

    fn failure(&self, retry_interval: Duration, what: &str) {
        self.retry_later(retry_interval);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                target: "infermux::multiplex",
                error = what,
                "shared state (redis) is down: pools decide on their local state until it \
                 answers again"
            );
        }
    }
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, msg.into())
}

/// Whether `name` may go into a Redis key name: not empty, no braces (the keys' hash tag),
/// no whitespace.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['{', '}']) && !name.chars().any(char::is_whitespace)
}

/// How long a reservation's round trip may answer after its caller stopped waiting, at least
/// and at most (ten times the call timeout between): a reservation answered later stays
/// taken (the limiter's state forgets it within its window).
const LATE_MIN: Duration = Duration::from_secs(5);
const LATE_MAX: Duration = Duration::from_secs(60);

/// What becomes of a reservation Redis makes after its call timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Late {
    /// It stands: the caller went on with its request (decided locally), which spends it.
    Keep,
    /// It is given back: nothing takes it (a reservation made ahead).
    GiveBack,
}

/// One reservation's request and tokens, to give back.
#[derive(Clone)]
struct Reservation {
    state: SharedState,
    keys: Arc<[String; 4]>,
    /// Refills a minute (0: no such limit).
    rpm: u64,
    tpm: u64,
    tokens: u64,
}

impl Reservation {
    fn give_back(&self) {
        if self.rpm > 0 {
            self.state.adjust(self.keys[0].clone(), self.rpm, 1, false);
        }
        if self.tpm > 0 && self.tokens > 0 {
            self.state
                .adjust(self.keys[1].clone(), self.tpm, self.tokens, false);
        }
    }
}

/// The caller's end of a reservation's round trip. Dropped before it took the answer (the
/// caller's future dropped, or a timeout that gives back), it closes the channel and gives
/// back a reservation already delivered; one delivered later is the task's to give back.
struct Waiting {
    rx: tokio::sync::oneshot::Receiver<::redis::RedisResult<Vec<i64>>>,
    /// What to give back (`None`: the answer was taken, or a late one stands).
    spend: Option<Reservation>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(spend) = self.spend.take() else {
            return;
        };
        self.rx.close();
        if let Ok(Ok(v)) = self.rx.try_recv()
            && matches!(answer(&v), Answer::Reserved)
        {
            spend.give_back();
        }
    }
}

/// The reserve script's answer (see `reserve.lua`).
fn answer(v: &[i64]) -> Answer {
    let us = |i: usize| Duration::from_micros(v.get(i).copied().unwrap_or(0).max(0) as u64);
    match v.first().copied() {
        Some(1) => Answer::Cooling(us(1)),
        Some(2) => {
            let reason = v.get(1).copied().unwrap_or(1).clamp(1, 2) as u8;
            let forever = v.get(2).copied().unwrap_or(-1) < 0;
            Answer::Removed(reason, (!forever).then(|| us(2)))
        }
        Some(3) => Answer::Limited(us(1), v.get(2).copied() == Some(2)),
        _ => Answer::Reserved,
    }
}

/// What one reserve script answered.
pub(crate) enum Answer {
    /// Reserved.
    Reserved,
    /// The key cools down for this long.
    Cooling(Duration),
    /// The key is removed (`None`: for good), with the reason's code (1 auth, 2 quota).
    Removed(u8, Option<Duration>),
    /// The key's shared limits let the next request through in this long; whether its
    /// tokens (not its request count) were the limit.
    Limited(Duration, bool),
}

impl SharedState {
    /// State shared through the Redis (or Valkey) server at `url` (`redis://host:port/db`,
    /// no TLS), its keys under `infermux:{<namespace>:…}`. Connects lazily (at the first
    /// admission, or [`SharedState::connect`]). A [`ErrorKind::Config`] error when the URL
    /// does not parse or the namespace is empty or holds braces or whitespace.
    pub fn redis(url: &str, namespace: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| {
            config_error(format!(
                "the shared state's Redis URL does not parse: {}",
                e.category()
            ))
        })?;
        if !valid_name(namespace) {
            return Err(config_error(
                "the shared state's namespace must be non-empty, without braces or whitespace",
            ));
        }
        Ok(SharedState {
            conn: Arc::new(Conn {
                client,
                current: Mutex::new(None),
                connecting: Arc::new(tokio::sync::Mutex::new(())),
                failed: Mutex::new(None),
                reserve: Script::new(RESERVE),
                adjust: Script::new(ADJUST),
                hold: Script::new(HOLD),
                health: Health {
                    up: AtomicBool::new(true),
                    retry_at: AtomicU64::new(0),
                    probing: AtomicBool::new(false),
                    origin: Instant::now(),
                },
            }),
            namespace: Arc::from(namespace),
            timeout: Duration::from_millis(50),
            retry_interval: Duration::from_secs(1),
            removal_ttl: Duration::from_secs(3600),
            prefetch: None,
        })
    }

    /// Bounds each Redis call (default 50 ms; zero is taken as 1 ms): past it the pool
    /// decides locally and Redis counts as down.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long Redis counts as down after a failure before one call probes it again
    /// (default 1 s).
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// How long Redis keeps a removal "for good" (401/403; default 1 h), so processes started
    /// later learn of it too. A process that sees it treats the key as removed until it is
    /// reconfigured; delete the key in Redis to readmit it sooner. At most 100 years (a longer
    /// one, `Duration::MAX` for "forever", is that much: Redis refuses an expiry past what it
    /// holds, and every removal then failed and took the shared state down).
    pub fn with_removal_ttl(mut self, ttl: Duration) -> Self {
        const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        self.removal_ttl = ttl.clamp(Duration::from_millis(1), MAX);
        self
    }

    /// Reserves one request ahead per key (opt-in; off by default): after a decision on a
    /// key succeeds, the next one is reserved on Redis off the caller's path, and the next
    /// decision on that key takes it at once, without a round trip, if it is younger than
    /// `ttl` and reserved at least the tokens it needs (the surplus is given back). Every
    /// admitted request is still a reservation on the shared limiters, so the processes
    /// together never pass a limit.
    ///
    /// The price is staleness: a cooldown or removal that another process records after the
    /// reservation was made is not seen by the one request that takes it (at most one a key
    /// a process, within `ttl`). This process's own 429s, 401s and the shared state's
    /// refusals discard the reservation (given back), as does its own late answer (after the
    /// timeout). A reservation nobody takes within
    /// `ttl` is given back at the next decision on its key. A `ttl` of zero turns it off.
    ///
    /// ```
    /// use infermux_multiplex::SharedState;
    /// use std::time::Duration;
    /// let s = SharedState::redis("redis://127.0.0.1:6379", "prod").unwrap()
    ///     .with_prefetch(Duration::from_millis(100));
    /// assert_eq!(s.prefetch(), Some(Duration::from_millis(100)));
    /// ```
    pub fn with_prefetch(mut self, ttl: Duration) -> Self {
        self.prefetch = (!ttl.is_zero()).then_some(ttl);
        self
    }

    /// How long a reservation made ahead stays usable (`None`: none are made).
    pub fn prefetch(&self) -> Option<Duration> {
        self.prefetch
    }

    /// The namespace of its keys.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether Redis answered the last call (`true` before the first).
    pub fn is_up(&self) -> bool {
        self.conn.health.up.load(Ordering::Acquire)
    }

    /// Connects now (and loads the scripts) rather than at the first admission; whether
    /// Redis answered within the timeout (when not, it counts as down).
    pub async fn connect(&self) -> bool {
        // an explicit connect probes, unless another call is probing now (never clear its flag)
        let permit = Permit {
            health: &self.conn.health,
            probe: !self.conn.health.probing.swap(true, Ordering::AcqRel),
            retry_interval: self.retry_interval,
            settled: false,
        };
        let conn = &self.conn;
        let r = tokio::time::timeout(self.timeout, async {
            let mut c = self.connection().await?;
            conn.reserve.load_async(&mut c).await?;
            conn.adjust.load_async(&mut c).await?;
            conn.hold.load_async(&mut c).await?;
            Ok::<_, ::redis::RedisError>(())
        })
        .await;
        self.settle(permit, r).is_some()
    }

    /// One `PING` on the connection the decisions use (guarded like them): its round-trip
    /// time, `None` when Redis is down or did not answer in time. For health checks and the
    /// benchmark that compares a decision with one round trip.
    pub async fn ping(&self) -> Option<Duration> {
        let permit = self.conn.health.permit(self.retry_interval)?;
        let r = tokio::time::timeout(self.timeout, async {
            let mut c = self.connection().await?;
            let start = Instant::now();
            ::redis::cmd("PING").query_async::<String>(&mut c).await?;
            Ok(start.elapsed())
        })
        .await;
        self.settle(permit, r)
    }

    /// The open connection, or a new one. The attempt runs in a task of its own, bounded by
    /// the longer of 1 s and the call timeout rather than by the call that started it: a call
    /// that gives up waiting leaves it running, so a Redis further away than one call's
    /// timeout still connects, and a later call finds the connection. One attempt at a time;
    /// calls that find one running wait for it.
    async fn connection(&self) -> ::redis::RedisResult<MultiplexedConnection> {
        let conn = &self.conn;
        if let Some(c) = conn.current() {
            return Ok(c);
        }
        if let Ok(one) = conn.connecting.clone().try_lock_owned() {
            if let Some(c) = conn.current() {
                return Ok(c);
            }
            let task = conn.clone();
            // every call bounds its own wait; the client's own response timeout (500 ms by
            // default) would drop a reservation's late answer, which is given back
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))))
                .set_response_timeout(None);
            tokio::spawn(async move {
                let r = task
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await;
                let (current, failed) = match r {
                    Ok(c) => (Some(c), None),
                    Err(e) => (None, Some(e)),
                };
                *task.failed.lock().unwrap_or_else(|e| e.into_inner()) = failed;
                *task.current.lock().unwrap_or_else(|e| e.into_inner()) = current;
                drop(one);
            });
        }
        drop(conn.connecting.lock().await);
        conn.current().ok_or_else(|| {
            conn.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| {
                    RedisError::from((::redis::ErrorKind::Io, "the connection was dropped"))
                })
        })
    }

    /// Records the outcome of a guarded call.
    fn settle<T>(
        &self,
        mut permit: Permit<'_>,
        r: std::result::Result<::redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        let what = match r {
            Ok(Ok(v)) => {
                self.conn.health.success();
                permit.settled = true;
                drop(permit);
                return Some(v);
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    *self.conn.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                e.category().to_owned()
            }
            Err(_) => {
                // a probe unanswered too: the connection may be one the network no longer
                // carries (a failover behind the same name, a dropped NAT flow), which no
                // error will ever close: the next probe connects afresh
                if permit.probe {
                    *self.conn.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                format!("no answer within {:?}", self.timeout)
            }
        };
        self.conn.health.failure(self.retry_interval, &what);
        permit.settled = true;
        drop(permit);
        None
    }

    /// One decision on one key: `None` when Redis is down or did not answer in time.
    ///
    /// The round trip runs in a task of its own, so a reservation Redis makes after this
    /// call stopped waiting is not lost: when the caller's future is dropped, it is given
    /// back; when the call times out, `late` says whether it stands (the caller goes on with
    /// its request: it is spent) or is given back (nothing will take it).
    pub(crate) async fn reserve(
        &self,
        keys: &Arc<[String; 4]>,
        rpm: (u64, u64),
        tpm: (u64, u64),
        tokens: u64,
        late: Late,
    ) -> Option<Answer> {
        let permit = self.conn.health.permit(self.retry_interval)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spend = Reservation {
            state: self.clone(),
            keys: keys.clone(),
            rpm: rpm.1,
            tpm: tpm.1,
            tokens,
        };
        let fate = Arc::new(AtomicBool::new(false));
        let (task, kept) = (spend.clone(), fate.clone());
        // answered after the caller gave up: past this, nothing is known (nothing is given back)
        // (never shorter than the caller's own wait)
        let late_bound = self
            .timeout
            .saturating_mul(10)
            .clamp(LATE_MIN, LATE_MAX)
            .max(self.timeout);
        tokio::spawn(async move {
            let s = &task.state;
            let r = tokio::time::timeout(late_bound, async {
                let mut c = s.connection().await?;
                s.conn
                    .reserve
                    .key(&task.keys[0])
                    .key(&task.keys[1])
                    .key(&task.keys[2])
                    .key(&task.keys[3])
                    .arg(rpm.0)
                    .arg(rpm.1)
                    .arg(tpm.0)
                    .arg(tpm.1)
                    .arg(tokens)
                    .invoke_async::<Vec<i64>>(&mut c)
                    .await
            })
            .await;
            let Ok(r) = r else { return };
            // the caller is gone (its future dropped, or it timed out): a reservation it
            // did not keep goes back
            if let Err(Ok(v)) = tx.send(r)
                && matches!(answer(&v), Answer::Reserved)
                && !kept.load(Ordering::Acquire)
            {
                task.give_back();
            }
        });
        let mut waiting = Waiting {
            rx,
            spend: Some(spend),
        };
        let r = match tokio::time::timeout(self.timeout, &mut waiting.rx).await {
            Ok(Ok(r)) => {
                waiting.spend = None;
                Ok(r)
            }
            Ok(Err(_)) => {
                waiting.spend = None;
                Ok(Err(RedisError::from((
                    ::redis::ErrorKind::Io,
                    "the reservation's task ended unanswered",
                ))))
            }
            Err(elapsed) => {
                if let Late::Keep = late {
                    // before the receiver closes (the task reads it on a failed send)
                    fate.store(true, Ordering::Release);
                    waiting.spend = None;
                }
                Err(elapsed)
            }
        };
        drop(waiting);
        let v = self.settle(permit, r)?;
        Some(answer(&v))
    }

    /// Gives back (`charge` false) or charges `tokens` (or requests) on a limiter refilling
    /// `per_minute`; off the caller's path.
    pub(crate) fn adjust(&self, key: String, per_minute: u64, tokens: u64, charge: bool) {
        self.spawn(move |s| async move {
            let Some(permit) = s.conn.health.permit(s.retry_interval) else {
                return;
            };
            let r = tokio::time::timeout(s.timeout, async {
                let mut c = s.connection().await?;
                s.conn
                    .adjust
                    .key(&key)
                    .arg(per_minute)
                    .arg(tokens)
                    .arg(if charge { 1 } else { -1 })
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
            s.settle(permit, r);
        });
    }

    /// Records a cooldown (`reason` 0) or removal (1 auth, 2 quota) of `span` (`None`: for
    /// good) on `key`; off the caller's path.
    pub(crate) fn hold(&self, key: String, reason: u8, span: Option<Duration>) {
        self.spawn(move |s| async move {
            let Some(permit) = s.conn.health.permit(s.retry_interval) else {
                return;
            };
            let span = span.map_or(-1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            let ttl = u64::try_from(s.removal_ttl.as_millis()).unwrap_or(u64::MAX);
            let r = tokio::time::timeout(s.timeout, async {
                let mut c = s.connection().await?;
                s.conn
                    .hold
                    .key(&key)
                    .arg(if reason == 0 { "cool" } else { "remove" })
                    .arg(span)
                    .arg(reason)
                    .arg(ttl)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
            s.settle(permit, r);
        });
    }

    /// Runs `f` on the current tokio runtime; whether it did (nothing runs outside one).
    pub(crate) fn spawn<F, Fut>(&self, f: F) -> bool
    where
        F: FnOnce(SharedState) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(f(self.clone()));
                true
            }
            Err(_) => false,
        }
    }
}
