//! The routed client: groups, model ids, keys, a dead endpoint routed around, fallbacks and
//! who served each answer — over real HTTP to the testkit simulator.

use infermux::openai_compat::OpenAiCompat;
use infermux::resilience::ResilienceConfig;
use infermux::resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux::{
    ApiKey, ChatRequest, Client, Deployment, EndpointConfig, ErrorKind, Message, ModelGroup,
    NamedKey, RequestContext, StreamAccumulator, Strategy,
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
    let served = r.served.clone().expect("a routed answer says who served it");
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
    assert_eq!((&*fb.from, fb.trigger, fb.hops), ("primary", ErrorKind::Server, 1));
    assert_eq!(served.attempts, 3 + 1, "three on primary, one on secondary");
    assert_eq!(down.requests(), 3);

    // a stream falls back the same way, before any content reached the caller
    let req = infermux::Request::Chat(ask("primary"));
    let (s, served) = client
        .stream_served(&req, RequestContext::new())
        .await
        .unwrap();
    assert_eq!(&*served.unwrap().group, "secondary");
    assert!(!StreamAccumulator::collect(s).await.unwrap().text().is_empty());

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
    let p = || {
        OpenAiCompat::new(EndpointConfig::new("a", "http://127.0.0.1:9/v1").unwrap()).unwrap()
    };
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
            .try_key("a", NamedKey::from_env("k", "INFERMUX_TEST_SURELY_UNSET_KEY_VAR"))
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
