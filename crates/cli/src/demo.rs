//! `infermux demo`: chat requests through the client against two local simulators that inject
//! faults, with a progress bar and a per-endpoint report. No keys, no network.

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
    ChatRequest, Client, CounterSnapshot, EndpointConfig, Message, Request, RequestContext,
    StreamAccumulator,
};
use infermux_testkit::{Fault, FaultPlan, Simulator};

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
    /// Deadline of each call, in milliseconds (stalled streams end with a timeout).
    #[arg(long, default_value_t = 1500)]
    timeout_ms: u64,
}

struct Endpoint {
    name: &'static str,
    sim: Simulator,
    client: Client,
}

const PROMPTS: [&str; 5] = [
    "Summarise the plot of Hamlet in one line",
    "What is a circuit breaker in distributed systems",
    "Translate good morning into French",
    "Name three prime numbers",
    "Why is the sky blue",
];

async fn endpoint(
    name: &'static str,
    plan: FaultPlan,
    timeout: Duration,
) -> infermux::Result<Endpoint> {
    let sim = Simulator::start(plan).await.map_err(|e| {
        infermux::Error::new(
            infermux::ErrorKind::Config,
            format!("starting the simulator: {e}"),
        )
    })?;
    let cfg = EndpointConfig::new(name, format!("{}/v1", sim.url()))?;
    // demo-sized settings: short pauses, a small breaker window, 4 requests in flight per endpoint
    let retry = StandardRetry::standard()
        .with_bases(
            Duration::from_millis(10),
            Duration::from_millis(25),
            Duration::from_millis(25),
        )
        .with_max_delay(Duration::from_millis(500))
        .validate()?;
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(20))
        .with_minimum_calls(10)
        .with_open_wait(Duration::from_millis(250))
        .with_half_open_probes(2)
        .validate()?;
    let resilience = ResilienceConfig::standard()
        .with_queue(QueueConfig::standard().with_permits(4))
        .with_retry(Arc::new(retry))
        .with_breaker(Some(breaker));
    let client = Client::builder()
        .provider(OpenAiCompat::new(cfg)?)
        .resilience(resilience)
        .timeout(timeout)
        .build()?;
    Ok(Endpoint { name, sim, client })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(ep: &Endpoint, c: &CounterSnapshot) -> bool {
    println!(
        "\nendpoint {} ({} at {})",
        ep.name,
        ep.client.provider_name(),
        ep.sim.url()
    );
    println!("  attempts        {:>6}", c.requests);
    println!("  successes       {:>6}", c.successes);
    println!("  failures        {:>6}", c.failures_total());
    for (kind, n) in c.failures_by_kind() {
        println!("    {:<22}{:>6}", kind.as_str(), n);
    }
    println!(
        "  rejected        {:>6} (refused before an attempt)",
        c.rejected_total()
    );
    for reason in infermux::RejectReason::ALL {
        let n = c.rejected(reason);
        if n > 0 {
            println!("    {:<22}{:>6}", reason.as_str(), n);
        }
    }
    println!("  latency p50     {:>10}", ms(c.latency.quantile(0.5)));
    println!("  latency p99     {:>10}", ms(c.latency.quantile(0.99)));
    println!("  tokens in/out   {:>6} / {}", c.tokens_in, c.tokens_out);
    println!("  retries         {:>6}", c.retries);
    println!(
        "  breaker trips   {:>6} (now {})",
        c.breaker_trips,
        ["closed", "open", "half-open"]
            .get(usize::from(c.breaker_state))
            .unwrap_or(&"?")
    );
    println!("  queue wait      {:>10} in all", ms(c.queue_wait));
    let faults: Vec<String> = ep
        .sim
        .faults()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "  faults injected by the simulator: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    let adds_up = c.successes + c.failures_total() == c.requests && c.in_flight == 0;
    println!(
        "  successes + failures = attempts: {}",
        if adds_up { "yes" } else { "NO" }
    );
    adds_up
}

pub(crate) async fn run(args: DemoArgs) -> infermux::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let endpoints = [
        endpoint("sim-steady", FaultPlan::transient(args.seed, 0.06), timeout).await?,
        endpoint(
            "sim-flaky",
            FaultPlan::transient(args.seed.wrapping_add(1), 0.30).with(Fault::StallMidStream, 0.02),
            timeout,
        )
        .await?,
        endpoint(
            "sim-down",
            FaultPlan::seeded(args.seed.wrapping_add(2)).with(Fault::Unavailable, 0.9),
            timeout,
        )
        .await?,
    ];
    println!(
        "infermux demo: {} chat requests ({} at a time, one in three streamed) over {} simulated endpoints,\neach behind an admission queue (4 in flight), retries with backoff and a circuit breaker",
        args.requests,
        args.concurrency,
        endpoints.len()
    );
    let bar = ProgressBar::new(args.requests as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} requests  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let eps = &endpoints;
    let results: Vec<bool> = futures_util::stream::iter(0..args.requests)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let ep = &eps[i % eps.len()];
                let prompt = PROMPTS[i % PROMPTS.len()];
                let req =
                    ChatRequest::new("sim-echo-1", vec![Message::user(prompt)]).with_max_tokens(16);
                let ok = if i % 3 == 0 {
                    match ep
                        .client
                        .stream(&Request::Chat(req), RequestContext::new())
                        .await
                    {
                        Ok(s) => StreamAccumulator::collect(s).await.is_ok(),
                        Err(_) => false,
                    }
                } else {
                    ep.client.chat(req).await.is_ok()
                };
                bar.inc(1);
                ok
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_with_message(format!("done in {:.1} s", started.elapsed().as_secs_f64()));
    for ep in &endpoints {
        ep.sim.release_stalls();
    }
    let ok = results.iter().filter(|r| **r).count();
    println!(
        "\n{} requests resolved ({} ok, {} failed) in {:.1} s",
        results.len(),
        ok,
        results.len() - ok,
        started.elapsed().as_secs_f64()
    );
    let mut adds_up = results.len() == args.requests;
    let mut attempts = 0;
    let mut rejected = 0;
    let mut retries = 0;
    for ep in &endpoints {
        let c = ep.client.counters();
        attempts += c.requests;
        rejected += c.rejected_total();
        retries += c.retries;
        adds_up &= report(ep, &c);
    }
    let tries_add_up = attempts + rejected == args.requests as u64 + retries;
    adds_up &= tries_add_up;
    println!(
        "\n{} calls made {attempts} attempts and met {rejected} rejections: every call is one first try plus its {retries} retries: {}",
        args.requests,
        if tries_add_up { "yes" } else { "NO" }
    );
    if adds_up {
        Ok(())
    } else {
        Err(infermux::Error::new(
            infermux::ErrorKind::Decode,
            "the report does not add up",
        ))
    }
}
