//! The simulator for pools of keys, driven through the real transport: its request log (who
//! presented which key, when, with which request id), per-key behaviours (429 + Retry-After
//! for N requests or until a time, 401, quota), rate-limit headers and scripted usage; and the
//! attempt's key on the wire as the simulator sees it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{
    ApiKey, AttemptKey, EndpointConfig, EndpointId, ErrorKind, RequestContext, ResponseMeta,
};
use infermux_http::{Auth, HttpEndpoint};
use infermux_testkit::{
    FaultPlan, KeyBehaviour, RateLimitHeaders, SimUsage, SimWindow, Simulator, Until,
};
use serde_json::{Value, json};

const CONFIGURED: &str = "sk-configured-0000";

fn endpoint(sim: &Simulator, auth: Auth) -> HttpEndpoint {
    let cfg = EndpointConfig::new("sim", format!("{}/v1", sim.url()))
        .unwrap()
        .with_api_key(ApiKey::new(CONFIGURED));
    HttpEndpoint::new("test", cfg, auth).unwrap()
}

fn with_key(endpoint: &str, key: &str) -> RequestContext {
    RequestContext::new().with_key(AttemptKey::new(
        EndpointId::new(endpoint),
        key,
        ApiKey::new(key),
    ))
}

fn chat_body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "one two three"}]})
}

async fn chat(ep: &HttpEndpoint, ctx: &RequestContext) -> infermux_core::Result<Value> {
    ep.post("/chat/completions")
        .json(&chat_body())
        .send(ctx)
        .await?
        .json()
        .await
}

#[tokio::test]
async fn the_simulator_logs_the_attempt_key_and_never_sees_the_configured_one() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    for auth in [
        Auth::Bearer,
        Auth::Header("x-api-key"),
        Auth::Header("x-goog-api-key"),
    ] {
        let ep = endpoint(&sim, auth);
        let ctx = with_key("sim", "sk-pool-key-a");
        chat(&ep, &ctx).await.unwrap();
        let last = sim.requests_log().pop().unwrap();
        assert_eq!(last.key.as_deref(), Some("sk-pool-key-a"), "{auth:?}");
        assert_eq!(last.path, "/v1/chat/completions");
        assert_eq!(last.method, "POST");
        assert_eq!(
            last.request_id,
            Some(ctx.request_id().to_string()),
            "the transport's X-Request-ID"
        );
    }
    assert_eq!(sim.requests_by_key("sk-pool-key-a"), 3);
    assert_eq!(sim.requests_by_key(CONFIGURED), 0);
    // without an attempt key, the configured key is what arrives
    let ep = endpoint(&sim, Auth::Bearer);
    chat(&ep, &RequestContext::new()).await.unwrap();
    assert_eq!(sim.requests_by_key(CONFIGURED), 1);
    assert_eq!(sim.requests_log().len(), 4);
}

#[tokio::test]
async fn a_key_bound_to_another_endpoint_never_reaches_the_simulator() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    let err = chat(&ep, &with_key("another-endpoint", "sk-pool-key-a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(sim.requests(), 0);
    assert!(sim.requests_log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_key_answers_429_with_retry_after_until_its_time_then_ok() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    sim.set_key(
        "sk-busy",
        KeyBehaviour::rate_limited_until(Duration::from_secs(1), Duration::from_secs(2)),
    );
    let busy = with_key("sim", "sk-busy");
    for _ in 0..2 {
        let err = chat(&ep, &busy).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
    // another key of the same endpoint is not affected
    chat(&ep, &with_key("sim", "sk-idle")).await.unwrap();
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(
        chat(&ep, &busy).await.unwrap_err().kind(),
        ErrorKind::RateLimited,
        "not before its time"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    chat(&ep, &busy).await.unwrap();
    let log = sim.requests_log();
    let at: Vec<Duration> = log.iter().map(|r| r.at).collect();
    assert_eq!(
        at,
        [0, 0, 0, 1999, 2000].map(Duration::from_millis),
        "the log reads the paused clock"
    );
    assert_eq!(sim.requests_by_key("sk-busy"), 4);
    assert_eq!(sim.requests_by_key("sk-idle"), 1);
}

#[tokio::test]
async fn a_key_limited_for_n_requests_answers_ok_after_them() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    sim.set_key(
        "sk-busy",
        KeyBehaviour::rate_limited_for(Duration::from_millis(1500), 2),
    );
    let busy = with_key("sim", "sk-busy");
    for _ in 0..2 {
        let err = chat(&ep, &busy).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        // retry-after-ms is the precise one
        assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
    }
    chat(&ep, &busy).await.unwrap();
    chat(&ep, &busy).await.unwrap();
    // `Always` keeps answering 429; `Ok` restores it
    sim.set_key(
        "sk-busy",
        KeyBehaviour::RateLimited {
            retry_after: Duration::from_secs(3),
            until: Until::Always,
        },
    );
    for _ in 0..3 {
        assert_eq!(
            chat(&ep, &busy).await.unwrap_err().kind(),
            ErrorKind::RateLimited
        );
    }
    sim.set_key("sk-busy", KeyBehaviour::Ok);
    chat(&ep, &busy).await.unwrap();
}

#[tokio::test]
async fn unauthorized_and_quota_exhausted_keys_answer_as_openai_does() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    sim.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    sim.set_key("sk-broke", KeyBehaviour::QuotaExceeded);
    for _ in 0..2 {
        let err = chat(&ep, &with_key("sim", "sk-revoked")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.provider_code(), Some("invalid_api_key"));
        let err = chat(&ep, &with_key("sim", "sk-broke")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
        assert_eq!(err.status(), Some(429));
        assert_eq!(err.retry_after(), None);
    }
    // streamed requests and other routes too
    let err = ep
        .post("/chat/completions")
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send(&with_key("sim", "sk-revoked"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    // unknown keys are answered normally
    chat(&ep, &with_key("sim", "sk-unknown")).await.unwrap();
}

#[tokio::test]
async fn rate_limit_headers_reach_the_attempts_response_meta_only_when_set() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    let meta = Arc::new(ResponseMeta::new());
    chat(&ep, &RequestContext::new().with_meta(meta.clone()))
        .await
        .unwrap();
    assert!(meta.rate_limits().is_none(), "no headers by default");

    sim.set_rate_limit_headers(Some(RateLimitHeaders::new(
        Some(SimWindow::new(60, 59, Duration::from_secs(1))),
        Some(SimWindow::new(1000, 900, Duration::from_millis(250))),
    )));
    let meta = Arc::new(ResponseMeta::new());
    chat(&ep, &RequestContext::new().with_meta(meta.clone()))
        .await
        .unwrap();
    let info = meta.rate_limits().expect("recorded");
    assert_eq!(
        (
            info.requests.limit,
            info.requests.remaining,
            info.requests.reset_after
        ),
        (Some(60), Some(59), Some(Duration::from_secs(1)))
    );
    assert_eq!(
        (
            info.tokens.limit,
            info.tokens.remaining,
            info.tokens.reset_after
        ),
        (Some(1000), Some(900), Some(Duration::from_millis(250)))
    );
    // streamed answers carry them too
    let meta = Arc::new(ResponseMeta::new());
    let ctx = RequestContext::new().with_meta(meta.clone());
    let mut events = ep
        .post("/chat/completions")
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send(&ctx)
        .await
        .unwrap()
        .sse();
    while events.next().await.is_some() {}
    assert_eq!(
        meta.rate_limits().and_then(|i| i.tokens.remaining),
        Some(900)
    );
    sim.set_rate_limit_headers(None);
    let meta = Arc::new(ResponseMeta::new());
    chat(&ep, &RequestContext::new().with_meta(meta.clone()))
        .await
        .unwrap();
    assert!(meta.rate_limits().is_none());
}

#[tokio::test]
async fn scripted_usage_replaces_the_counted_one() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ep = endpoint(&sim, Auth::Bearer);
    let counted = chat(&ep, &RequestContext::new()).await.unwrap();
    assert_eq!(counted["usage"]["prompt_tokens"], 3);
    sim.set_usage(Some(SimUsage::new(700, 11)));
    let ctx = RequestContext::new();
    let scripted = chat(&ep, &ctx).await.unwrap();
    assert_eq!(
        scripted["usage"],
        json!({"prompt_tokens": 700, "completion_tokens": 11, "total_tokens": 711})
    );
    // the streamed usage chunk
    let mut events = ep
        .post("/chat/completions")
        .json(
            &json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .send(&ctx)
        .await
        .unwrap()
        .sse();
    let mut usage = Value::Null;
    while let Some(ev) = events.next().await {
        let ev = ev.unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data)
            && !v["usage"].is_null()
        {
            usage = v["usage"].clone();
        }
    }
    assert_eq!(usage["prompt_tokens"], 700);
    assert_eq!(usage["completion_tokens"], 11);
    // completions, embeddings and Anthropic messages
    let v: Value = ep
        .post("/completions")
        .json(&json!({"model": "m", "prompt": "a b"}))
        .send(&ctx)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 11);
    let v: Value = ep
        .post("/embeddings")
        .json(&json!({"model": "m", "input": "a b"}))
        .send(&ctx)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 700);
    let v: Value = ep
        .post("/messages")
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}),
        )
        .send(&ctx)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 700, "output_tokens": 11})
    );
    sim.set_usage(None);
    let counted = chat(&ep, &ctx).await.unwrap();
    assert_eq!(counted["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn a_key_in_the_query_is_forwarded_but_never_recorded() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let proxy = infermux_testkit::RecordingProxy::start(&sim.url())
        .await
        .unwrap();
    let cfg = EndpointConfig::new("via-proxy", proxy.url()).unwrap();
    let ep = HttpEndpoint::new("test", cfg, Auth::None).unwrap();
    let secret = "sk-secret-in-query-123456";
    let r = ep
        .request(
            infermux_http::Method::GET,
            &format!("/v1/models?alt=json&key={secret}"),
        )
        .send_raw(&RequestContext::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the upstream got it
    assert!(
        sim.requests_log()
            .iter()
            .any(|r| r.path.contains("/v1/models")),
        "{:?}",
        sim.requests_log()
    );
    let yaml = proxy.cassette().to_yaml();
    assert!(!yaml.contains(secret), "{yaml}");
    assert!(yaml.contains("/v1/models?alt=json"), "{yaml}");
}
