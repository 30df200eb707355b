//! `Unified::bind`: the member is in service while the server is ready, and taken out when the
//! server dies (here for good: its restarts keep failing, and the pool then refuses calls).

use std::sync::Arc;
use std::time::Duration;

use infermux_containers::{ProcessLauncher, ServerId, ServerSpec, State, Supervisor, Unified};
use infermux_core::{
    ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext,
};
use infermux_multiplex::{MemberSpec, MemberState, MultiPool, PoolConfig};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::AttemptExecutor;
use infermux_resilience::CallPolicy;
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::StandardRetry;

use crate::helpers::{free_port, python, quick, sigkill};

#[tokio::test]
async fn a_unified_member_serves_while_ready_and_leaves_the_pool_when_its_server_dies() {
    let Some(py) = python() else { return };
    let port = free_port();
    let flag = std::env::temp_dir().join(format!("infermux-unified-{}-{port}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    // the first run serves; every restart exits at once
    let script = format!(
        "test -e {f} && exit 1; touch {f}; exec {py} -m http.server {port} --bind 127.0.0.1",
        f = flag.display()
    );
    let spec = ServerSpec::new("once", "/bin/sh", port, "/")
        .unwrap()
        .with_args(["-c", &script]);
    let sup = Supervisor::start(
        Arc::new(ProcessLauncher::new()),
        spec.clone(),
        quick().with_max_restarts(2),
    )
    .await
    .unwrap();
    let provider = Arc::new(
        OpenAiCompat::new(EndpointConfig::new("once", format!("{}/v1", spec.base_url())).unwrap())
            .unwrap(),
    );
    let unified = Unified::new(provider.clone(), sup);
    let exec = AttemptExecutor::new(
        provider.clone() as Arc<dyn Provider>,
        QueueConfig::standard(),
        None,
    )
    .unwrap();
    let pool = MultiPool::new(
        vec![Arc::new(exec)],
        vec![MemberSpec::new(0)],
        PoolConfig::default(),
    )
    .unwrap();
    // out until the binding has seen the server ready
    pool.take_out(unified.endpoint());
    let mut states = unified.supervisor().subscribe();
    let binding = unified.bind(&pool);
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while pool.is_out_of_service(unified.endpoint()) != Some(false) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(back.is_ok(), "put back while ready");
    assert_eq!(pool.status()[0].state, MemberState::Eligible);

    let Some(ServerId::Pid(pid)) = unified.supervisor().server_id() else {
        panic!("a pid")
    };
    sigkill(pid);
    let failed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            states.changed().await.unwrap();
            if matches!(*states.borrow_and_update(), State::Failed(_)) {
                return;
            }
        }
    })
    .await;
    assert!(failed.is_ok(), "the restarts failed: a crash loop");
    let out = tokio::time::timeout(Duration::from_secs(10), async {
        while pool.is_out_of_service(unified.endpoint()) != Some(true) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(out.is_ok(), "taken out with its server");
    assert_eq!(pool.status()[0].state, MemberState::OutOfService);
    // failed for good: a call (here without a deadline) is refused, not left waiting
    let policy = CallPolicy::new(Arc::new(StandardRetry::disabled()), None);
    let request = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
    let ctx = RequestContext::new();
    let call = policy.call(&pool, &request, &ctx);
    let refused = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("refused, not left waiting for a server that is not coming back")
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    drop(binding);
    unified.stop().await;
    let _ = std::fs::remove_file(&flag);
}
