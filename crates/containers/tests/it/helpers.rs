//! Shared helpers: a launcher that records what it started, free ports, whether a pid runs,
//! and the short supervision timings the process tests use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infermux_containers::{
    Launcher, LogBuffer, Result, Server, ServerId, ServerSpec, SupervisorConfig,
};

/// Wraps a launcher and records the id of every server it started.
#[derive(Debug)]
pub(crate) struct Recording<L> {
    pub(crate) inner: L,
    pub(crate) started: Arc<Mutex<Vec<ServerId>>>,
    /// `remove_leftovers` calls.
    pub(crate) leftovers: AtomicUsize,
    /// Every start after the first runs this instead (a restart that never gets ready).
    pub(crate) restart_as: Option<ServerSpec>,
    /// How many servers it started so far, to wait on.
    pub(crate) starts: tokio::sync::watch::Sender<usize>,
}

impl<L> Recording<L> {
    pub(crate) fn new(inner: L) -> Arc<Self> {
        Arc::new(Recording {
            inner,
            started: Arc::default(),
            leftovers: AtomicUsize::new(0),
            restart_as: None,
            starts: tokio::sync::watch::Sender::new(0),
        })
    }
    /// Every start after the first runs `spec` instead.
    pub(crate) fn restarting_as(inner: L, spec: ServerSpec) -> Arc<Self> {
        Arc::new(Recording {
            inner,
            started: Arc::default(),
            leftovers: AtomicUsize::new(0),
            restart_as: Some(spec),
            starts: tokio::sync::watch::Sender::new(0),
        })
    }
    pub(crate) fn started(&self) -> Vec<ServerId> {
        self.started.lock().unwrap().clone()
    }
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.started()
            .into_iter()
            .filter_map(|id| match id {
                ServerId::Pid(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl<L: Launcher> Launcher for Recording<L> {
    async fn start(&self, spec: &ServerSpec, logs: LogBuffer) -> Result<Box<dyn Server>> {
        let spec = match &self.restart_as {
            Some(r) if !self.started.lock().unwrap().is_empty() => r,
            _ => spec,
        };
        let s = self.inner.start(spec, logs).await?;
        self.started.lock().unwrap().push(s.id());
        self.starts.send_modify(|n| *n += 1);
        Ok(s)
    }

    async fn remove_leftovers(&self, spec: &ServerSpec) -> Result<usize> {
        self.leftovers.fetch_add(1, Ordering::SeqCst);
        self.inner.remove_leftovers(spec).await
    }
}

/// A port nothing listens on now.
/// A port free on every interface now, below Linux's ephemeral range (32768–60999): a port the
/// kernel hands out for `bind(0)` is also one it gives the outgoing connections of tests running
/// beside this one, and a launcher that checks the port (binding it on every interface) then
/// found it taken now and then.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919);
    for _ in 0..4000 {
        let n = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000–32000")
}

/// SIGKILL to `pid`, from outside (as a crash would end it).
pub(crate) fn sigkill(pid: u32) {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
}

/// SIGSTOP to `pid`: frozen, not dead (it no longer answers; SIGTERM waits until it runs).
pub(crate) fn sigstop(pid: u32) {
    std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub(crate) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| !s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Waits up to `limit` for `pid` to be gone: an outside process (reparented to init) is
/// reaped on its own schedule. Returns whether it is gone.
pub(crate) async fn gone_within(pid: u32, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while running(pid) {
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Short timings for servers that start in milliseconds.
pub(crate) fn quick() -> SupervisorConfig {
    SupervisorConfig::new()
        .with_ready_timeout(Duration::from_secs(5))
        .with_probe(Duration::from_millis(25), Duration::from_millis(500))
        .with_health(Duration::from_millis(100), 2)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
        .with_stop_grace(Duration::from_secs(2))
}

/// `python3` on `PATH`, or a visible skip (the process tests' small HTTP server is Python's
/// `http.server`).
pub(crate) fn python() -> Option<&'static str> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("python3").is_file()));
    if found {
        Some("python3")
    } else {
        infermux_testkit::skip::skip(
            infermux_testkit::skip::Need::Server,
            "python3 (the test HTTP server) is not on PATH",
        );
        None
    }
}
