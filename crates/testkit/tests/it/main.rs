//! Integration tests of the testkit: replay byte-exactness and loud failures, the simulator's
//! faults, and that every shared cassette parses.

mod keys;
mod skips;

use infermux_core::{EndpointConfig, ErrorKind, RequestContext};
use infermux_http::{Auth, HttpEndpoint};
use infermux_testkit::{Body, Cassette, Fault, FaultPlan, ReplayOptions, ReplayServer, Simulator};

const CASSETTE: &str = r#"
interactions:
- request:
    method: POST
    uri: https://api.example.com/v1/chat/completions?key=abc
    body: '{"x":1}'
    headers: {}
  response:
    status: {code: 200, message: OK}
    headers:
      content-type: [text/event-stream]
      content-length: ['9999']
      x-custom: [kept]
    body: {string: "data: {\"a\":1}\n\ndata: [DONE]\n\n"}
- request:
    method: GET
    uri: https://api.example.com/v1/models
    body: null
    headers: {}
  response:
    status: {code: 404, message: Not Found}
    headers: {}
    body: {string: '{"error":"nope"}'}
"#;

fn ep(url: &str) -> HttpEndpoint {
    HttpEndpoint::new(
        "t",
        EndpointConfig::new("t", format!("{url}/v1")).unwrap(),
        Auth::None,
    )
    .unwrap()
}

#[tokio::test]
async fn replay_is_byte_exact_in_order_and_recomputes_framing() {
    for opts in [
        ReplayOptions::default(),
        ReplayOptions::default().with_chunk_size(3),
    ] {
        let server = ReplayServer::start_with(Cassette::from_yaml(CASSETTE).unwrap(), opts)
            .await
            .unwrap();
        let e = ep(&server.url());
        let ctx = RequestContext::new();
        // the key in the query is ignored for matching
        let r = e
            .post("/chat/completions?key=other")
            .body(&b"{}"[..], "application/json")
            .send(&ctx)
            .await
            .unwrap();
        assert_eq!(r.headers().get("x-custom").unwrap(), "kept");
        assert_ne!(
            r.headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap()),
            Some("9999")
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(&body[..], b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert!(server.verify().is_err(), "the second interaction is unused");
        let err = e.get("/models").send(&ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn replay_fails_loudly_on_unmatched_requests() {
    let server = ReplayServer::start(Cassette::from_yaml(CASSETTE).unwrap())
        .await
        .unwrap();
    let e = ep(&server.url());
    let err = e
        .get("/embeddings")
        .send(&RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(599));
    assert!(
        err.message().contains("no recorded interaction"),
        "{}",
        err.message()
    );
    let report = server.verify().unwrap_err();
    assert!(report.contains("GET /v1/embeddings"), "{report}");
}

#[tokio::test]
async fn simulator_injects_scripted_faults() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let e = ep(&sim.url());
    let ctx = RequestContext::new();
    let body =
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi there"}]});
    sim.push_fault(Fault::RateLimited(std::time::Duration::from_millis(1500)));
    sim.push_fault(Fault::Overloaded);
    sim.push_fault(Fault::Reset);
    let err = e
        .post("/chat/completions")
        .json(&body)
        .send(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(
        err.retry_after(),
        Some(std::time::Duration::from_millis(1500))
    );
    let err = e
        .post("/chat/completions")
        .json(&body)
        .send(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    let err = e
        .post("/chat/completions")
        .json(&body)
        .send(&ctx)
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Connect), "{err:?}");
    let ok: serde_json::Value = e
        .post("/chat/completions")
        .json(&body)
        .send(&ctx)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["choices"][0]["message"]["content"], "Echo: hi there");
    assert_eq!(sim.requests(), 4);
    assert_eq!(sim.faults().len(), 3);
}

#[test]
fn every_shared_cassette_parses() {
    let Some(root) = infermux_testkit::shared_fixture("fixtures/cassettes") else {
        return;
    };
    let mut stack = vec![root];
    let (mut files, mut interactions, mut raw) = (0, 0, 0);
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let c = Cassette::load(&path).unwrap_or_else(|e| panic!("{e}"));
                files += 1;
                interactions += c.interactions.len();
                raw += c
                    .interactions
                    .iter()
                    .filter(|i| matches!(i.response.body, Body::Raw(_)))
                    .count();
                for it in &c.interactions {
                    if it.response.header("content-encoding") == Some("gzip") {
                        let b = it.response.body.to_bytes();
                        assert_eq!(
                            &b[..2],
                            &[0x1f, 0x8b],
                            "{}: gzip body is not gzip",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    eprintln!("{files} cassettes, {interactions} interactions ({raw} raw bodies)");
    assert!(files > 0);
}

#[tokio::test]
async fn a_request_cost_serves_requests_one_at_a_time_whatever_their_size() {
    let cost = std::time::Duration::from_millis(40);
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    sim.set_request_cost(Some(cost));
    let e = ep(&sim.url());
    let ctx = RequestContext::new();
    let one = serde_json::json!({"model": "m", "input": ["a"]});
    let many = serde_json::json!({"model": "m", "input": ["a", "b", "c", "d"]});
    let (x, y) = tokio::join!(
        e.post("/embeddings").json(&one).send(&ctx),
        e.post("/embeddings").json(&many).send(&ctx),
    );
    let y: serde_json::Value = y.unwrap().json().await.unwrap();
    assert_eq!(y["data"].as_array().unwrap().len(), 4);
    x.unwrap();
    let log = sim.requests_log();
    assert_eq!(log.len(), 2);
    // each is logged once its cost is paid; the second waited for the first (a lower bound
    // only: a sleep never ends early)
    assert!(log[0].at >= cost, "{:?}", log[0].at);
    assert!(log[1].at - log[0].at >= cost, "{log:?}");
}
