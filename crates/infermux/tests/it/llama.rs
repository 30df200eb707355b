//! Two real llama.cpp servers in one pool (`INFERMUX_LLAMA_URL`, `INFERMUX_LLAMA_URL2`, started
//! by `.ci/llama-server.sh`): the second is killed with SIGKILL mid-load — every request is
//! answered by the first, the killed one's breaker opens, and once restarted it rejoins.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use infermux::openai_compat::OpenAiCompat;
use infermux::resilience::ResilienceConfig;
use infermux::resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux::{
    ChatRequest, Client, Deployment, EndpointConfig, Message, ModelGroup, RequestContext, Strategy,
};
use infermux_testkit::{Need, server_url, skip};

fn script(cmd: &str) -> std::io::Result<std::process::ExitStatus> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/llama-server.sh");
    Command::new("bash").arg(path).arg(cmd).status()
}

/// Brings chat2 back whatever happens to the test.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = script("start2");
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new("smollm2", vec![Message::user("Say hi")]).with_max_tokens(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_llama_servers_one_killed_mid_load_every_request_answered_and_it_rejoins() {
    let (Some(url1), Some(url2)) = (
        server_url("INFERMUX_LLAMA_URL"),
        server_url("INFERMUX_LLAMA_URL2"),
    ) else {
        return;
    };
    if std::env::var_os("INFERMUX_CI_HOME").is_none() {
        skip(
            Need::Server,
            "INFERMUX_CI_HOME is not set: the test cannot kill and restart chat2",
        );
        return;
    }
    let endpoint = |name: &str, url: &str| {
        OpenAiCompat::new(EndpointConfig::new(name, format!("{url}/v1")).unwrap()).unwrap()
    };
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(4))
        .with_minimum_calls(2)
        .with_open_wait(Duration::from_secs(1));
    let client = Arc::new(
        Client::builder()
            .endpoint(endpoint("llama1", &url1))
            .endpoint(endpoint("llama2", &url2))
            .group(
                ModelGroup::new("chat")
                    .strategy(Strategy::RoundRobin)
                    .deployment(Deployment::any_model("llama1"))
                    .deployment(Deployment::any_model("llama2")),
            )
            .resilience(ResilienceConfig::standard().with_breaker(Some(breaker)))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let _restart = Restart;

    // 32 requests, 4 at a time; chat2 is killed once it has answered two of them
    let total = 32;
    let mut pending = FuturesUnordered::new();
    let (mut sent, mut answered, mut killed) = (0, 0, false);
    let mut by_endpoint = [0u32; 2];
    while answered < total {
        while sent < total && pending.len() < 4 {
            let c = client.clone();
            pending.push(tokio::spawn(async move {
                let mut req = ask();
                req.model = "chat".into();
                c.chat_with(req, RequestContext::new()).await
            }));
            sent += 1;
        }
        let r = pending.next().await.unwrap().unwrap();
        let r = r.unwrap_or_else(|e| panic!("request {answered} failed: {e:?}"));
        let served = r.served.unwrap();
        by_endpoint[usize::from(served.endpoint.as_str() == "llama2")] += 1;
        answered += 1;
        if by_endpoint[1] >= 2 && !killed {
            assert!(script("kill2").unwrap().success(), "kill2 failed");
            killed = true;
        }
    }
    assert!(
        killed,
        "llama2 answered fewer than two requests before the load ended: {by_endpoint:?} {:?}",
        client.endpoint_counters()
    );
    let llama2 = &client.endpoint_counters()[1];
    assert_eq!(llama2.0.as_str(), "llama2");
    assert!(
        llama2.1.breaker_trips >= 1,
        "the killed server's breaker opened: {:?}",
        llama2.1
    );

    // restarted, it rejoins: a half-open probe passes and it serves again
    assert!(script("start2").unwrap().success(), "start2 failed");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut req = ask();
        req.model = "chat".into();
        let r = client
            .chat(req)
            .await
            .expect("answered while llama2 rejoins");
        if r.served.unwrap().endpoint.as_str() == "llama2" {
            break;
        }
        // each answer of llama1 takes tens of milliseconds: the breaker's open wait (1 s)
        // passes within a few dozen of them
        assert!(Instant::now() < until, "llama2 never rejoined the pool");
    }
}
