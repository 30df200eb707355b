//! The client's cache and embedding batcher, over real HTTP to the testkit simulator: a repeated
//! request never reaches the server, a streamed one is replayed in order, failures are never
//! cached, namespaces (groups) never share an answer, and concurrent embedding calls go out
//! as fewer, larger requests.

use std::time::Duration;

use infermux::batching::BatchConfig;
use infermux::cache::CacheConfig;
use infermux::openai_compat::OpenAiCompat;
use infermux::resilience::ResilienceConfig;
use infermux::{
    CacheTier, ChatRequest, Client, Deployment, EmbeddingRequest, EndpointConfig, Message,
    ModelGroup, Request, RequestContext, StreamAccumulator,
};
use infermux_testkit::{Fault, FaultPlan, Simulator};

fn provider(name: &str, sim: &Simulator) -> OpenAiCompat {
    OpenAiCompat::new(EndpointConfig::new(name, format!("{}/v1", sim.url())).unwrap()).unwrap()
}

fn cache() -> CacheConfig {
    CacheConfig::new(Duration::from_secs(600), 1000).unwrap()
}

#[tokio::test]
async fn a_repeated_chat_is_answered_by_the_cache_and_never_reaches_the_server() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .cache(cache())
        .build()
        .unwrap();
    let ask = || ChatRequest::new("m", vec![Message::user("What is 2 + 2?")]).with_max_tokens(8);
    let first = client.chat(ask()).await.unwrap();
    assert!(
        first.cache.is_none(),
        "the first answer comes from the server"
    );
    let second = client.chat(ask()).await.unwrap();
    let hit = second
        .cache
        .clone()
        .expect("the second answer is a cache hit");
    assert_eq!(hit.tier, CacheTier::Exact);
    assert_eq!(second.text(), first.text());
    assert_eq!(
        sim.requests(),
        1,
        "the repeated request never reached the server"
    );
    // another question, and the same one for another tenant, are misses
    let other = ChatRequest::new("m", vec![Message::user("What is 3 + 3?")]).with_max_tokens(8);
    assert!(client.chat(other).await.unwrap().cache.is_none());
    let tenant = RequestContext::new().with_tenant("other-team");
    assert!(
        client
            .chat_with(ask(), tenant)
            .await
            .unwrap()
            .cache
            .is_none()
    );
    assert_eq!(sim.requests(), 3);
    let snap = client.cache().unwrap().snapshot();
    assert_eq!(snap.exact_hits, 1, "{snap:?}");
    assert!(
        client.prometheus().contains("infermux_cache"),
        "cache metrics are exported"
    );
}

/// Identical chats sent at once (a burst of retries, a page rendered by many users) reach the
/// server once: the first goes, the others wait for its answer.
#[tokio::test]
async fn identical_chats_sent_at_once_reach_the_server_once() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    // each request takes the server a while, so the calls overlap
    sim.set_request_cost(Some(Duration::from_millis(300)));
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .cache(cache())
        .build()
        .unwrap();
    let ask = || ChatRequest::new("m", vec![Message::user("What is 2 + 2?")]).with_max_tokens(8);
    let answers = futures_util::future::join_all((0..16).map(|_| client.chat(ask()))).await;
    let texts: Vec<_> = answers.iter().map(|a| a.as_ref().unwrap().text()).collect();
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:?}");
    let hits = answers
        .iter()
        .filter(|a| a.as_ref().unwrap().cache.is_some())
        .count();
    assert_eq!((sim.requests(), hits), (1, 15));
    let snap = client.cache().unwrap().snapshot();
    assert_eq!(snap.coalesced + snap.exact_hits, 15, "{snap:?}");
}

#[tokio::test]
async fn a_failed_call_is_never_cached() {
    let sim = Simulator::start(FaultPlan::seeded(3).with(Fault::Unavailable, 1.0))
        .await
        .unwrap();
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .resilience(ResilienceConfig::disabled())
        .cache(cache())
        .build()
        .unwrap();
    let ask = || ChatRequest::new("m", vec![Message::user("hi")]).with_max_tokens(8);
    assert!(client.chat(ask()).await.is_err());
    assert!(client.chat(ask()).await.is_err());
    assert_eq!(sim.requests(), 2, "the error was not served from the cache");
}

#[tokio::test]
async fn a_streamed_answer_is_replayed_from_the_cache_in_order() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .cache(cache())
        .build()
        .unwrap();
    let chat = ChatRequest::new("m", vec![Message::user("Tell me a story")]).with_max_tokens(16);
    let req = Request::Chat(chat.clone());
    let live = client
        .open_stream(&req, RequestContext::new())
        .await
        .unwrap();
    assert!(live.cache.is_none());
    let live = StreamAccumulator::collect(live.events).await.unwrap();
    let replay = client
        .open_stream(&req, RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        replay.cache.as_ref().map(|h| h.tier),
        Some(CacheTier::Exact)
    );
    let replay = StreamAccumulator::collect(replay.events).await.unwrap();
    assert_eq!(replay.text(), live.text());
    assert_eq!(sim.requests(), 1);
    // and a plain call of the same request is answered from the stored stream
    let Request::Chat(chat) = &req else {
        unreachable!()
    };
    let call = client.chat(chat.clone()).await.unwrap();
    assert_eq!(call.text(), live.text());
    assert_eq!(sim.requests(), 1);
}

#[tokio::test]
async fn two_groups_never_share_a_cached_answer() {
    let (a, b) = (
        Simulator::start(FaultPlan::none()).await.unwrap(),
        Simulator::start(FaultPlan::none()).await.unwrap(),
    );
    let client = Client::builder()
        .endpoint(provider("a", &a))
        .endpoint(provider("b", &b))
        .group(ModelGroup::new("fast").deployment(Deployment::new("a", "same-model")))
        .group(ModelGroup::new("slow").deployment(Deployment::new("b", "same-model")))
        .cache(cache())
        .build()
        .unwrap();
    let ask = |g: &str| ChatRequest::new(g, vec![Message::user("hello")]).with_max_tokens(8);
    client.chat(ask("fast")).await.unwrap();
    let r = client.chat(ask("slow")).await.unwrap();
    assert!(r.cache.is_none(), "another group is another namespace");
    assert_eq!((a.requests(), b.requests()), (1, 1));
    let again = client.chat(ask("fast")).await.unwrap();
    assert!(again.cache.is_some());
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn concurrent_embedding_calls_are_batched_and_each_caller_gets_its_own_vector() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let unbatched = Client::new(provider("sim", &sim));
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .batch_embeddings(
            BatchConfig::default()
                .with_max_items(64)
                .unwrap()
                .with_max_wait(Duration::from_millis(20))
                .unwrap(),
        )
        .build()
        .unwrap();
    let texts: Vec<String> = (0..32).map(|i| format!("sentence number {i}")).collect();
    let mut expected = Vec::new();
    for t in &texts {
        let r = unbatched
            .embed(EmbeddingRequest::new("e", [t.clone()]))
            .await
            .unwrap();
        expected.push(r.embeddings[0].clone());
    }
    let before = sim.requests();
    let calls = texts
        .iter()
        .map(|t| client.embed(EmbeddingRequest::new("e", [t.clone()])));
    let got = futures_util::future::join_all(calls).await;
    let sent = sim.requests() - before;
    assert!(
        sent < 32 / 4,
        "32 concurrent calls went out as {sent} requests"
    );
    for (g, e) in got.into_iter().zip(&expected) {
        assert_eq!(
            &g.unwrap().embeddings[0],
            e,
            "each caller gets its own vector"
        );
    }
    let stats = client.batch_stats().unwrap();
    assert_eq!(stats.submitted, 32, "{stats:?}");
    // and in the Prometheus text, beside the endpoints' counters
    let text = client.prometheus();
    assert!(
        text.contains("infermux_batch_items_submitted_total{batcher=\"embeddings\"} 32"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "infermux_batch_batches_total{{batcher=\"embeddings\"}} {}",
        stats.batches
    )));
}

/// A batch larger than the key's tokens-per-minute limit admits at once is refused by the
/// pool (`InvalidRequest`) — and sent again in halves that fit, so every caller gets its
/// vector (each caller alone would pass; together they all failed).
#[tokio::test]
async fn a_batch_too_large_for_the_keys_tpm_is_split_into_batches_that_fit() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let client = Client::builder()
        .endpoint(provider("sim", &sim))
        .key(
            "sim",
            infermux::NamedKey::new("k", infermux::ApiKey::new("sk-test")).with_tpm(20_000),
        )
        .group(ModelGroup::new("e").deployment(Deployment::new("sim", "e")))
        .batch_embeddings(
            BatchConfig::default()
                .with_max_wait(Duration::from_millis(20))
                .unwrap(),
        )
        .build()
        .unwrap();
    // four inputs just past the key's burst of 10 000 tokens together (each half fits, and
    // the second waits a moment for the limiter to refill)
    let text = |i: usize, words: usize| format!("{i} {}", "word ".repeat(words));
    let words = (2_000..)
        .find(|&w| 4 * infermux::estimate_tokens(&text(0, w)) > 10_050)
        .unwrap();
    let texts: Vec<String> = (0..4).map(|i| text(i, words)).collect();
    let calls = texts
        .iter()
        .map(|t| client.embed(EmbeddingRequest::new("e", [t.clone()])));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().embeddings.len(), 1);
    }
    let stats = client.batch_stats().unwrap();
    assert!(stats.splits >= 1, "{stats:?}");
}

#[cfg(feature = "anthropic")]
#[tokio::test]
async fn a_semantic_tier_through_a_group_the_client_lacks_fails_at_build() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let verifier = std::sync::Arc::new(infermux::cache::verify::LexicalVerifier::new());
    let with_groups = |embed_group: &str| {
        Client::builder()
            .endpoint(provider("sim", &sim))
            .group(ModelGroup::new("chat").deployment(Deployment::new("sim", "m")))
            .group(ModelGroup::new("embed").deployment(Deployment::new("sim", "e")))
            .semantic_cache(infermux::SemanticCache::via_group(
                embed_group,
                verifier.clone(),
            ))
            .build()
    };
    let err = with_groups("embeds").unwrap_err();
    assert_eq!(err.kind(), infermux::ErrorKind::Config);
    assert!(err.to_string().contains("`embeds`"), "{err}");
    assert!(err.to_string().contains("chat, embed"), "{err}");
    with_groups("embed").unwrap();
    // a single endpoint takes any model name
    Client::builder()
        .provider(provider("sim", &sim))
        .semantic_cache(infermux::SemanticCache::via_group(
            "anything",
            verifier.clone(),
        ))
        .build()
        .unwrap();
    // a group (or a lone endpoint) that cannot embed: every lookup's embedding would fail
    let claude = || {
        infermux::anthropic::Anthropic::new(
            EndpointConfig::new("claude", "http://127.0.0.1:9/v1").unwrap(),
        )
        .unwrap()
    };
    let err = Client::builder()
        .endpoint(provider("sim", &sim))
        .endpoint(claude())
        .group(
            ModelGroup::new("chat")
                .deployment(Deployment::new("sim", "m"))
                .deployment(Deployment::new("claude", "c")),
        )
        .semantic_cache(infermux::SemanticCache::via_group("chat", verifier.clone()))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), infermux::ErrorKind::Config);
    assert!(
        err.to_string().contains("claude") && err.to_string().contains("no embeddings"),
        "{err}"
    );
    assert!(!err.to_string().contains("sim,"), "{err}");
    let err = Client::builder()
        .provider(claude())
        .semantic_cache(infermux::SemanticCache::via_group("anything", verifier))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no embeddings"), "{err}");
}

#[tokio::test]
async fn an_answer_a_fallback_group_gave_is_not_cached_for_the_group_asked() {
    let (primary, backup) = (
        Simulator::start(FaultPlan::none()).await.unwrap(),
        Simulator::start(FaultPlan::none()).await.unwrap(),
    );
    let client = Client::builder()
        .resilience(ResilienceConfig::disabled())
        .endpoint(provider("primary", &primary))
        .endpoint(provider("backup", &backup))
        .group(ModelGroup::new("big").deployment(Deployment::new("primary", "big-model")))
        .group(ModelGroup::new("small").deployment(Deployment::new("backup", "small-model")))
        .fallback("big", ["small"], [infermux::ErrorKind::Server])
        .cache(cache())
        .build()
        .unwrap();
    let ask = || ChatRequest::new("big", vec![Message::user("hello")]).with_max_tokens(8);
    // the primary fails once: the backup answers
    primary.push_fault(Fault::Unavailable);
    let r = client.chat(ask()).await.unwrap();
    assert_eq!(&*r.served.unwrap().group, "small");
    // the primary is back: the group asked answers, not the backup's cached answer
    let r = client.chat(ask()).await.unwrap();
    assert!(
        r.cache.is_none(),
        "a fallback's answer was cached for `big`"
    );
    assert_eq!(&*r.served.unwrap().group, "big");
    assert_eq!((primary.requests(), backup.requests()), (2, 1));
    // and that answer is cached
    assert!(client.chat(ask()).await.unwrap().cache.is_some());

    // a stream the same way
    let req = Request::Chat(ChatRequest::new("big", vec![Message::user("stream me")]));
    primary.push_fault(Fault::Unavailable);
    let opened = client
        .open_stream(&req, RequestContext::new())
        .await
        .unwrap();
    assert_eq!(&*opened.served.unwrap().group, "small");
    StreamAccumulator::collect(opened.events).await.unwrap();
    let opened = client
        .open_stream(&req, RequestContext::new())
        .await
        .unwrap();
    assert!(
        opened.cache.is_none(),
        "a fallback's stream was cached for `big`"
    );
    assert_eq!(&*opened.served.unwrap().group, "big");
    StreamAccumulator::collect(opened.events).await.unwrap();
}

/// A semantic tier embedding through a group that answered through its fallback (another
/// model's vectors, of the same size maybe) stores nothing and answers nothing from them: a
/// miss counted as an embedder error. Before, the fallback's vectors went into the group's
/// index beside the group's own.
#[tokio::test]
async fn vectors_a_fallback_gave_are_not_used_by_the_semantic_tier() {
    let (primary, backup) = (
        Simulator::start(FaultPlan::none()).await.unwrap(),
        Simulator::start(FaultPlan::none()).await.unwrap(),
    );
    let verifier = std::sync::Arc::new(infermux::cache::verify::LexicalVerifier::new());
    let client = Client::builder()
        .resilience(ResilienceConfig::disabled())
        .endpoint(provider("primary", &primary))
        .endpoint(provider("backup", &backup))
        .group(ModelGroup::new("chat").deployment(Deployment::new("primary", "m")))
        .group(ModelGroup::new("emb").deployment(Deployment::new("primary", "e")))
        .group(ModelGroup::new("emb2").deployment(Deployment::new("backup", "e2")))
        .fallback("emb", ["emb2"], [infermux::ErrorKind::Server])
        .semantic_cache(infermux::SemanticCache::via_group("emb", verifier))
        .build()
        .unwrap();
    let ask = || ChatRequest::new("chat", vec![Message::user("what is the capital of france")]);
    // the lookup's embedding fails on the primary, the backup answers it
    primary.push_fault(Fault::Unavailable);
    let r = client.chat(ask()).await.unwrap();
    assert!(r.cache.is_none());
    assert_eq!(backup.requests(), 1, "the fallback group embedded");
    let s = client.cache().unwrap().snapshot();
    assert_eq!(s.semantic_stores, 0, "{s:?}");
    assert!(s.embed_errors >= 1, "{s:?}");
}

/// The client's timeout is one deadline over a call's batch wait and its call: a caller whose
/// batch would flush after the deadline gets its `Timeout` at the deadline. Before, the
/// caller's context had no deadline while it waited for the batch (the wait was bounded by
/// the batch's own flush only), and the call then got a whole timeout of its own.
#[tokio::test]
async fn the_clients_timeout_bounds_a_calls_batch_wait_too() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let client = Client::builder()
        .provider(provider("sim", &sim))
        .timeout(Duration::from_millis(300))
        .batch_embeddings(
            BatchConfig::default()
                .with_max_items(64)
                .unwrap()
                .with_max_wait(Duration::from_secs(5))
                .unwrap(),
        )
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        client.embed(EmbeddingRequest::new("e", ["alone in its batch"])),
    )
    .await
    .expect("the call ends at its deadline, not at the batch's flush");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), infermux::ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // (its 300 ms deadline ended it, not the batch's 5 s)
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.requests(), 0, "nothing was sent");
}

/// A batch of several callers' inputs refused for one too-long input does not fall back
/// whole to another group: the batch is split, the short input gets the asked group's vector
/// (no fallback), and only the long input falls back, alone. Before, the whole batch fell back
/// and every caller got the other model's vectors (another vector space).
#[tokio::test]
async fn one_too_long_input_falls_back_alone_not_with_its_batch() {
    use infermux_testkit::{Reply, Scripted};
    let vectors = |req: &infermux_testkit::IncomingRequest, long_refused: bool, value: f64| {
        let body = req.json().unwrap_or_default();
        let inputs: Vec<String> = match &body["input"] {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        if long_refused && inputs.iter().any(|s| s.len() > 100) {
            return Reply::json(
                400,
                &serde_json::json!({"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}),
            );
        }
        vectors_reply(inputs.len(), value)
    };
    let primary = Scripted::start(move |req| vectors(req, true, 1.0))
        .await
        .unwrap();
    let backup = Scripted::start(move |req| vectors(req, false, 2.0))
        .await
        .unwrap();
    let client = batching_with_fallback(&primary, &backup, infermux::ErrorKind::ContextLength);
    let long = "word ".repeat(100);
    let (short, long) = tokio::join!(
        client.embed(EmbeddingRequest::new("emb", ["short"])),
        client.embed(EmbeddingRequest::new("emb", [long.as_str()])),
    );
    let (short, long) = (short.unwrap(), long.unwrap());
    assert_eq!(
        short.embeddings,
        vec![vec![1.0f32]],
        "the asked group's vector"
    );
    let served = short.served.expect("routed");
    assert_eq!(&*served.group, "emb");
    assert!(served.fallback.is_none(), "{served:?}");
    assert_eq!(
        long.embeddings,
        vec![vec![2.0f32]],
        "the long input fell back alone"
    );
    assert!(long.served.unwrap().fallback.is_some());
    let first = primary.requests()[0].json().unwrap();
    assert_eq!(
        first["input"].as_array().map(Vec::len),
        Some(2),
        "one batch first: {first}"
    );
}

/// A batch refused whole for what it asks (a parameter the model does not take), with a
/// fallback on that refusal, still falls back whole: one request to the fallback group for
/// both callers, not a split whose parts would fail once the split budget was spent.
#[tokio::test]
async fn a_batch_refused_whole_falls_back_whole() {
    use infermux_testkit::{Reply, Scripted};
    let primary = Scripted::start(|_| {
        Reply::json(
            400,
            &serde_json::json!({"error": {"message": "dimensions is not supported by this model"}}),
        )
    })
    .await
    .unwrap();
    let backup = Scripted::start(|req| {
        let n = req.json().unwrap_or_default()["input"]
            .as_array()
            .map_or(1, Vec::len);
        vectors_reply(n, 2.0)
    })
    .await
    .unwrap();
    let client = batching_with_fallback(&primary, &backup, infermux::ErrorKind::InvalidRequest);
    let (a, b) = tokio::join!(
        client.embed(EmbeddingRequest::new("emb", ["one"])),
        client.embed(EmbeddingRequest::new("emb", ["two"])),
    );
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!(r.embeddings, vec![vec![2.0f32]]);
        assert!(r.served.unwrap().fallback.is_some());
    }
    assert_eq!(primary.requests().len(), 1, "refused once, not split");
    assert_eq!(backup.requests().len(), 1, "one fallback request for both");
}

/// An OpenAI embeddings answer of `n` one-dimension vectors, each `[value]`.
fn vectors_reply(n: usize, value: f64) -> infermux_testkit::Reply {
    let data: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"object": "embedding", "index": i, "embedding": [value]}))
        .collect();
    infermux_testkit::Reply::json(
        200,
        &serde_json::json!({"object": "list", "model": "m", "data": data}),
    )
}

/// A client batching embeddings two at a time (flushed when both are in: one batch, whatever
/// the machine's pace) for group `emb` on `primary`, falling back on `on` to group
/// `emb-large` on `backup`.
fn batching_with_fallback(
    primary: &infermux_testkit::Scripted,
    backup: &infermux_testkit::Scripted,
    on: infermux::ErrorKind,
) -> Client {
    let compat = |name: &str, url: String| {
        OpenAiCompat::new(EndpointConfig::new(name, format!("{url}/v1")).unwrap()).unwrap()
    };
    Client::builder()
        .resilience(ResilienceConfig::disabled())
        .endpoint(compat("primary", primary.url()))
        .endpoint(compat("backup", backup.url()))
        .group(ModelGroup::new("emb").deployment(Deployment::new("primary", "small")))
        .group(ModelGroup::new("emb-large").deployment(Deployment::new("backup", "large")))
        .fallback("emb", ["emb-large"], [on])
        .batch_embeddings(
            BatchConfig::default()
                .with_max_items(2)
                .unwrap()
                .with_max_wait(Duration::from_secs(5))
                .unwrap(),
        )
        .build()
        .unwrap()
}
