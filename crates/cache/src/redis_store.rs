//! [`RedisStore`]: the cache's entries in Redis (feature `redis`), so several processes share
//! one cache and entries survive a restart.
//!
//! # Keys
//! - `infermux:cache:{<prefix>}:x:<key>`: one exact answer (JSON), expiring after the TTL.
//! - `infermux:cache:{<prefix>}:s:<namespace>`: a semantic namespace, a sorted set of records
//!   (text, vector, answer, time) scored by their number within the namespace, so each
//!   process's index catches up with the records it has not seen (`ZRANGEBYSCORE (last
//!   +inf`); trimmed to the namespace's size bound and expiring with its last write. A record
//!   is numbered and added in one script (`push.lua`), so no reader sees a later record
//!   before an earlier one.
//! - `infermux:cache:{<prefix>}:s:<namespace>:generation`: the namespace's generation, made
//!   (from the server's time and the counter `infermux:cache:{<prefix>}:seq`) whenever the
//!   namespace is made anew: after a flush, a restart without persistence, an expiry or an
//!   eviction. A reader that last read another generation reads the namespace again from the
//!   start (`since.lua`), so records written after Redis lost its keys reach every process.
//!
//! Every call is bounded by a timeout (default 50 ms); a failure or timeout is a miss (or a
//! store not made) and is counted, never an error to the caller. Connecting is bounded by the
//! longer of 1 s and that timeout, and goes on when the call that started it gives up.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Script};
use infermux_core::{Error, ErrorKind, Result};

/// Tags of the connections made (0 is none).
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
/// A Redis (or Valkey) server holding the cache's entries (feature `redis`).
///
/// Cheap to clone (clones share the connection). Its `Debug` shows the prefix, never the URL
/// (which may carry a password).
///
/// ```
/// use infermux_cache::RedisStore;
/// let s = RedisStore::new("redis://127.0.0.1:6379", "prod").unwrap();
/// assert!(!format!("{s:?}").contains("6379"));
/// assert!(RedisStore::new("not a url", "prod").is_err());
/// assert!(RedisStore::new("redis://127.0.0.1", "a{b}").is_err());
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    /// The open connection and its tag (each connection made gets a new one), so a call that
    /// failed on an older connection does not drop a newer one.
    current: Arc<Mutex<Option<(u64, MultiplexedConnection)>>>,
    /// Held by the one connection attempt running (in a task of its own).
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Why the last connection attempt failed (for the calls that waited on it).
    failed: Arc<Mutex<Option<RedisError>>>,
    prefix: Arc<str>,
    timeout: Duration,
    scripts: Arc<Scripts>,
    /// Calls unanswered within the timeout since the last answer.
    timeouts_in_a_row: Arc<AtomicU32>,
    /// When the first of them timed out (ms since `origin`; 0: none).
    first_timeout_ms: Arc<AtomicU64>,
    origin: Instant,
}

/// Unanswered calls in a row, over at least [`SILENT_BEFORE_RECONNECT`], after which the
/// connection is made again (a stall of a moment, several calls in flight, is not enough).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;
/// How long Redis has left calls unanswered before the connection is made again.
const SILENT_BEFORE_RECONNECT: Duration = Duration::from_secs(1);

/// The semantic namespaces' scripts (`push.lua`, `since.lua`).
struct Scripts {
    push: Script,
    since: Script,
    replace: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The server at `url` (`redis://host:port/db`), keys under `infermux:cache:{prefix}:`.
    /// Connects lazily. A [`ErrorKind::Config`] error when the URL does not parse or the
    /// prefix is empty or holds braces or whitespace.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the cache's Redis URL does not parse: {}", e.category()),
            )
        })?;
        if prefix.is_empty()
            || prefix.contains(['{', '}'])
            || prefix.chars().any(char::is_whitespace)
        {
            return Err(Error::new(
                ErrorKind::Config,
                "the cache's Redis prefix must be non-empty, without braces or whitespace",
            ));
        }
        Ok(RedisStore {
            client,
            current: Arc::new(Mutex::new(None)),
            connecting: Arc::new(tokio::sync::Mutex::new(())),
            failed: Arc::new(Mutex::new(None)),
            prefix: Arc::from(prefix),
            timeout: Duration::from_millis(50),
            scripts: Arc::new(Scripts {
                push: Script::new(include_str!("push.lua")),
                since: Script::new(include_str!("since.lua")),
                replace: Script::new(include_str!("replace.lua")),
            }),
            timeouts_in_a_row: Arc::default(),
            first_timeout_ms: Arc::default(),
            origin: Instant::now(),
        })
    }

    /// Bounds each Redis call (default 50 ms; zero is taken as 1 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    pub(crate) fn exact_key(&self, key: &str) -> String {
        format!("infermux:cache:{{{}}}:x:{key}", self.prefix)
    }

    pub(crate) fn semantic_key(&self, ns: &str) -> String {
        format!("infermux:cache:{{{}}}:s:{ns}", self.prefix)
    }

    fn seq_key(&self) -> String {
        format!("infermux:cache:{{{}}}:seq", self.prefix)
    }

    /// The open connection, or a new one. The attempt runs in a task of its own, bounded by
    /// the longer of 1 s and the call timeout rather than by the call that started it: a
    /// call that gives up waiting leaves it running, so a Redis further away than one call's
    /// timeout still connects, and a later call finds the connection. One attempt at a time;
    /// calls that find one running wait for it.
    async fn connection(&self) -> ::redis::RedisResult<(u64, MultiplexedConnection)> {
        let current = || {
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        if let Some(c) = current() {
            return Ok(c);
        }
        if let Ok(one) = self.connecting.clone().try_lock_owned() {
            if let Some(c) = current() {
                return Ok(c);
            }
            let (client, slot, failed) = (
                self.client.clone(),
                self.current.clone(),
                self.failed.clone(),
            );
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))));
            tokio::spawn(async move {
                let r = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await;
                let (c, e) = match r {
                    Ok(c) => (Some((NEXT_TAG.fetch_add(1, Ordering::Relaxed), c)), None),
                    Err(e) => (None, Some(e)),
                };
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = e;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = c;
                drop(one);
            });
        }
        drop(self.connecting.lock().await);
        current().ok_or_else(|| {
            self.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| {
                    RedisError::from((::redis::ErrorKind::Io, "the connection was dropped"))
                })
        })
    }

    /// Runs `op` on the connection within the timeout; `None` on any failure (the connection
    /// is dropped to be made again after an I/O error).
    async fn guarded<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        // the tag of the connection the call used (0: none yet)
        let used = AtomicU64::new(0);
        let r = tokio::time::timeout(self.timeout, async {
            let (tag, c) = self.connection().await?;
            used.store(tag, Ordering::Relaxed);
            op(c).await
        })
        .await;
        // drops the connection the call used, not one made since by another call
        let drop_used = || {
            let tag = used.load(Ordering::Relaxed);
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if tag != 0 && cur.as_ref().is_some_and(|(t, _)| *t == tag) {
                *cur = None;
            }
        };
        match r {
            Ok(Ok(v)) => {
                self.timeouts_in_a_row.store(0, Ordering::Release);
                self.first_timeout_ms.store(0, Ordering::Release);
                Some(v)
            }
            Ok(Err(e)) => {
                if drops_connection(&e) {
                    drop_used();
                }
                tracing::debug!(target: "infermux::cache", error = e.category(), "redis call failed");
                None
            }
            Err(_) => {
                // unanswered calls in a row: the connection may be one the network no longer
                // carries (a failover behind the same name, a dropped NAT flow), which no
                // error will ever close: the next call connects afresh
                // (ms since the origin, at least 1: 0 means no timeout in the row yet)
                let now = u64::try_from(self.origin.elapsed().as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self.first_timeout_ms.compare_exchange(
                    0,
                    now,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                let in_a_row = self.timeouts_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
                let since = now.saturating_sub(self.first_timeout_ms.load(Ordering::Acquire));
                if in_a_row >= TIMEOUTS_BEFORE_RECONNECT
                    && u128::from(since) >= SILENT_BEFORE_RECONNECT.as_millis()
                {
                    self.timeouts_in_a_row.store(0, Ordering::Release);
                    self.first_timeout_ms.store(0, Ordering::Release);
                    drop_used();
                }
                tracing::debug!(target: "infermux::cache", "redis call timed out");
                None
            }
        }
    }

    /// The value at `key`: `Some(None)` when absent, `None` when Redis failed.
    pub(crate) async fn get(&self, key: String) -> Option<Option<Vec<u8>>> {
        self.guarded(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await })
            .await
    }

    /// Sets `key` for `ttl`; with `only_new`, only when it is absent — or, with `replacing`
    /// (a value this process read there and took for expired), in its place if it is still
    /// there unchanged (`replace.lua`). Whether Redis answered.
    pub(crate) async fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
        only_new: bool,
        replacing: Option<Vec<u8>>,
    ) -> bool {
        let ms = u64::try_from(crate::config::store_ttl(ttl).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Some(old) = replacing {
            let script = &self.scripts.replace;
            return self
                .guarded(|mut c| async move {
                    script
                        .key(key)
                        .arg(value)
                        .arg(ms)
                        .arg(old)
                        .arg(if only_new { "1" } else { "0" })
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await
                .is_some();
        }
        self.guarded(|mut c| async move {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(ms);
            if only_new {
                cmd.arg("NX");
            }
            cmd.query_async::<::redis::Value>(&mut c).await
        })
        .await
        .is_some()
    }

    /// Appends a record to a semantic namespace, keeping its newest `max` and expiring it
    /// `ttl` after this write. Whether Redis answered.
    pub(crate) async fn push_record(
        &self,
        ns_key: String,
        record: Vec<u8>,
        max: usize,
        ttl: Duration,
    ) -> bool {
        let seq_key = self.seq_key();
        let gen_key = format!("{ns_key}:generation");
        let ms = u64::try_from(crate::config::store_ttl(ttl).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let keep = i64::try_from(max).unwrap_or(i64::MAX);
        let script = &self.scripts.push;
        self.guarded(|mut c| async move {
            script
                .key(seq_key)
                .key(ns_key)
                .key(gen_key)
                .arg(record)
                .arg(-(keep.saturating_add(1)))
                .arg(i64::try_from(ms).unwrap_or(i64::MAX))
                .invoke_async::<u64>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// The records of a semantic namespace after number `after` of generation
    /// `generation`, with their numbers, oldest first, and the namespace's generation now
    /// (when it is not `generation`, the records are all of them); `None` when Redis failed.
    pub(crate) async fn records_after(
        &self,
        ns_key: String,
        after: u64,
        generation: &str,
        limit: usize,
    ) -> Option<(String, Vec<(u64, Vec<u8>)>)> {
        let script = &self.scripts.since;
        let gen_key = format!("{ns_key}:generation");
        let (now, raw): (String, Vec<Vec<u8>>) = self
            .guarded(|mut c| async move {
                script
                    .key(ns_key)
                    .key(gen_key)
                    .arg(after)
                    .arg(generation)
                    .arg(limit)
                    .invoke_async::<(String, Vec<Vec<u8>>)>(&mut c)
                    .await
            })
            .await?;
        Some((
            now,
            raw.into_iter()
                .filter_map(|m| {
                    // `<seq>:<stored ms>:<record>`, or `<seq>:<record>` as written before
                    let colon = m.iter().position(|&b| b == b':')?;
                    let seq = std::str::from_utf8(&m[..colon]).ok()?.parse().ok()?;
                    let mut rest = &m[colon + 1..];
                    if rest.first().is_some_and(u8::is_ascii_digit)
                        && let Some(c) = rest.iter().position(|&b| b == b':')
                    {
                        rest = &rest[c + 1..];
                    }
                    Some((seq, rest.to_vec()))
                })
                .collect(),
        ))
    }
}

/// Whether a failed call's connection is made again: an I/O error, a dropped or unrecoverable
/// connection, or a `READONLY` answer — after a failover the name now leads to the new primary,
/// but this connection still goes to the old one, now a replica: reads work on it, every
/// write fails, and nothing would ever close it.
fn drops_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}

#[cfg(test)]
mod connection_tests {
    use super::*;

    /// A `READONLY` answer (a demoted primary) makes the connection again; another server
    /// error (a script's, a wrong type) does not.
    #[test]
    fn a_readonly_answer_drops_the_connection() {
        let answer = |wire: &[u8]| {
            ::redis::parse_redis_value(wire)
                .and_then(::redis::Value::extract_error)
                .unwrap_err()
        };
        assert!(drops_connection(&answer(
            b"-READONLY You can't write against a read only replica.\r\n"
        )));
        assert!(!drops_connection(&answer(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        )));
    }
}
