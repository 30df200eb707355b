//! [`Unified`]: a provider whose server infermux launches and supervises itself, bound to its
//! member(s) in a [`MultiPool`]: out of service while the server (re)starts, back in once it
//! is ready. Calls meanwhile wait in the pool's queue within their deadline.

use std::sync::Arc;

use infermux_core::{EndpointConfig, EndpointId, Provider};
use infermux_multiplex::MultiPool;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::launcher::Launcher;
use crate::spec::ServerSpec;
use crate::supervisor::{Supervisor, SupervisorConfig};

/// A provider and the supervised server it talks to.
#[derive(Debug)]
pub struct Unified<P: ?Sized> {
    provider: Arc<P>,
    supervisor: Supervisor,
}

impl<P: Provider + ?Sized + 'static> Unified<P> {
    /// Launches `spec` with `launcher`, waits until it is ready (see [`Supervisor::start`] for
    /// the errors) and pairs it with `provider`, which must talk to
    /// [`ServerSpec::base_url`].
    pub async fn launch(
        provider: Arc<P>,
        launcher: Arc<dyn Launcher>,
        spec: ServerSpec,
        config: SupervisorConfig,
    ) -> Result<Self> {
        let supervisor = Supervisor::start(launcher, spec, config).await?;
        Ok(Unified {
            provider,
            supervisor,
        })
    }

    /// Launches `server` and builds its provider with `make` from an endpoint config whose
    /// id is the server's name and whose base URL is its root ([`ServerSpec::base_url`]) plus
    /// `path` (such as `/v1`). The provider crates' `unified` features are this call.
    pub async fn launch_with(
        server: ServerSpec,
        path: &str,
        launcher: Arc<dyn Launcher>,
        config: SupervisorConfig,
        make: impl FnOnce(EndpointConfig) -> infermux_core::Result<P>,
    ) -> Result<Self>
    where
        P: Sized,
    {
        let endpoint = EndpointConfig::new(&server.name, format!("{}{path}", server.base_url()))
            .and_then(make)
            .map_err(|e| Error::Config(e.to_string()))?;
        Self::launch(Arc::new(endpoint), launcher, server, config).await
    }

    /// Pairs an already started supervisor with `provider`.
    pub fn new(provider: Arc<P>, supervisor: Supervisor) -> Self {
        Unified {
            provider,
            supervisor,
        }
    }

    /// The provider (give it to an
    /// [`AttemptExecutor`](https://docs.rs/infermux-resilience) of the pool).
    pub fn provider(&self) -> &Arc<P> {
        &self.provider
    }

    /// The provider's endpoint.
    pub fn endpoint(&self) -> &EndpointId {
        self.provider.endpoint()
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Keeps the provider's members in `pool` in service exactly while the server is ready:
    /// [`MultiPool::take_out`] when it exits, fails its health checks or restarts,
    /// [`MultiPool::put_back`] (waking the calls waiting) once it is ready again, and
    /// [`MultiPool::retire`] once it has failed for good or stopped (or its supervisor is
    /// gone): the calls waiting for it, and later ones no other member can take, are refused
    /// at once rather than waiting out their deadlines. Follows until the returned binding is
    /// dropped. Needs a tokio runtime (the binding is a task on it).
    pub fn bind(&self, pool: &MultiPool) -> PoolBinding {
        let mut state = self.supervisor.subscribe();
        let (pool, endpoint) = (pool.clone(), self.endpoint().clone());
        let task = tokio::spawn(async move {
            loop {
                let (ready, over) = {
                    let s = state.borrow_and_update();
                    (s.is_ready(), s.is_final())
                };
                if over {
                    pool.retire(&endpoint);
                    return;
                }
                if ready {
                    pool.put_back(&endpoint);
                } else {
                    pool.take_out(&endpoint);
                }
                if state.changed().await.is_err() {
                    pool.retire(&endpoint);
                    return;
                }
            }
        });
        PoolBinding { task }
    }

    /// Stops the server gracefully.
    pub async fn stop(self) {
        self.supervisor.stop().await;
    }
}

/// Follows a [`Unified`] server's state into a pool; stops following when dropped.
#[derive(Debug)]
pub struct PoolBinding {
    task: JoinHandle<()>,
}

impl Drop for PoolBinding {
    fn drop(&mut self) {
        self.task.abort();
    }
}
