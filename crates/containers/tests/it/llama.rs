//! The must-show test: the process launcher starts the real llama.cpp server (through the
//! chroot the CI prepared), a `Unified` member of a pool serves a concurrent load, the server
//! is SIGKILLed from outside mid-load, the supervisor restarts it, and every request is either
//! answered or failed with a typed error within its deadline — none lost, none hanging.
//!
//! Needs `INFERMUX_CI_HOME` (the CI's folder: `sid/` holds the chroot with llama-server, its
//! `models/` the bind-mounted model, as `.ci/llama-server.sh start` leaves them) and root (for
//! `chroot`): a visible skip otherwise, a failure under `INFERMUX_REQUIRE_SERVERS=1`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use infermux_containers::{
    LlamaCppSpec, ProcessLauncher, ServerId, State, Supervisor, SupervisorConfig, Unified,
};
use infermux_core::{
    ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext, Response,
};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{AttemptExecutor, CallPolicy};
use infermux_testkit::skip::{Need, skip};

use crate::helpers::{Recording, free_port, running};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Each request's deadline.
const DEADLINE: Duration = Duration::from_secs(60);
const LOAD: usize = 32;

/// The chroot, when everything the test needs is there (else a visible skip).
fn chroot() -> Option<PathBuf> {
    let Some(home) = std::env::var_os("INFERMUX_CI_HOME") else {
        skip(
            Need::Server,
            "INFERMUX_CI_HOME is not set (the CI's llama.cpp chroot)",
        );
        return None;
    };
    let root = PathBuf::from(home).join("sid");
    if !root.join("usr/bin/llama-server").is_file() {
        skip(
            Need::Server,
            &format!("no llama-server in the chroot {}", root.display()),
        );
        return None;
    }
    if !root.join("models").join(MODEL).is_file() {
        skip(
            Need::Server,
            &format!(
                "the model is not visible in {}/models (run `.ci/llama-server.sh start`)",
                root.display()
            ),
        );
        return None;
    }
    if !rustix_is_root() {
        skip(Need::Server, "chroot needs root");
        return None;
    }
    Some(root)
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A port that is free and not one of the CI's own llama servers (18080-18082).
fn port() -> u16 {
    loop {
        let p = free_port();
        if !(18080..=18082).contains(&p) {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_sigkilled_under_load_is_restarted_and_every_request_resolves_in_time() {
    let Some(root) = chroot() else { return };
    let port = port();
    let spec = LlamaCppSpec::new(format!("/models/{MODEL}"))
        .port(port)
        .alias("smollm2")
        .ctx_size(2048)
        .extra_args(["--parallel", "4", "--threads", "2", "--no-ui"])
        .server_spec("llama-must-show")
        .unwrap()
        .with_wrapper([
            "chroot".to_owned(),
            "--userspec=65534:65534".to_owned(),
            root.display().to_string(),
            "/usr/bin/env".to_owned(),
            "-i".to_owned(),
            "PATH=/usr/bin:/bin".to_owned(),
            "HOME=/tmp".to_owned(),
            "LC_ALL=C.UTF-8".to_owned(),
        ]);
    let launcher = Recording::new(ProcessLauncher::with_pid_dir(
        std::env::temp_dir().join("infermux-containers-pids"),
    ));
    let config = SupervisorConfig::new()
        .with_ready_timeout(Duration::from_secs(120))
        .with_probe(Duration::from_millis(100), Duration::from_secs(2))
        .with_health(Duration::from_secs(1), 3)
        .with_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .with_max_restarts(3)
        .with_stop_grace(Duration::from_secs(5));
    let supervisor = Supervisor::start(launcher.clone(), spec.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("llama-server did not start: {e}"));
    let Some(ServerId::Pid(first)) = supervisor.server_id() else {
        panic!("a pid")
    };

    let provider = Arc::new(
        OpenAiCompat::new(
            EndpointConfig::new("llama-must-show", format!("{}/v1", spec.base_url())).unwrap(),
        )
        .unwrap(),
    );
    let unified = Unified::new(provider.clone(), supervisor);
    let exec = Arc::new(
        AttemptExecutor::new(
            provider.clone() as Arc<dyn Provider>,
            QueueConfig::standard().with_permits(4),
            None,
        )
        .unwrap(),
    );
    let pool = MultiPool::new(
        vec![exec],
        vec![MemberSpec::new(0)],
        PoolConfig::new(Strategy::RoundRobin),
    )
    .unwrap();
    let _binding = unified.bind(&pool);
    let policy = Arc::new(CallPolicy::new(
        Arc::new(
            StandardRetry::standard()
                .with_max_attempts(8)
                .with_budget(None),
        ),
        Some(DEADLINE),
    ));

    // the load: 32 concurrent chat calls, each with its deadline
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..LOAD {
        let (pool, policy, done) = (pool.clone(), policy.clone(), done_tx.clone());
        tasks.push(tokio::spawn(async move {
            let req = Request::Chat(
                ChatRequest::new("smollm2", vec![Message::user(format!("Say hi {i}"))])
                    .with_max_tokens(8),
            );
            let start = tokio::time::Instant::now();
            // a hang would show as this outer limit firing
            let out = tokio::time::timeout(
                DEADLINE + Duration::from_secs(10),
                policy.call(&pool, &req, &RequestContext::new()),
            )
            .await;
            let _ = done.send(());
            (i, start.elapsed(), out)
        }));
    }
    drop(done_tx);
    // mid-load: after a few answers, SIGKILL the server from outside
    for _ in 0..4 {
        done_rx.recv().await.unwrap();
    }
    let mut states = unified.supervisor().subscribe();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // the supervisor sees it and restarts it
    let mut seen = Vec::new();
    let restarted = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            states.changed().await.unwrap();
            let s = states.borrow_and_update().clone();
            seen.push(s.as_str());
            // a watch channel shows the latest state: `restarting` may be overtaken
            if matches!(s, State::Ready) && seen.iter().any(|s| *s != "ready") {
                return;
            }
            assert!(!s.is_final(), "supervision gave up: {s:?}");
        }
    })
    .await;
    assert!(restarted.is_ok(), "not restarted: {seen:?}");
    let Some(ServerId::Pid(second)) = unified.supervisor().server_id() else {
        panic!("a pid")
    };
    assert_ne!(first, second);
    assert!(!running(first), "the killed server is gone");
    assert!(running(second));
    assert_eq!(unified.supervisor().restarts(), 1);

    // every request resolved, within its deadline, answered or with a typed error
    let mut answered = 0;
    let mut failed = Vec::new();
    for t in tasks {
        let (i, took, out) = t.await.unwrap();
        let out = out.unwrap_or_else(|_| panic!("request {i} hung past its deadline"));
        assert!(
            took <= DEADLINE + Duration::from_secs(1),
            "request {i} took {took:?}"
        );
        match out {
            Ok(called) => {
                let Response::Chat(_) = called.value else {
                    panic!("request {i}: not a chat answer")
                };
                answered += 1;
            }
            Err(e) => {
                assert_ne!(e.kind(), ErrorKind::Config, "request {i}: {e}");
                failed.push((i, e.kind()));
            }
        }
    }
    eprintln!(
        "{answered} of {LOAD} answered; failed with typed errors: {failed:?}; states: {seen:?}"
    );
    assert_eq!(answered + failed.len(), LOAD, "none lost");
    assert!(
        answered > 4,
        "requests were answered after the restart too ({answered} answered)"
    );
    unified.stop().await;
    assert!(!running(second), "stopped");
    assert!(
        launcher.pids().iter().all(|p| !running(*p)),
        "nothing left running"
    );
}
