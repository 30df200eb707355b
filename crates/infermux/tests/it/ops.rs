//! Operations outside the `Request` enum through the client's pools and call policy: keys
//! rotated after a 429, a non-idempotent upload retried only when it never reached the server,
//! the breaker fed by their failures, operations run on every endpoint of a group, and an
//! operation a member does not offer refused before anything is sent — over real HTTP to the
//! testkit simulator.

use std::time::Duration;

use infermux::openai_compat::OpenAiCompat;
use infermux::openai_compat::media::SpeechRequest;
use infermux::resilience::ResilienceConfig;
use infermux::resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux::{
    ApiKey, BreakerState, Client, Deployment, EndpointConfig, ErrorKind, Idempotency, ModelGroup,
    NamedKey, Op, RequestContext, StopReason, Strategy,
};
use infermux_testkit::{Fault, FaultPlan, KeyBehaviour, Simulator};

async fn sim() -> Simulator {
    Simulator::start(FaultPlan::none()).await.unwrap()
}

fn compat(name: &str, base: &str) -> OpenAiCompat {
    OpenAiCompat::new(EndpointConfig::new(name, format!("{base}/v1")).unwrap()).unwrap()
}

/// A base URL nothing listens on: a connection to it is refused, so it never reached a server.
async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn speech() -> SpeechRequest {
    SpeechRequest::new("tts-1", "Hello there.", "alloy")
}

#[tokio::test]
async fn speech_after_a_429_goes_to_another_key_and_the_throttled_key_cools() {
    let s = sim().await;
    s.set_key(
        "sk-busy",
        KeyBehaviour::rate_limited_for(Duration::from_secs(30), 100),
    );
    let client = Client::builder()
        .endpoint(compat("ep", &s.url()))
        .key("ep", NamedKey::new("busy", ApiKey::new("sk-busy")))
        .key("ep", NamedKey::new("free", ApiKey::new("sk-free")))
        .group(
            ModelGroup::new("tts")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::any_model("ep")),
        )
        .build()
        .unwrap();
    for _ in 0..6 {
        let ran = client
            .speech(Some("tts"), &speech(), RequestContext::new())
            .await
            .unwrap();
        assert!(ran.value.starts_with(b"ID3sim:alloy:Hello there."));
        let served = ran.served.expect("a routed client says who served");
        assert_eq!(served.key_alias.as_deref(), Some("free"));
    }
    // on the wire: round robin tried the throttled key first, once; right after its 429 the
    // same call went to the other key; then it stayed cooled for its Retry-After
    let keys: Vec<_> = s
        .requests_log()
        .into_iter()
        .map(|r| r.key.unwrap_or_default())
        .collect();
    assert_eq!(keys[..2], ["sk-busy", "sk-free"], "{keys:?}");
    assert!(keys[2..].iter().all(|k| k == "sk-free"), "{keys:?}");
    assert_eq!(keys.len(), 7);
    // the attempts are the endpoint's: counted like calls
    let c = client.counters();
    assert_eq!(c.requests, 7);
    assert_eq!(c.successes, 6);
}

#[tokio::test]
async fn a_non_idempotent_upload_is_not_retried_after_a_5xx_but_speech_is() {
    let s = sim().await;
    let client = Client::new(compat("ep", &s.url()));
    s.push_fault(Fault::Unavailable);
    let e = client
        .upload_file(None, "batch.jsonl", b"{}\n", "batch", RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.stop_reason(), Some(StopReason::NotIdempotent), "{e:?}");
    assert_eq!(
        s.requests(),
        1,
        "the upload may have been stored: not repeated"
    );
    assert!(e.request_id().is_some(), "{e:?}");

    s.push_fault(Fault::Unavailable);
    let ran = client
        .speech(None, &speech(), RequestContext::new())
        .await
        .unwrap();
    assert!(!ran.value.is_empty());
    assert_eq!(s.requests(), 3, "speech is idempotent: retried once");

    let ran = client
        .upload_file(None, "batch.jsonl", b"{}\n", "batch", RequestContext::new())
        .await
        .unwrap();
    assert_eq!(ran.value.bytes, Some(3));
    assert_eq!(ran.value.purpose.as_deref(), Some("batch"));
}

#[tokio::test]
async fn an_upload_refused_at_connect_is_retried_on_the_other_endpoint() {
    let live = sim().await;
    let dead = refused_url().await;
    let client = Client::builder()
        .endpoint(compat("dead", &dead))
        .endpoint(compat("live", &live.url()))
        .group(
            ModelGroup::new("files")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::any_model("dead"))
                .deployment(Deployment::any_model("live")),
        )
        .build()
        .unwrap();
    for _ in 0..3 {
        let ran = client
            .upload_file(
                Some("files"),
                "a.jsonl",
                b"{}\n",
                "batch",
                RequestContext::new(),
            )
            .await
            .unwrap();
        let served = ran.served.unwrap();
        assert_eq!(served.endpoint.as_str(), "live");
        assert_eq!(&*served.group, "files");
    }
    assert_eq!(live.requests(), 3, "each upload stored once");
    let dead_counters = client
        .endpoint_counters()
        .into_iter()
        .find(|(id, _)| id.as_str() == "dead")
        .unwrap()
        .1;
    assert!(dead_counters.requests >= 1, "the dead endpoint was tried");
    assert_eq!(dead_counters.successes, 0);
}

#[tokio::test]
async fn failed_operations_open_the_endpoints_breaker_for_every_call() {
    let s = Simulator::start(FaultPlan::seeded(1).with(Fault::Unavailable, 1.0))
        .await
        .unwrap();
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(4))
        .with_minimum_calls(4);
    let client = Client::builder()
        .provider(compat("ep", &s.url()))
        .resilience(ResilienceConfig::standard().with_breaker(Some(breaker)))
        .build()
        .unwrap();
    for _ in 0..4 {
        let _ = client
            .upload_file(None, "a.jsonl", b"{}\n", "batch", RequestContext::new())
            .await
            .unwrap_err();
    }
    assert_eq!(s.requests(), 4);
    assert_eq!(client.counters().breaker(), BreakerState::Open);
    let sent = s.requests();
    let e = client
        .speech(None, &speech(), RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen, "{e}");
    // a refusal before any attempt never reached the server, and says so (a non-idempotent
    // operation may be tried again)
    let e = client
        .upload_file(None, "a.jsonl", b"{}\n", "batch", RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen, "{e}");
    assert_eq!(e.reached_server(), Some(false), "{e:?}");
    assert_ne!(e.stop_reason(), Some(StopReason::NotIdempotent), "{e:?}");
    assert_eq!(s.requests(), sent, "an open breaker sends nothing");
}

#[tokio::test]
async fn an_operation_a_member_does_not_offer_is_refused_before_anything_is_sent() {
    let s = sim().await;
    let single = Client::new(compat("ep", &s.url()));
    let op = Op::new("lora", Idempotency::NonIdempotent);
    let e = single
        .run_op::<infermux::vllm::Vllm, (), _, _>(None, op, RequestContext::new(), |t| async move {
            t.provider.load_lora_adapter("x", "/x", &t.ctx).await
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("`ep`"), "{e}");
    let e = single
        .count_tokens(
            None,
            &infermux::ChatRequest::new("m", vec![]),
            RequestContext::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = single
        .speech(Some("nope"), &speech(), RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // a group mixing providers: refused as a whole, even when the first member would do
    let anthropic = infermux::anthropic::Anthropic::new(
        EndpointConfig::new("claude", format!("{}/v1", s.url())).unwrap(),
    )
    .unwrap();
    let routed = Client::builder()
        .endpoint(compat("ep", &s.url()))
        .endpoint(anthropic)
        .group(
            ModelGroup::new("mixed")
                .deployment(Deployment::any_model("ep"))
                .deployment(Deployment::any_model("claude")),
        )
        .build()
        .unwrap();
    let e = routed
        .speech(Some("mixed"), &speech(), RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("`claude`"), "{e}");
    let e = routed
        .speech(Some("absent"), &speech(), RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(s.requests(), 0);
}

#[tokio::test]
async fn count_tokens_goes_through_the_pool_with_the_deployments_model() {
    let s = sim().await;
    s.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    let anthropic = infermux::anthropic::Anthropic::new(
        EndpointConfig::new("claude", format!("{}/v1", s.url())).unwrap(),
    )
    .unwrap();
    let client = Client::builder()
        .endpoint(anthropic)
        .key(
            "claude",
            NamedKey::new("revoked", ApiKey::new("sk-revoked")),
        )
        .key("claude", NamedKey::new("good", ApiKey::new("sk-good")))
        .group(
            ModelGroup::new("chat")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::new("claude", "claude-x")),
        )
        .build()
        .unwrap();
    let req =
        infermux::ChatRequest::new("chat", vec![infermux::Message::user("one two three four")]);
    for _ in 0..3 {
        let ran = client
            .count_tokens(Some("chat"), &req, RequestContext::new())
            .await
            .unwrap();
        assert_eq!(ran.value, 4);
        let served = ran.served.unwrap();
        assert_eq!(&*served.model, "claude-x");
        assert_eq!(served.key_alias.as_deref(), Some("good"));
    }
    // round robin tried the revoked key first: it answered 401 once and was taken out
    assert_eq!(s.requests_by_key("sk-revoked"), 1);
    assert_eq!(s.requests_by_key("sk-good"), 3);
}

fn vllm(name: &str, base: &str) -> infermux::vllm::Vllm {
    infermux::vllm::Vllm::new(EndpointConfig::new(name, base).unwrap()).unwrap()
}

#[tokio::test]
async fn lora_adapters_load_on_every_endpoint_of_a_group_once() {
    let (a, b) = (sim().await, sim().await);
    let dead = refused_url().await;
    a.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    let client = Client::builder()
        .endpoint(vllm("a", &a.url()))
        .endpoint(vllm("b", &b.url()))
        .endpoint(vllm("dead", &dead))
        .key("a", NamedKey::new("revoked", ApiKey::new("sk-revoked")))
        .key("a", NamedKey::new("ka", ApiKey::new("sk-a")))
        .group(
            ModelGroup::new("llama")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::any_model("a"))
                .deployment(Deployment::any_model("b"))
                .deployment(Deployment::any_model("dead")),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // a chat through the group meets the revoked key first: the pool takes it out
    let chat = infermux::ChatRequest::new("llama", vec![infermux::Message::user("hi")]);
    client.chat(chat).await.unwrap();
    assert_eq!(a.requests_by_key("sk-revoked"), 1);
    let (sent_a, sent_b) = (a.requests(), b.requests());

    let each = client
        .load_lora_adapter(Some("llama"), "sql", "/adapters/sql", RequestContext::new())
        .await
        .unwrap();
    let names: Vec<_> = each.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(names, ["a", "b", "dead"]);
    assert!(each[0].1.is_ok() && each[1].1.is_ok(), "{each:?}");
    assert_eq!(each[2].1.as_ref().unwrap_err().kind(), ErrorKind::Connect);
    // endpoint a's usable key went to it (not the removed one), and to no other endpoint
    assert_eq!(a.requests_by_key("sk-revoked"), 1);
    assert_eq!(a.requests_by_key("sk-a"), a.requests() - 1);
    assert_eq!(b.requests_by_key("sk-a"), 0);
    assert_eq!((a.requests(), b.requests()), (sent_a + 1, sent_b + 1));

    // a second load reached each server and was refused: not repeated
    let again = client
        .load_lora_adapter(Some("llama"), "sql", "/adapters/sql", RequestContext::new())
        .await
        .unwrap();
    for (id, r) in &again[..2] {
        assert_eq!(
            r.as_ref().unwrap_err().kind(),
            ErrorKind::InvalidRequest,
            "{id}"
        );
    }
    assert_eq!((a.requests(), b.requests()), (sent_a + 2, sent_b + 2));

    // a load answered 503 may have been applied: not repeated (non-idempotent), while the
    // other endpoint's load goes through
    a.push_fault(Fault::Unavailable);
    let fresh = client
        .load_lora_adapter(
            Some("llama"),
            "chat",
            "/adapters/chat",
            RequestContext::new(),
        )
        .await
        .unwrap();
    let e = fresh[0].1.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.stop_reason(), Some(StopReason::NotIdempotent), "{e:?}");
    assert!(fresh[1].1.is_ok(), "{fresh:?}");
    assert_eq!((a.requests(), b.requests()), (sent_a + 3, sent_b + 3));
    let gone = client
        .unload_lora_adapter(Some("llama"), "sql", RequestContext::new())
        .await
        .unwrap();
    assert!(gone[0].1.is_ok() && gone[1].1.is_ok(), "{gone:?}");
}

#[tokio::test]
async fn a_model_pull_reaches_every_ollama_endpoint() {
    let (a, b) = (sim().await, sim().await);
    let ollama = |name: &str, sim: &Simulator| {
        infermux::ollama::Ollama::new(EndpointConfig::new(name, sim.url()).unwrap()).unwrap()
    };
    let client = Client::builder()
        .endpoint(ollama("a", &a))
        .endpoint(ollama("b", &b))
        .build()
        .unwrap();
    let each = client
        .pull_model(None, "smollm2:135m", RequestContext::new())
        .await
        .unwrap();
    assert_eq!(each.len(), 2);
    for (id, r) in each {
        let lines = r.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(lines.last().unwrap().status, "success", "{id}");
    }
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn any_provider_method_runs_through_the_policy_with_the_leased_key() {
    let s = sim().await;
    s.set_key("sk-1", KeyBehaviour::Unauthorized);
    let client = Client::builder()
        .endpoint(compat("ep", &s.url()))
        .key("ep", NamedKey::new("one", ApiKey::new("sk-1")))
        .key("ep", NamedKey::new("two", ApiKey::new("sk-2")))
        .group(
            ModelGroup::new("g")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::any_model("ep")),
        )
        .build()
        .unwrap();
    let op = Op::new("speech.direct", Idempotency::Idempotent);
    let mut leased = Vec::new();
    let ran = client
        .run_op::<OpenAiCompat, _, _, _>(Some("g"), op, RequestContext::new(), |t| {
            leased.push((t.ctx.attempt(), t.ctx.key().map(|k| k.alias().to_owned())));
            async move { t.provider.media().speech(&speech(), &t.ctx).await }
        })
        .await
        .unwrap();
    assert!(!ran.value.is_empty());
    // attempt 1 leased key one (401), attempt 2 key two, each sent on the wire
    assert_eq!(
        leased,
        [(1, Some("one".to_owned())), (2, Some("two".to_owned()))]
    );
    let served = ran.served.unwrap();
    assert_eq!(served.key_alias.as_deref(), Some("two"));
    assert_eq!(served.attempts, 2);
    assert_eq!(s.requests_by_key("sk-1"), 1);
    assert_eq!(s.requests_by_key("sk-2"), 1);
}

/// An operation's attempt is held once, boxed by the call policy: before, each layer that
/// awaited it (the policy's attempt and its deadline) held it again inline, and these futures
/// were over 15 KiB (this test failed at 15 584 bytes for speech in the debug build).
#[test]
fn media_operations_futures_hold_their_attempt_once() {
    use infermux::openai_compat::media::TranscriptionRequest;
    let client = Client::new(compat("local", "http://127.0.0.1:9"));
    let transcription = TranscriptionRequest::new("whisper-1", "a.wav", vec![0; 16]);
    let sizes = [
        (
            "speech",
            size_of_val(&client.speech(None, &speech(), RequestContext::new())),
        ),
        (
            "transcribe",
            size_of_val(&client.transcribe(None, &transcription, RequestContext::new())),
        ),
        (
            "upload_file",
            size_of_val(&client.upload_file(None, "a", b"", "batch", RequestContext::new())),
        ),
    ];
    for (op, size) in sizes {
        assert!(size <= 8 * 1024, "{op}'s future is {size} bytes");
    }
}

/// An operation on every endpoint keeps each endpoint's one key: a 401 on it is not repeated
/// (there is no other key to move to), nor is a 429 before its Retry-After. Before, the
/// key-moving policy retried both at once on the same key, up to once per member.
#[tokio::test]
async fn an_operation_on_every_endpoint_does_not_repeat_a_refused_key() {
    let (a, b) = (sim().await, sim().await);
    a.set_key("sk-only", KeyBehaviour::Unauthorized);
    b.set_key(
        "sk-slow",
        KeyBehaviour::rate_limited_for(Duration::from_secs(30), 100),
    );
    let client = Client::builder()
        .endpoint(vllm("a", &a.url()))
        .endpoint(vllm("b", &b.url()))
        .key("a", NamedKey::new("only", ApiKey::new("sk-only")))
        .key("a", NamedKey::new("spare", ApiKey::new("sk-spare")))
        .key("b", NamedKey::new("slow", ApiKey::new("sk-slow")))
        .group(
            ModelGroup::new("llama")
                .deployment(Deployment::any_model("a"))
                .deployment(Deployment::any_model("b")),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let each = client
        .load_lora_adapter(Some("llama"), "sql", "/adapters/sql", RequestContext::new())
        .await
        .unwrap();
    assert_eq!(each[0].1.as_ref().unwrap_err().kind(), ErrorKind::Auth);
    assert_eq!(
        each[1].1.as_ref().unwrap_err().kind(),
        ErrorKind::RateLimited
    );
    assert_eq!(a.requests_by_key("sk-only"), 1, "the 401 is not repeated");
    assert_eq!(
        b.requests_by_key("sk-slow"),
        1,
        "the 429 is not repeated at once"
    );
}
