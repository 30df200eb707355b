//! The routed client: groups, model ids, keys, a dead endpoint routed around, fallbacks and
//! who served each answer — over real HTTP to the testkit simulator.

use infermux::openai_compat::OpenAiCompat;
use infermux::resilience::ResilienceConfig;
use infermux::resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux::{
    ApiKey, ChatRequest, Client, Deployment, EndpointConfig, ErrorKind, Message, ModelGroup,
    NamedKey, RequestContext, Strategy, StreamAccumulator,
};
use infermux_testkit::{Fault, FaultPlan, Simulator};

async fn sim(plan: FaultPlan) -> Simulator {
    Simulator::start(plan).await.unwrap()
}

fn provider(name: &str, sim: &Simulator) -> OpenAiCompat {
    OpenAiCompat::new(EndpointConfig::new(name, format!("{}/v1", sim.url())).unwrap()).unwrap()
}

fn ask(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hello")]).with_max_tokens(8)
}

#[tokio::test]
async fn a_group_name_routes_to_its_deployment_and_the_model_id_is_rewritten() {
    let (a, b) = (sim(FaultPlan::none()).await, sim(FaultPlan::none()).await);
    let client = Client::builder()
        .endpoint(provider("a", &a))
        .endpoint(provider("b", &b))
        .group(ModelGroup::new("fast").deployment(Deployment::new("a", "model-a")))
        .group(ModelGroup::new("slow").deployment(Deployment::new("b", "model-b")))
        .build()
        .unwrap();
    let r = client.chat(ask("slow")).await.unwrap();
    let served = r
        .served
        .clone()
        .expect("a routed answer says who served it");
    assert_eq!(&*served.group, "slow");
    assert_eq!(served.endpoint.as_str(), "b");
    assert_eq!(&*served.model, "model-b");
    assert_eq!(served.attempts, 1);
    assert!(served.fallback.is_none());
    assert_eq!((a.requests(), b.requests()), (0, 1));
    // the wire carried the deployment's model id, not the group's name
    assert_eq!(r.model, "model-b");

    let e = client.chat(ask("no-such-group")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("fast, slow"), "{e}");
    assert_eq!(a.requests() + b.requests(), 1, "nothing was sent");
}

#[tokio::test]
async fn a_dead_endpoint_is_routed_around_and_its_breaker_opens() {
    let dead = sim(FaultPlan::seeded(1).with(Fault::Unavailable, 1.0)).await;
    let live = sim(FaultPlan::none()).await;
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(4))
        .with_minimum_calls(4);
    let client = Client::builder()
        .endpoint(provider("dead", &dead))
        .endpoint(provider("live", &live))
        .group(
            ModelGroup::new("chat")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::new("dead", "m"))
                .deployment(Deployment::new("live", "m")),
        )
        .resilience(ResilienceConfig::standard().with_breaker(Some(breaker)))
        .build()
        .unwrap();
    for _ in 0..60 {
        let r = client.chat(ask("chat")).await.unwrap();
        assert_eq!(r.served.unwrap().endpoint.as_str(), "live");
    }
    let dead_counters = &client.endpoint_counters()[0];
    assert_eq!(dead_counters.0.as_str(), "dead");
    assert!(dead_counters.1.breaker_trips >= 1, "{:?}", dead_counters.1);
    assert!(
        dead.requests() < 20,
        "an open breaker keeps calls off the dead endpoint: {}",
        dead.requests()
    );
}

#[tokio::test]
async fn a_refused_key_is_taken_out_after_one_request() {
    let s = sim(FaultPlan::none()).await;
    s.require_api_key("sk-good");
    let client = Client::builder()
        .endpoint(provider("s", &s))
        .key("s", NamedKey::new("revoked", ApiKey::new("sk-revoked")))
        .key("s", NamedKey::new("good", ApiKey::new("sk-good")))
        .group(ModelGroup::new("chat").deployment(Deployment::new("s", "m")))
        .build()
        .unwrap();
    for _ in 0..20 {
        let r = client.chat(ask("chat")).await.unwrap();
        assert_eq!(r.served.unwrap().key_alias.as_deref(), Some("good"));
    }
    // one request carried the revoked key (its 401), every other the good one
    assert_eq!(s.requests(), 21);
    let text = client.prometheus();
    assert!(!text.contains("sk-good") && !text.contains("sk-revoked"));
}

/// What breaks a Prometheus scrape: a family's `TYPE` line twice, a family's samples split by
/// another family, or one series (name and labels) twice.
fn scrape_faults(text: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let mut typed = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    let mut families_seen = std::collections::HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or("").to_owned();
            if !typed.insert(name.clone()) {
                faults.push(format!("TYPE twice: {name}"));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (id, _) = line.rsplit_once(' ').unwrap_or((line, ""));
        let name = id.split('{').next().unwrap_or(id);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name)
            .to_owned();
        if family != current {
            if !families_seen.insert(family.clone()) {
                faults.push(format!("samples of {family} split"));
            }
            current = family;
        }
        if !series.insert(id.to_owned()) {
            faults.push(format!("series twice: {id}"));
        }
    }
    faults
}

/// Two groups, and two deployments of one endpoint under one key: one scrape, each family's
/// `TYPE` once and each series once. Before, every group wrote its own `HELP`/`TYPE` lines
/// (strict parsers, `promtool` among them, refuse the whole scrape) and the two models'
/// members had one label set (one of them dropped as a duplicate).
#[tokio::test]
async fn one_scrape_of_several_groups_and_models_is_valid_prometheus_text() {
    let s = sim(FaultPlan::none()).await;
    let client = Client::builder()
        .endpoint(provider("a", &s))
        .group(
            ModelGroup::new("chat")
                .deployment(Deployment::new("a", "small"))
                .deployment(Deployment::new("a", "large")),
        )
        .group(ModelGroup::new("backup").deployment(Deployment::new("a", "small")))
        .build()
        .unwrap();
    client.chat(ask("chat")).await.unwrap();
    let text = client.prometheus();
    assert_eq!(scrape_faults(&text), Vec::<String>::new(), "{text}");
    assert!(text.contains(r#"pool="backup""#) && text.contains(r#"model="large""#));
    // the checker can fail: the same scrape twice has every fault
    let doubled = format!("{text}{text}");
    let faults = scrape_faults(&doubled);
    assert!(
        faults.iter().any(|f| f.starts_with("TYPE twice")),
        "{faults:?}"
    );
    assert!(
        faults.iter().any(|f| f.starts_with("series twice")),
        "{faults:?}"
    );
}

#[tokio::test]
async fn a_fallback_is_taken_on_its_trigger_and_the_answer_says_so() {
    let down = sim(FaultPlan::seeded(3).with(Fault::Unavailable, 1.0)).await;
    let backup = sim(FaultPlan::none()).await;
    let client = Client::builder()
        .endpoint(provider("down", &down))
        .endpoint(provider("backup", &backup))
        .group(ModelGroup::new("primary").deployment(Deployment::new("down", "big")))
        .group(ModelGroup::new("secondary").deployment(Deployment::new("backup", "small")))
        .fallback("primary", ["secondary"], [ErrorKind::Server])
        .build()
        .unwrap();
    let r = client.chat(ask("primary")).await.unwrap();
    let served = r.served.unwrap();
    assert_eq!(&*served.group, "secondary");
    let fb = served.fallback.expect("the fallback is on the answer");
    assert_eq!(
        (&*fb.from, fb.trigger, fb.hops),
        ("primary", ErrorKind::Server, 1)
    );
    assert_eq!(served.attempts, 3 + 1, "three on primary, one on secondary");
    assert_eq!(down.requests(), 3);

    // a stream falls back the same way, before any content reached the caller
    let req = infermux::Request::Chat(ask("primary"));
    let (s, served) = client
        .stream_served(&req, RequestContext::new())
        .await
        .unwrap();
    assert_eq!(&*served.unwrap().group, "secondary");
    assert!(
        !StreamAccumulator::collect(s)
            .await
            .unwrap()
            .text()
            .is_empty()
    );

    // an error kind outside the triggers does not fall back
    let strict = Client::builder()
        .endpoint(provider("down", &down))
        .endpoint(provider("backup", &backup))
        .group(ModelGroup::new("primary").deployment(Deployment::new("down", "big")))
        .group(ModelGroup::new("secondary").deployment(Deployment::new("backup", "small")))
        .fallback("primary", ["secondary"], [ErrorKind::ContextLength])
        .build()
        .unwrap();
    let e = strict.chat(ask("primary")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
}

#[test]
fn the_builder_refuses_what_does_not_exist() {
    let p =
        || OpenAiCompat::new(EndpointConfig::new("a", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    let cases = [
        Client::builder()
            .endpoint(p())
            .group(ModelGroup::new("g").deployment(Deployment::new("nope", "m")))
            .build()
            .unwrap_err(),
        Client::builder()
            .endpoint(p())
            .group(ModelGroup::new("g").deployment(Deployment::new("a", "m")))
            .fallback("g", ["missing"], [ErrorKind::Server])
            .build()
            .unwrap_err(),
        Client::builder()
            .endpoint(p())
            .try_key(
                "a",
                NamedKey::from_env("k", "INFERMUX_TEST_SURELY_UNSET_KEY_VAR"),
            )
            .build()
            .unwrap_err(),
        Client::builder()
            .endpoint(p())
            .key("b", NamedKey::new("k", ApiKey::new("sk-x")))
            .build()
            .unwrap_err(),
        Client::builder()
            .endpoint(p())
            .endpoint(p())
            .build()
            .unwrap_err(),
    ];
    for e in cases {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }
}

/// The requests of one call (one `X-Request-ID`), in arrival order.
fn by_request(log: &[infermux_testkit::SimRequest]) -> Vec<Vec<infermux_testkit::SimRequest>> {
    let mut calls: Vec<Vec<infermux_testkit::SimRequest>> = Vec::new();
    for r in log {
        match calls
            .iter_mut()
            .find(|c| c[0].request_id.is_some() && c[0].request_id == r.request_id)
        {
            Some(c) => c.push(r.clone()),
            None => calls.push(vec![r.clone()]),
        }
    }
    calls
}

fn three_keys(s: &Simulator) -> Client {
    Client::builder()
        .endpoint(provider("s", s))
        .key("s", NamedKey::new("throttled", ApiKey::new("sk-throttled")))
        .key("s", NamedKey::new("revoked", ApiKey::new("sk-revoked")))
        .key("s", NamedKey::new("ok", ApiKey::new("sk-ok")))
        .group(ModelGroup::new("chat").deployment(Deployment::new("s", "m")))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_retry_after_a_429_goes_to_another_key_on_the_wire() {
    use infermux_testkit::KeyBehaviour;
    use std::time::Duration;
    let s = sim(FaultPlan::none()).await;
    s.set_key(
        "sk-throttled",
        KeyBehaviour::rate_limited_for(Duration::from_secs(30), 1),
    );
    let client = three_keys(&s);
    // round-robin starts with the first key: the throttled one
    let r = client.chat(ask("chat")).await.unwrap();
    let served = r.served.unwrap();
    assert_eq!(served.attempts, 2);
    assert_eq!(
        served.key_alias.as_deref(),
        Some("revoked"),
        "the next key in turn"
    );
    let calls = by_request(&s.requests_log());
    assert_eq!(calls.len(), 1);
    let keys: Vec<_> = calls[0].iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(
        keys,
        ["sk-throttled", "sk-revoked"],
        "one call, two keys on the wire"
    );
}

#[tokio::test]
async fn three_keys_one_throttled_one_revoked_every_call_succeeds_and_the_429_key_returns_after_its_delay()
 {
    use infermux_testkit::KeyBehaviour;
    use std::time::Duration;
    let s = sim(FaultPlan::none()).await;
    let retry_after = Duration::from_secs(1);
    // the throttled key answers its first request with 429 + Retry-After: 1 s, then normally
    s.set_key(
        "sk-throttled",
        KeyBehaviour::rate_limited_for(retry_after, 1),
    );
    s.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    let client = three_keys(&s);
    let mut calls = 0;
    // load until the throttled key has been used again (bounded: it returns after ~1 s)
    while s.requests_by_key("sk-throttled") < 2 {
        let r = client.chat(ask("chat")).await.expect("every call succeeds");
        assert!(r.served.is_some());
        calls += 1;
        assert!(calls < 200_000, "the throttled key never came back");
    }
    let log = s.requests_log();
    let throttled: Vec<_> = log
        .iter()
        .filter(|r| r.key.as_deref() == Some("sk-throttled"))
        .map(|r| r.at)
        .collect();
    assert!(
        throttled[1] >= throttled[0] + retry_after,
        "the 429 key came back before its Retry-After: {throttled:?}"
    );
    assert_eq!(
        s.requests_by_key("sk-revoked"),
        1,
        "a 401 key is never tried again"
    );
    assert!(s.requests_by_key("sk-ok") >= 1);
    let pool = client.pool("chat").unwrap();
    let states: Vec<_> = pool
        .status()
        .iter()
        .map(|m| (m.key_alias.clone(), m.state.as_str()))
        .collect();
    assert_eq!(states[1].1, "removed", "{states:?}");
}

#[tokio::test]
async fn an_unbounded_timeout_is_no_deadline_not_a_panic() {
    let s = sim(FaultPlan::none()).await;
    let client = Client::builder()
        .endpoint(provider("s", &s))
        .group(ModelGroup::new("chat").deployment(Deployment::new("s", "m")))
        .timeout(std::time::Duration::MAX)
        .build()
        .unwrap();
    assert!(client.chat(ask("chat")).await.is_ok());
    let ctx = RequestContext::new().with_timeout(std::time::Duration::MAX);
    assert!(ctx.deadline().is_none());
    assert!(client.chat_with(ask("chat"), ctx).await.is_ok());
    // the single-endpoint client too
    let single = Client::builder()
        .provider(provider("s", &s))
        .timeout(std::time::Duration::MAX)
        .build()
        .unwrap();
    assert!(single.chat(ask("m")).await.is_ok());
}

#[tokio::test]
async fn the_resilience_queues_bound_is_the_groups_pools_bound() {
    // `[defaults.queue] max_queued = 0`: nothing waits; a request finding every permit busy
    // is queue_full at once, not left waiting in the group's pool (whose own default is 1024)
    let s = sim(FaultPlan::none()).await;
    let queue = infermux::resilience::queue::QueueConfig::standard()
        .with_permits(1)
        .with_max_queued(0);
    let client = Client::builder()
        .resilience(ResilienceConfig::standard().with_queue(queue))
        .endpoint(provider("a", &s))
        .build()
        .unwrap();
    s.push_fault(Fault::StallBeforeHeaders);
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("m")).await }
    });
    s.wait_stalled(1).await;
    let ctx = RequestContext::new().with_timeout(std::time::Duration::from_secs(5));
    let e = client.chat_with(ask("m"), ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
    s.release_stalls();
    first.await.unwrap().unwrap();
}

/// Two groups sending the same keys share what either learns: after a 429 in group `a`, a call
/// to group `b` does not send the throttled key again, nor the revoked one. Before, each
/// group's pool held its own state of each key, and `b`'s round-robin began on the throttled
/// key: a second 429 (and a second 401) let through.
#[tokio::test]
async fn groups_sending_the_same_keys_share_their_cooldowns_and_removals() {
    use infermux_testkit::KeyBehaviour;
    use std::time::Duration;
    let s = sim(FaultPlan::none()).await;
    s.set_key(
        "sk-throttled",
        KeyBehaviour::rate_limited_for(Duration::from_secs(30), 100),
    );
    s.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    let client = Client::builder()
        .endpoint(provider("s", &s))
        .key("s", NamedKey::new("throttled", ApiKey::new("sk-throttled")))
        .key("s", NamedKey::new("revoked", ApiKey::new("sk-revoked")))
        .key("s", NamedKey::new("ok", ApiKey::new("sk-ok")))
        .group(ModelGroup::new("a").deployment(Deployment::new("s", "m1")))
        .group(ModelGroup::new("b").deployment(Deployment::new("s", "m2")))
        .build()
        .unwrap();
    let first = client.chat(ask("a")).await.unwrap();
    assert_eq!(first.served.unwrap().key_alias.as_deref(), Some("ok"));
    assert_eq!(
        (
            s.requests_by_key("sk-throttled"),
            s.requests_by_key("sk-revoked")
        ),
        (1, 1)
    );
    for _ in 0..3 {
        let r = client.chat(ask("b")).await.unwrap();
        assert_eq!(r.served.unwrap().key_alias.as_deref(), Some("ok"));
    }
    assert_eq!(
        (
            s.requests_by_key("sk-throttled"),
            s.requests_by_key("sk-revoked")
        ),
        (1, 1),
        "group b learnt from group a"
    );
}

/// Through shared state (Redis), every group's pool is bound under one name: a key throttled in
/// group `a` of one client is held for group `b` of another client on the same state (another
/// process, in production). Before, each group was bound under its own name, so group `b`
/// never saw group `a`'s cooldown. And since shared state names a key by its alias, one alias
/// on keys of two endpoints is refused when the client is built.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_shared_state_every_group_holds_a_key_under_one_name() {
    use infermux::multiplex::SharedState;
    use infermux_testkit::KeyBehaviour;
    use std::time::Duration;
    let Some(url) = infermux_testkit::server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let ns = format!(
        "facade-groups-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let state = SharedState::redis(&url, &ns).unwrap();
    assert!(state.connect().await, "the shared redis answers");
    let s = sim(FaultPlan::none()).await;
    s.set_key(
        "sk-throttled",
        KeyBehaviour::rate_limited_for(Duration::from_secs(30), 100),
    );
    let client = |group: &str, model: &str| {
        Client::builder()
            .endpoint(provider("s", &s))
            .key("s", NamedKey::new("throttled", ApiKey::new("sk-throttled")))
            .key("s", NamedKey::new("ok", ApiKey::new("sk-ok")))
            .group(ModelGroup::new(group).deployment(Deployment::new("s", model)))
            .shared_state(state.clone())
            .build()
            .unwrap()
    };
    let (one, two) = (client("a", "m1"), client("b", "m2"));
    one.chat(ask("a")).await.unwrap();
    assert_eq!(s.requests_by_key("sk-throttled"), 1);
    for _ in 0..6 {
        let r = two.chat(ask("b")).await.unwrap();
        assert_eq!(r.served.unwrap().key_alias.as_deref(), Some("ok"));
    }
    assert_eq!(
        s.requests_by_key("sk-throttled"),
        1,
        "group b of the other client held the key group a cooled"
    );

    let other = sim(FaultPlan::none()).await;
    let e = Client::builder()
        .endpoint(provider("s", &s))
        .endpoint(provider("t", &other))
        .key("s", NamedKey::new("main", ApiKey::new("sk-s")))
        .key("t", NamedKey::new("main", ApiKey::new("sk-t")))
        .group(ModelGroup::new("a").deployment(Deployment::new("s", "m")))
        .group(ModelGroup::new("b").deployment(Deployment::new("t", "m")))
        .shared_state(state.clone())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("`main`"), "{e}");
    // nor an alias that reads as an endpoint's own key there
    let e = Client::builder()
        .endpoint(provider("s", &s))
        .key("s", NamedKey::new("@t", ApiKey::new("sk-s")))
        .shared_state(state)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("`@t`"), "{e}");
}

/// A deployment's weight is its share of the group whatever its number of keys: at weights
/// 1 and 1, an endpoint with three keys and one with one key each take half the calls.
/// Before, every key weighed the deployment's whole weight, and the three-key endpoint took
/// three quarters.
#[tokio::test]
async fn a_deployments_weight_is_its_share_whatever_its_number_of_keys() {
    let (a, b) = (sim(FaultPlan::none()).await, sim(FaultPlan::none()).await);
    let client = Client::builder()
        .endpoint(provider("a", &a))
        .endpoint(provider("b", &b))
        .key("a", NamedKey::new("a1", ApiKey::new("sk-a1")))
        .key("a", NamedKey::new("a2", ApiKey::new("sk-a2")))
        .key("a", NamedKey::new("a3", ApiKey::new("sk-a3")))
        .key("b", NamedKey::new("b1", ApiKey::new("sk-b1")))
        .group(
            ModelGroup::new("g")
                .strategy(Strategy::Weighted)
                .deployment(Deployment::new("a", "m"))
                .deployment(Deployment::new("b", "m")),
        )
        .build()
        .unwrap();
    for _ in 0..40 {
        client.chat(ask("g")).await.unwrap();
    }
    assert_eq!((a.requests(), b.requests()), (20, 20));
    // and a weight of 3 against 1 is three quarters, still whatever the keys
    let (c, d) = (sim(FaultPlan::none()).await, sim(FaultPlan::none()).await);
    let client = Client::builder()
        .endpoint(provider("c", &c))
        .endpoint(provider("d", &d))
        .key("c", NamedKey::new("c1", ApiKey::new("sk-c1")))
        .key("c", NamedKey::new("c2", ApiKey::new("sk-c2")))
        .group(
            ModelGroup::new("g")
                .strategy(Strategy::Weighted)
                .deployment(Deployment::new("c", "m").weight(1))
                .deployment(Deployment::new("d", "m").weight(3)),
        )
        .build()
        .unwrap();
    for _ in 0..40 {
        client.chat(ask("g")).await.unwrap();
    }
    assert_eq!((c.requests(), d.requests()), (10, 30));
}

/// Records spans' fields and, for each event, its message and the fields of the span it was
/// in (one thread: the tests' current-thread runtime).
mod capture {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Default)]
    pub(crate) struct Store {
        spans: Mutex<HashMap<u64, HashMap<String, String>>>,
        stack: Mutex<Vec<u64>>,
        /// (message, the fields of the span it was in)
        pub(crate) events: Mutex<Vec<(String, HashMap<String, String>)>>,
        next: AtomicU64,
    }

    #[derive(Clone, Default)]
    pub(crate) struct Capture(pub(crate) Arc<Store>);

    struct Fields<'a>(&'a mut HashMap<String, String>);
    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let id = self.0.next.fetch_add(1, Ordering::Relaxed) + 1;
            let mut fields = HashMap::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.spans.lock().unwrap().insert(id, fields);
            Id::from_u64(id)
        }
        fn record(&self, span: &Id, values: &Record<'_>) {
            if let Some(f) = self.0.spans.lock().unwrap().get_mut(&span.into_u64()) {
                values.record(&mut Fields(f));
            }
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = HashMap::new();
            event.record(&mut Fields(&mut fields));
            let message = fields.remove("message").unwrap_or_default();
            let current = self.0.stack.lock().unwrap().last().copied();
            let span = current
                .and_then(|id| self.0.spans.lock().unwrap().get(&id).cloned())
                .unwrap_or_default();
            self.0.events.lock().unwrap().push((message, span));
        }
        fn enter(&self, span: &Id) {
            self.0.stack.lock().unwrap().push(span.into_u64());
        }
        fn exit(&self, span: &Id) {
            let mut stack = self.0.stack.lock().unwrap();
            if let Some(i) = stack.iter().rposition(|s| *s == span.into_u64()) {
                stack.remove(i);
            }
        }
    }
}

/// The router's own events — "falling back", "served" — are told inside the call's span, so
/// a log line carries its request id and group. Before, they came after the span was left:
/// a `falling back` warning no log could tie to its request.
#[tokio::test]
async fn the_routers_events_carry_the_calls_request_id() {
    let down = sim(FaultPlan::seeded(3).with(Fault::Unavailable, 1.0)).await;
    let backup = sim(FaultPlan::none()).await;
    let client = Client::builder()
        .endpoint(provider("down", &down))
        .endpoint(provider("backup", &backup))
        .group(ModelGroup::new("primary").deployment(Deployment::new("down", "big")))
        .group(ModelGroup::new("secondary").deployment(Deployment::new("backup", "small")))
        .fallback("primary", ["secondary"], [ErrorKind::Server])
        .build()
        .unwrap();
    let cap = capture::Capture::default();
    let _g = tracing::subscriber::set_default(cap.clone());
    let ctx = RequestContext::new();
    let id = ctx.request_id().to_string();
    let req = infermux::Request::Chat(ask("primary"));
    client.call(&req, ctx).await.unwrap();
    let events = cap.0.events.lock().unwrap().clone();
    for message in ["falling back", "served"] {
        let (_, span) = events
            .iter()
            .find(|(m, _)| m == message)
            .unwrap_or_else(|| panic!("no `{message}` event in {events:?}"));
        assert_eq!(
            span.get("infermux.request_id").map(String::as_str),
            Some(id.as_str()),
            "`{message}` outside its call's span: {span:?}"
        );
    }
}
