//! `infermux demo`: chat requests through one routed client — a pool of two endpoints × two
//! keys, one key throttled (429 + Retry-After) and one endpoint down, plus a group whose only
//! endpoint is down and falls back to the pool — against local simulators. No keys, no
//! network. Every request succeeds; the report shows the key rotation, the cooldowns, the
//! breaker that opened and the fallbacks taken.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use infermux::openai_compat::OpenAiCompat;
use infermux::resilience::ResilienceConfig;
use infermux::resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux::resilience::queue::QueueConfig;
use infermux::resilience::retry::StandardRetry;
use infermux::{
    ApiKey, ChatRequest, Client, CounterSnapshot, Deployment, EndpointConfig, ErrorKind, Message,
    ModelGroup, NamedKey, PoolConfig, Request, RequestContext, Served, Strategy, StreamAccumulator,
};
use infermux_testkit::{Fault, FaultPlan, KeyBehaviour, Simulator};

/// Options of `infermux demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Requests to send.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seed of the simulators' fault draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

const PROMPTS: [&str; 5] = [
    "Summarise the plot of Hamlet in one line",
    "What is a circuit breaker in distributed systems",
    "Translate good morning into French",
    "Name three prime numbers",
    "Why is the sky blue",
];

fn config_error(e: impl std::fmt::Display) -> infermux::Error {
    infermux::Error::new(ErrorKind::Config, format!("starting the simulator: {e}"))
}

fn endpoint(name: &str, sim: &Simulator) -> infermux::Result<OpenAiCompat> {
    OpenAiCompat::new(EndpointConfig::new(name, format!("{}/v1", sim.url()))?)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One call's end: who served it, or the error.
type Outcome = Result<Served, infermux::Error>;

fn report_endpoint(name: &str, sim: &Simulator, c: &CounterSnapshot) -> bool {
    outln!("\nendpoint {name} ({})", sim.url());
    outln!("  attempts        {:>6}", c.requests);
    outln!("  successes       {:>6}", c.successes);
    outln!("  failures        {:>6}", c.failures_total());
    for (kind, n) in c.failures_by_kind() {
        outln!("    {:<22}{:>6}", kind.as_str(), n);
    }
    outln!("  latency p50     {:>10}", ms(c.latency.quantile(0.5)));
    outln!("  latency p99     {:>10}", ms(c.latency.quantile(0.99)));
    outln!(
        "  breaker trips   {:>6} (now {})",
        c.breaker_trips,
        c.breaker().as_str()
    );
    let faults: Vec<String> = sim
        .faults()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    outln!(
        "  faults injected by the simulator: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    let adds_up = c.successes + c.failures_total() == c.requests && c.in_flight == 0;
    outln!(
        "  successes + failures = attempts: {}",
        if adds_up { "yes" } else { "NO" }
    );
    adds_up
}

fn report_pool(client: &Client, group: &str) {
    let Some(pool) = client.pool(group) else {
        return;
    };
    let snap = pool.counters();
    outln!("\ngroup {group}: members (endpoint / key), picks and state now");
    for (m, picks) in pool.status().iter().zip(&snap.picks) {
        outln!(
            "  {:<10} {:<12} picked {:>5}   {}",
            m.endpoint.as_str(),
            m.key_alias.as_deref().unwrap_or("-"),
            picks,
            m.state.as_str()
        );
    }
    outln!(
        "  cooldowns {} · keys removed {} · waited in the queue {} · unavailable {} · ejection-cap overrides {}",
        snap.cooldowns,
        snap.removals,
        snap.waits,
        snap.unavailable,
        snap.ejection_overrides
    );
}

pub(crate) async fn run(args: DemoArgs) -> infermux::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    // the embedder first: a wrong INFERMUX_MINILM_DIR fails before the 300 requests, not after
    let semantic = crate::demo_cache::semantic_from_env()?;
    // sim-a: healthy but for a few 503s and resets; its key a2 is throttled
    let sim_a = Simulator::start(
        FaultPlan::seeded(args.seed)
            .with(Fault::Unavailable, 0.03)
            .with(Fault::Reset, 0.02),
    )
    .await
    .map_err(config_error)?;
    sim_a.set_key(
        "sk-demo-a2",
        KeyBehaviour::rate_limited_for(Duration::from_millis(15), 3),
    );
    // sim-b: down (every request a 503)
    let sim_b = Simulator::start(FaultPlan::seeded(args.seed + 1).with(Fault::Unavailable, 1.0))
        .await
        .map_err(config_error)?;

    // demo-sized settings: short pauses, a small breaker window, 8 requests in flight per endpoint
    // four attempts: a call whose first attempt met the down endpoint and whose second met
    // one of sim-a's few faults may draw the down endpoint again on its third
    let retry = StandardRetry::standard()
        .with_max_attempts(4)
        .with_bases(
            Duration::from_millis(10),
            Duration::from_millis(25),
            Duration::from_millis(25),
        )
        .with_max_delay(Duration::from_millis(500))
        .validate()?;
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(20))
        .with_minimum_calls(5)
        .with_open_wait(Duration::from_secs(10))
        .with_half_open_probes(1)
        .validate()?;
    let resilience = ResilienceConfig::standard()
        .with_queue(QueueConfig::standard().with_permits(8))
        .with_retry(Arc::new(retry))
        .with_breaker(Some(breaker));
    let key = |alias: &str, key: &str| NamedKey::new(alias, ApiKey::new(key));
    let client = Client::builder()
        .endpoint(endpoint("sim-a", &sim_a)?)
        .key("sim-a", key("a1", "sk-demo-a1"))
        .key("sim-a", key("a2", "sk-demo-a2"))
        .endpoint(endpoint("sim-b", &sim_b)?)
        .key("sim-b", key("b1", "sk-demo-b1"))
        .key("sim-b", key("b2", "sk-demo-b2"))
        .group(
            ModelGroup::new("chat")
                .strategy(Strategy::RoundRobin)
                .deployment(Deployment::new("sim-a", "sim-echo-1"))
                .deployment(Deployment::new("sim-b", "sim-echo-1")),
        )
        .group(
            // everything it has is down: once the breaker is open, it gives up at once
            ModelGroup::new("chat-large")
                .pool_config(PoolConfig::new(Strategy::RoundRobin).with_max_ejection_percent(100))
                .deployment(Deployment::new("sim-b", "sim-echo-large")),
        )
        .fallback(
            "chat-large",
            ["chat"],
            [
                ErrorKind::Server,
                ErrorKind::CircuitOpen,
                ErrorKind::Unavailable,
                ErrorKind::Connect,
            ],
        )
        .resilience(resilience)
        .timeout(timeout)
        .build()?;

    outln!(
        "infermux demo: {} chat requests ({} at a time, one in three streamed) through one client:\n  group `chat` = sim-a (keys a1, a2 — a2 throttled: 429 + Retry-After) + sim-b (keys b1, b2 — the endpoint is down)\n  group `chat-large` = sim-b only, falling back to `chat`; one request in five asks for it",
        args.requests,
        args.concurrency
    );
    let bar = ProgressBar::new(args.requests as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} requests  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let client = &client;
    let results: Vec<Outcome> = futures_util::stream::iter(0..args.requests)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let group = if i % 5 == 4 { "chat-large" } else { "chat" };
                let prompt = PROMPTS[i % PROMPTS.len()];
                let req = ChatRequest::new(group, vec![Message::user(prompt)]).with_max_tokens(16);
                let out = if i % 3 == 0 {
                    match client
                        .stream_served(&Request::Chat(req), RequestContext::new())
                        .await
                    {
                        Ok((s, served)) => StreamAccumulator::collect(s)
                            .await
                            .map(|_| served.expect("a routed client says who serves")),
                        Err(e) => Err(e),
                    }
                } else {
                    client
                        .chat(req)
                        .await
                        .map(|r| *r.served.expect("a routed client says who served"))
                };
                bar.inc(1);
                out
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_with_message(format!("done in {:.1} s", started.elapsed().as_secs_f64()));

    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failed = results.len() - ok;
    outln!(
        "\n{} requests resolved ({} ok, {} failed) in {:.1} s",
        results.len(),
        ok,
        failed,
        started.elapsed().as_secs_f64()
    );
    for e in results.iter().filter_map(|r| r.as_ref().err()).take(5) {
        outln!("  failed: {e}");
    }
    let served: Vec<&Served> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut by_key: Vec<(String, usize)> = Vec::new();
    for s in &served {
        let k = format!("{}/{}", s.endpoint, s.key_alias.as_deref().unwrap_or("-"));
        match by_key.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => by_key.push((k, 1)),
        }
    }
    by_key.sort();
    outln!(
        "answers by endpoint/key: {}",
        by_key
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fallbacks = served.iter().filter(|s| s.fallback.is_some()).count();
    let retried = served.iter().filter(|s| s.attempts > 1).count();
    outln!(
        "fallbacks taken (chat-large → chat): {fallbacks}; answers that needed more than one attempt: {retried}"
    );

    report_pool(client, "chat");
    report_pool(client, "chat-large");
    let mut adds_up = results.len() == args.requests;
    for ((id, c), sim) in client.endpoint_counters().iter().zip([&sim_a, &sim_b]) {
        adds_up &= report_endpoint(id.as_str(), sim, c);
    }
    // boxed: the demo's future is deep enough already
    let cache = Box::pin(crate::demo_cache::run(semantic)).await?;
    if cache.semantic_on && cache.semantic_hits == 0 {
        return Err(infermux::Error::new(
            ErrorKind::Decode,
            "the semantic tier answered none of the reworded questions",
        ));
    }
    if cache.exact_hits < crate::demo_cache::QUESTIONS.len() as u64 {
        return Err(infermux::Error::new(
            ErrorKind::Decode,
            "questions asked again word for word were not all cache hits",
        ));
    }
    if failed > 0 {
        return Err(infermux::Error::new(
            ErrorKind::Unavailable,
            format!("{failed} of {} requests failed", results.len()),
        ));
    }
    if adds_up {
        Ok(())
    } else {
        Err(infermux::Error::new(
            ErrorKind::Decode,
            "the report does not add up",
        ))
    }
}
