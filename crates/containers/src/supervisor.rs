//! [`Supervisor`]: starts a server, waits until its readiness route answers, checks its health,
//! restarts it with a capped, jittered backoff when it exits or fails its checks (up to a
//! limit, then [`Error::CrashLoop`]), and stops it gracefully. Its [`State`] is watchable.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Exit, Result};
use crate::launcher::{BIND_FAILURES, Launcher, Server, ServerId};
use crate::logs::LogBuffer;
use crate::spec::ServerSpec;

/// How a [`Supervisor`] waits, checks and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorConfig {
    /// How long a (re)started server has to answer its readiness route (default 120 s).
    pub ready_timeout: Duration,
    /// Between readiness probes (default 100 ms).
    pub probe_interval: Duration,
    /// One probe's timeout (default 2 s).
    pub probe_timeout: Duration,
    /// Between health checks of a ready server (default 5 s).
    pub health_interval: Duration,
    /// Consecutive failed health checks that restart it (default 3).
    pub health_failures: u32,
    /// Restarts allowed before [`Error::CrashLoop`] (default 5); the count starts again once
    /// the server has been ready for [`SupervisorConfig::stable_after`].
    pub max_restarts: u32,
    /// The first restart's delay (default 500 ms), doubled per restart.
    pub backoff_base: Duration,
    /// The longest delay (default 30 s).
    pub backoff_max: Duration,
    /// Ready this long, the restart count is reset (default 60 s).
    pub stable_after: Duration,
    /// SIGTERM to SIGKILL (default 10 s).
    pub stop_grace: Duration,
    /// Log lines kept (default 1000).
    pub log_lines: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            ready_timeout: Duration::from_secs(120),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_secs(2),
            health_interval: Duration::from_secs(5),
            health_failures: 3,
            max_restarts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            log_lines: 1000,
        }
    }
}

impl SupervisorConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// [`SupervisorConfig::ready_timeout`].
    pub fn with_ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }
    /// [`SupervisorConfig::probe_interval`] and [`SupervisorConfig::probe_timeout`].
    pub fn with_probe(mut self, interval: Duration, timeout: Duration) -> Self {
        self.probe_interval = interval;
        self.probe_timeout = timeout;
        self
    }
    /// [`SupervisorConfig::health_interval`] and [`SupervisorConfig::health_failures`].
    pub fn with_health(mut self, interval: Duration, failures: u32) -> Self {
        self.health_interval = interval;
        self.health_failures = failures;
        self
    }
    /// [`SupervisorConfig::max_restarts`].
    pub fn with_max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }
    /// [`SupervisorConfig::backoff_base`] and [`SupervisorConfig::backoff_max`].
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }
    /// [`SupervisorConfig::stable_after`].
    pub fn with_stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }
    /// [`SupervisorConfig::stop_grace`].
    pub fn with_stop_grace(mut self, d: Duration) -> Self {
        self.stop_grace = d;
        self
    }
    /// [`SupervisorConfig::log_lines`].
    pub fn with_log_lines(mut self, n: usize) -> Self {
        self.log_lines = n;
        self
    }

    /// A [`Error::Config`] when a duration that must be positive is zero, the backoff's cap is
    /// below its base, or `health_failures` or `log_lines` is 0.
    pub fn validate(self) -> Result<Self> {
        let zero = [
            ("ready_timeout", self.ready_timeout),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("health_interval", self.health_interval),
            ("backoff_base", self.backoff_base),
        ]
        .into_iter()
        .find(|(_, d)| d.is_zero());
        if let Some((name, _)) = zero {
            return Err(Error::Config(format!("{name} is zero")));
        }
        if self.backoff_max < self.backoff_base {
            return Err(Error::Config("backoff_max is below backoff_base".into()));
        }
        if self.health_failures == 0 || self.log_lines == 0 {
            return Err(Error::Config(
                "health_failures and log_lines must be at least 1".into(),
            ));
        }
        Ok(self)
    }

    /// The delay before restart number `n` (1-based): `base · 2^(n-1)` capped at `max`, of
    /// which a random half is taken away (so it lies in `[d/2, d]`).
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        let d = exp.min(self.backoff_max);
        let half = d / 2;
        let r = RandomState::new().hash_one(n) % 1_000_000;
        half + half.mul_f64(r as f64 / 1_000_000.0)
    }
}

/// Where a supervised server is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum State {
    /// Started, not ready yet.
    Starting,
    /// Answering its readiness route.
    Ready,
    /// It exited or failed its health checks; restart number `restarts` comes after a backoff.
    Restarting {
        /// Restarts so far (this one included).
        restarts: u32,
        /// Why.
        reason: String,
    },
    /// Given up (a crash loop, a server never ready, …): nothing runs.
    Failed(Arc<Error>),
    /// Stopped by its owner: nothing runs.
    Stopped,
}

impl State {
    /// Whether it is [`State::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready)
    }
    /// Whether nothing will run any more ([`State::Failed`] or [`State::Stopped`]).
    pub fn is_final(&self) -> bool {
        matches!(self, State::Failed(_) | State::Stopped)
    }
    /// `starting`, `ready`, `restarting`, `failed` or `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Restarting { .. } => "restarting",
            State::Failed(_) => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// A supervised server (see [the crate docs](crate)). Dropping it kills the server; prefer
/// [`Supervisor::stop`], which stops it gracefully.
#[derive(Debug)]
pub struct Supervisor {
    state: watch::Receiver<State>,
    id: watch::Receiver<Option<ServerId>>,
    logs: LogBuffer,
    spec: ServerSpec,
    restarts: Arc<AtomicU32>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Ctx {
    launcher: Arc<dyn Launcher>,
    spec: ServerSpec,
    config: SupervisorConfig,
    logs: LogBuffer,
    http: reqwest::Client,
    state: watch::Sender<State>,
    id: watch::Sender<Option<ServerId>>,
    restarts: Arc<AtomicU32>,
}

impl Supervisor {
    /// Starts `spec` with `launcher` and waits until it is ready: `Ok` once its readiness
    /// route answers 200, restarting it (with backoff) when it exits first. Errors:
    /// [`Error::BinaryMissing`], [`Error::PortInUse`] (taken before the start, or the server
    /// says so), [`Error::UnknownImage`], [`Error::NeverReady`] after
    /// [`SupervisorConfig::ready_timeout`], [`Error::CrashLoop`] — each with nothing left
    /// running. Then, until stopped, it checks health and restarts the server as needed.
    pub async fn start(
        launcher: Arc<dyn Launcher>,
        spec: ServerSpec,
        config: SupervisorConfig,
    ) -> Result<Self> {
        let logs = LogBuffer::new(config.log_lines);
        Self::start_with_logs(launcher, spec, config, logs).await
    }

    /// [`Supervisor::start`] writing the server's output to `logs`, which the caller may
    /// follow ([`LogBuffer::subscribe`]) while the server starts.
    pub async fn start_with_logs(
        launcher: Arc<dyn Launcher>,
        spec: ServerSpec,
        config: SupervisorConfig,
        logs: LogBuffer,
    ) -> Result<Self> {
        let config = config.validate()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.probe_timeout)
            .build()
            .map_err(|e| Error::Config(format!("the probe client: {e}")))?;
        let (state_tx, state) = watch::channel(State::Starting);
        let (id_tx, id) = watch::channel(None);
        let restarts = Arc::new(AtomicU32::new(0));
        let ctx = Ctx {
            launcher,
            spec: spec.clone(),
            config,
            logs: logs.clone(),
            http,
            state: state_tx,
            id: id_tx,
            restarts: restarts.clone(),
        };
        // nobody watches the state before this returns: an error is only returned
        let server = ctx.bring_up().await?;
        ctx.state.send_replace(State::Ready);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(ctx.watch(server, stop_rx));
        Ok(Supervisor {
            state,
            id,
            logs,
            spec,
            restarts,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Its state now.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// A receiver of its state changes from now on (the current state counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<State> {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        rx
    }

    /// The running server's pid or container id (`None` between a crash and its restart).
    pub fn server_id(&self) -> Option<ServerId> {
        self.id.borrow().clone()
    }

    /// The server's output (every run's, in one ring).
    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    /// The spec it runs.
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// Restarts since the count was last reset.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Waits until it is ready again, or `Err` with the final state's error (a stopped
    /// supervisor: [`Error::Stopped`]).
    pub async fn ready(&self) -> Result<(), Arc<Error>> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                State::Ready => return Ok(()),
                State::Failed(e) => return Err(e.clone()),
                State::Stopped => return Err(Arc::new(Error::Stopped)),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(Arc::new(Error::Stopped));
            }
        }
    }

    /// Stops the server gracefully (SIGTERM, SIGKILL after the grace period) and the
    /// supervision; resolves once nothing runs (during a restart, once what the restart
    /// started is removed: [`Launcher::remove_leftovers`]). Prefer it to dropping the
    /// supervisor at the end of a program: a dropped container's removal runs on the runtime.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // dropping the task's future drops the server, which kills it
            task.abort();
        }
    }
}

/// How long a stop during a restart may take to remove what the restart left (a container).
const LEFTOVERS_TIMEOUT: Duration = Duration::from_secs(30);

enum Probe {
    Ready,
    NotYet,
}

impl Ctx {
    async fn probe(&self) -> Probe {
        let url = format!("{}{}", self.spec.base_url(), self.spec.readiness);
        match self.http.get(url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Probe::Ready,
            _ => Probe::NotYet,
        }
    }

    /// Why a server that exited before being ready cannot be restarted usefully, if so: read
    /// from this run's lines only (pushed after `mark`), not an earlier run's.
    fn fatal(&self, exit: Exit, mark: u64) -> Option<Error> {
        if self.logs.contains_since(mark, BIND_FAILURES) {
            return Some(Error::PortInUse {
                port: self.spec.port,
            });
        }
        if exit == Exit::Code(127) {
            // env, chroot and shells exit 127 when the command they run does not exist
            return Some(Error::BinaryMissing {
                program: self.spec.program.clone(),
            });
        }
        None
    }

    /// Starts the server and waits until it is ready, restarting it when it exits first.
    async fn bring_up(&self) -> Result<Box<dyn Server>> {
        loop {
            let mark = self.logs.mark();
            let mut server = self.launcher.start(&self.spec, self.logs.clone()).await?;
            self.id.send_replace(Some(server.id()));
            // a ready timeout past what an `Instant` holds (`Duration::MAX`) is no limit
            let now = Instant::now();
            let deadline = now
                .checked_add(self.config.ready_timeout)
                .unwrap_or_else(|| now + infermux_core::FAR_FUTURE);
            let exit = loop {
                // a probe never runs past the deadline
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Probe::Ready) = tokio::time::timeout(left, self.probe()).await {
                    return Ok(server);
                }
                if Instant::now() >= deadline {
                    let _ = server.stop(self.config.stop_grace).await;
                    self.id.send_replace(None);
                    return Err(Error::NeverReady {
                        deadline: self.config.ready_timeout,
                        route: self.spec.readiness.clone(),
                    });
                }
                let pause = self
                    .config
                    .probe_interval
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::select! {
                    exit = server.exited() => break exit,
                    () = tokio::time::sleep(pause) => {}
                }
            };
            self.id.send_replace(None);
            drop(server);
            if let Some(e) = self.fatal(exit, mark) {
                return Err(e);
            }
            self.restart_or_give_up(format!("exited before ready ({exit})"))
                .await?;
        }
    }

    /// Counts a restart and waits its backoff, or [`Error::CrashLoop`] past the limit.
    async fn restart_or_give_up(&self, reason: String) -> Result<()> {
        let n = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.config.max_restarts {
            self.restarts.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::CrashLoop {
                restarts: n - 1,
                last: reason,
            });
        }
        tracing::warn!(server = %self.spec.name, restarts = n, %reason, "restarting server");
        // (told once: a server given up on after its health checks is already `Restarting`)
        self.state.send_if_modified(|s| {
            let told = matches!(s, State::Restarting { restarts, reason: r } if *restarts == n && *r == reason);
            if !told {
                *s = State::Restarting {
                    restarts: n,
                    reason,
                };
            }
            !told
        });
        tokio::time::sleep(self.config.backoff(n)).await;
        self.state.send_replace(State::Starting);
        Ok(())
    }

    /// Health checks and restarts until stopped or given up.
    async fn watch(self, mut server: Box<dyn Server>, mut stop: oneshot::Receiver<()>) {
        let mut ready_since = Instant::now();
        let mut failures = 0u32;
        loop {
            let reason = tokio::select! {
                _ = &mut stop => {
                    let _ = server.stop(self.config.stop_grace).await;
                    self.id.send_replace(None);
                    self.state.send_replace(State::Stopped);
                    return;
                }
                exit = server.exited() => format!("exited ({exit})"),
                () = tokio::time::sleep(self.config.health_interval) => {
                    if let Probe::Ready = self.probe().await {
                        failures = 0;
                        if ready_since.elapsed() >= self.config.stable_after {
                            self.restarts.store(0, Ordering::Relaxed);
                        }
                        continue;
                    }
                    failures += 1;
                    if failures < self.config.health_failures {
                        continue;
                    }
                    let reason = format!("failed {failures} health checks");
                    // out of service before its stop (a grace period long): calls go
                    // elsewhere, not to a server known to be failing
                    self.state.send_replace(State::Restarting {
                        restarts: self.restarts.load(Ordering::Relaxed) + 1,
                        reason: reason.clone(),
                    });
                    let _ = server.stop(self.config.stop_grace).await;
                    reason
                }
            };
            self.id.send_replace(None);
            failures = 0;
            // a restart that fails for a passing reason (not ready in time once, the engine
            // or the system failing a request, the port still held) is one more restart, up
            // to the limit; only one that cannot succeed (a missing binary or image, a spec
            // refused) gives up at once
            let up = async {
                let mut reason = reason;
                loop {
                    self.restart_or_give_up(reason).await?;
                    match self.bring_up().await {
                        Ok(server) => break Ok(server),
                        Err(
                            e @ (Error::NeverReady { .. }
                            | Error::Docker(_)
                            | Error::Io(_)
                            | Error::PortInUse { .. }),
                        ) => reason = e.to_string(),
                        Err(e) => break Err(e),
                    }
                }
            };
            tokio::select! {
                _ = &mut stop => {
                    // the restart is dropped: a process it started is killed at once, but a
                    // container's removal would be spawned on a runtime that may end next
                    // (and one created but not yet handed over is owned by nobody)
                    let _ = tokio::time::timeout(
                        LEFTOVERS_TIMEOUT,
                        self.launcher.remove_leftovers(&self.spec),
                    )
                    .await;
                    self.state.send_replace(State::Stopped);
                    return;
                }
                up = up => match up {
                    Ok(s) => {
                        server = s;
                        ready_since = Instant::now();
                        self.state.send_replace(State::Ready);
                    }
                    Err(e) => {
                        tracing::error!(server = %self.spec.name, error = %e, "giving up");
                        self.state.send_replace(State::Failed(Arc::new(e)));
                        return;
                    }
                },
            }
        }
    }
}
