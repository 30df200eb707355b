//! Keys shared by several pools of one client: one key's cooldowns, removals, announced limits
//! and RPM/TPM limits hold in every pool that sends it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use infermux_core::{Clock, EndpointId, Error, ErrorKind, Result, SystemClock};

use crate::gcra::per_minute_limit;
use crate::member::KeyCore;

/// Which key: its endpoint and its alias (`None`: the endpoint's own key).
type KeyId = (EndpointId, Option<String>);

/// A key's limits as stated (rpm, tpm, burst share): every pool must state the same.
type Stated = (Option<u32>, Option<u32>, u8);

/// The keys of several [`MultiPool`](crate::MultiPool)s, held together: a key two model groups
/// send (the same endpoint and alias) is cooled by a 429 either meets (or, when the provider
/// scoped the 429 to the model, holds that model for both), removed by a 401 either meets, and its RPM/TPM limits count the requests of both — the provider's limits are the
/// key's, not a group's. Pools built with one registry also share its clock and epoch.
///
/// ```
/// use std::sync::Arc;
/// use infermux_core::{ApiKey, EndpointConfig};
/// use infermux_multiplex::{KeyRegistry, MemberSpec, MultiPool, PoolConfig, Strategy};
/// use infermux_openai_compat::OpenAiCompat;
/// use infermux_resilience::{AttemptExecutor, queue::QueueConfig};
///
/// let provider = OpenAiCompat::new(EndpointConfig::new("api", "http://127.0.0.1:9/v1").unwrap()).unwrap();
/// let endpoint = Arc::new(AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap());
/// let keys = KeyRegistry::new();
/// let member = || MemberSpec::new(0).with_key("k1", ApiKey::new("sk-1")).with_rpm(60);
/// let config = || PoolConfig::new(Strategy::RoundRobin);
/// let chat = MultiPool::with_registry(vec![endpoint.clone()], vec![member()], config(), &keys).unwrap();
/// let long = MultiPool::with_registry(vec![endpoint], vec![member()], config(), &keys).unwrap();
/// assert_eq!(keys.len(), 1, "one key, held once for both pools");
/// # drop((chat, long));
/// ```
#[derive(Clone)]
pub struct KeyRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    epoch: Instant,
    keys: Mutex<HashMap<KeyId, (Arc<KeyCore>, Stated)>>,
}

impl fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for KeyRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyRegistry {
    /// An empty registry reading the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty registry reading `clock` (the pools built with it read it too).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        KeyRegistry {
            inner: Arc::new(Inner {
                epoch: clock.now(),
                clock,
                keys: Mutex::default(),
            }),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, (Arc<KeyCore>, Stated)>> {
        self.inner.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.inner.epoch
    }

    /// The state of key `id` with these limits: the one held, or a new one; a
    /// [`ErrorKind::Config`] error when another pool stated other limits for it.
    pub(crate) fn core(
        &self,
        endpoint: &EndpointId,
        alias: Option<&str>,
        stated: Stated,
        pool_until: &Arc<AtomicU64>,
    ) -> Result<(Arc<KeyCore>, bool)> {
        // the burst share shapes a limit only: a key without one states none
        let stated = match stated {
            (None, None, _) => (None, None, 0),
            s => s,
        };
        let mut keys = self.lock();
        let id = (endpoint.clone(), alias.map(str::to_owned));
        if let Some((core, had)) = keys.get(&id) {
            if *had != stated {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "key `{}` of endpoint `{endpoint}` is stated with other limits in \
                         another group: state a key's limits once, identically",
                        alias.unwrap_or("(the endpoint's own)")
                    ),
                ));
            }
            return Ok((core.clone(), true));
        }
        let (rpm, tpm, burst) = stated;
        let core = Arc::new(KeyCore::new(
            rpm.and_then(|l| per_minute_limit(l, burst)),
            tpm.and_then(|l| per_minute_limit(l, burst)),
            pool_until.clone(),
        ));
        keys.insert(id, (core.clone(), stated));
        Ok((core, false))
    }
}
