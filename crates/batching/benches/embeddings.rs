//! Client-side batching of embeddings: 64 concurrent callers each embedding one input at a
//! time, unbatched (one request per call) against batched through
//! `infermux_batching::EmbeddingBatcher`, on (a) the testkit simulator with a fixed
//! per-request cost (requests served one at a time) and (b) the real llama.cpp embedding
//! server (`INFERMUX_LLAMA_EMBED_URL`; skipped, saying so, when unset). Both through the
//! openai-compat provider.
//!
//! Reports calls per second in each mode and their ratio, call latency p50/p99, and the
//! latency the batcher adds to a call: the call's latency minus the wire call of the batch
//! that carried it (queueing for the batch, fan-out), p50/p99/max.
//!
//! `cargo bench -p infermux-batching --bench embeddings [-- --callers 64 --calls 40
//! --max-wait-ms 2 --cost-ms 2 --llama-calls 8]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infermux_batching::{BatchConfig, EmbeddingBatcher};
use infermux_core::{
    EmbeddingRequest, EndpointConfig, Error, ErrorKind, Provider, Request, RequestContext, Response,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_testkit::{FaultPlan, Simulator};

/// When each input's wire call started and ended.
type WireTimes = Arc<Mutex<HashMap<String, (Instant, Instant)>>>;

#[derive(Debug, Clone, Copy)]
struct Args {
    callers: usize,
    calls: usize,
    max_wait: Duration,
    cost: Duration,
    llama_calls: usize,
}

fn args() -> Args {
    let mut a = Args {
        callers: 64,
        calls: 40,
        max_wait: Duration::from_millis(2),
        cost: Duration::from_millis(2),
        llama_calls: 2,
    };
    let argv: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> u64 {
        argv.get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", argv[i]))
    };
    for (i, arg) in argv.iter().enumerate() {
        match arg.as_str() {
            "--callers" => a.callers = num(i) as usize,
            "--calls" => a.calls = num(i) as usize,
            "--max-wait-ms" => a.max_wait = Duration::from_millis(num(i)),
            "--cost-ms" => a.cost = Duration::from_millis(num(i)),
            "--llama-calls" => a.llama_calls = num(i) as usize,
            _ => {}
        }
    }
    a
}

async fn embed_direct(p: &OpenAiCompat, model: &str, text: String) -> infermux_core::Result<()> {
    let req = Request::Embeddings(EmbeddingRequest::new(model, [text]));
    match p.call(&req, &RequestContext::new()).await? {
        Response::Embeddings(r) if r.embeddings.len() == 1 => Ok(()),
        _ => Err(Error::new(ErrorKind::Decode, "not one embedding")),
    }
}

#[derive(Debug, Default)]
struct Run {
    wall: Duration,
    calls: usize,
    latencies: Vec<Duration>,
    added: Vec<Duration>,
    batches: u64,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `callers` tasks, each making `calls` calls one after another.
async fn unbatched(p: Arc<OpenAiCompat>, model: &str, a: Args, calls: usize) -> Run {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.callers)
        .map(|c| {
            let p = p.clone();
            let model = model.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(calls);
                for r in 0..calls {
                    let t = Instant::now();
                    embed_direct(&p, &model, format!("caller {c} call {r} unbatched"))
                        .await
                        .expect("unbatched call");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut run = Run::default();
    for t in tasks {
        run.latencies.extend(t.await.unwrap());
    }
    run.wall = t0.elapsed();
    run.calls = run.latencies.len();
    run.batches = run.calls as u64;
    run
}

async fn batched(p: Arc<OpenAiCompat>, model: &str, a: Args, calls: usize) -> Run {
    let wire: WireTimes = Arc::default();
    let w = wire.clone();
    let cfg = BatchConfig::llama_cpp_embeddings()
        .with_max_wait(a.max_wait)
        .unwrap();
    let batcher = EmbeddingBatcher::new(cfg, move |req: EmbeddingRequest, ctx| {
        let p = p.clone();
        let w = w.clone();
        async move {
            let inputs = req.inputs.clone();
            let start = Instant::now();
            let r = p.call(&Request::Embeddings(req), &ctx).await;
            let end = Instant::now();
            let mut m = w.lock().unwrap();
            for i in inputs {
                m.insert(i, (start, end));
            }
            drop(m);
            match r? {
                Response::Embeddings(r) => Ok(r),
                _ => Err(Error::new(ErrorKind::Decode, "not embeddings")),
            }
        }
    })
    .unwrap();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.callers)
        .map(|c| {
            let b = batcher.clone();
            let model = model.to_owned();
            let wire = wire.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(calls);
                let mut added = Vec::with_capacity(calls);
                for r in 0..calls {
                    let text = format!("caller {c} call {r} batched");
                    let t = Instant::now();
                    let resp = b
                        .embed(
                            EmbeddingRequest::new(&*model, [text.clone()]),
                            &RequestContext::new(),
                        )
                        .await
                        .expect("batched call");
                    let total = t.elapsed();
                    assert_eq!(resp.embeddings.len(), 1);
                    let (ws, we) = wire.lock().unwrap()[&text];
                    lat.push(total);
                    added.push(total.saturating_sub(we - ws));
                }
                (lat, added)
            })
        })
        .collect();
    let mut run = Run::default();
    for t in tasks {
        let (l, ad) = t.await.unwrap();
        run.latencies.extend(l);
        run.added.extend(ad);
    }
    run.wall = t0.elapsed();
    run.calls = run.latencies.len();
    run.batches = batcher.stats().batches;
    run
}

fn report(name: &str, a: Args, mut u: Run, mut b: Run) {
    let tu = u.calls as f64 / u.wall.as_secs_f64();
    let tb = b.calls as f64 / b.wall.as_secs_f64();
    println!("### {name}");
    println!(
        "{} callers, {} calls each; batcher: max_wait {}, preset llama_cpp_embeddings",
        a.callers,
        u.calls / a.callers,
        ms(a.max_wait)
    );
    println!("| mode | calls/s | requests sent | latency p50 | latency p99 |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| unbatched | {tu:.0} | {} | {} | {} |",
        u.batches,
        ms(pct(&mut u.latencies, 0.5)),
        ms(pct(&mut u.latencies, 0.99))
    );
    println!(
        "| batched | {tb:.0} | {} | {} | {} |",
        b.batches,
        ms(pct(&mut b.latencies, 0.5)),
        ms(pct(&mut b.latencies, 0.99))
    );
    println!(
        "throughput ratio batched/unbatched: {:.1}x; added latency (call minus its batch's wire call) p50 {} p90 {} p99 {} max {} (goal p99 <= max_wait + 1 ms = {})",
        tb / tu,
        ms(pct(&mut b.added, 0.5)),
        ms(pct(&mut b.added, 0.9)),
        ms(pct(&mut b.added, 0.99)),
        ms(pct(&mut b.added, 1.0)),
        ms(a.max_wait + Duration::from_millis(1)),
    );
}

/// The added latency with one caller at a time: the batch waits its whole `max_wait` for
/// company that never comes, with no other task competing for the CPU.
fn report_alone(mut b: Run) {
    println!(
        "one caller alone ({} calls): added latency p50 {} p99 {} max {}",
        b.calls,
        ms(pct(&mut b.added, 0.5)),
        ms(pct(&mut b.added, 0.99)),
        ms(pct(&mut b.added, 1.0)),
    );
    println!();
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // (a) the simulator: a fixed cost per request, one request at a time
        let sim = Simulator::start(FaultPlan::none()).await.unwrap();
        sim.set_request_cost(Some(a.cost));
        let p = Arc::new(
            OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
                .unwrap(),
        );
        let u = unbatched(p.clone(), "sim-embed", a, a.calls).await;
        let b = batched(p.clone(), "sim-embed", a, a.calls).await;
        report(
            &format!("simulator, fixed cost {} per request", ms(a.cost)),
            a,
            u,
            b,
        );
        let alone = Args { callers: 1, ..a };
        report_alone(batched(p, "sim-embed", alone, 200).await);
        // (b) the real llama.cpp embedding server
        match std::env::var("INFERMUX_LLAMA_EMBED_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let url = url.trim().trim_end_matches('/');
                let p = Arc::new(
                    OpenAiCompat::new(
                        EndpointConfig::new("llama-embed", format!("{url}/v1"))
                            .unwrap()
                            .with_timeouts(
                                infermux_core::Timeouts::default()
                                    .with_first_byte(Duration::from_secs(600)),
                            ),
                    )
                    .unwrap(),
                );
                // warm up
                embed_direct(&p, "smollm2", "warm up".into()).await.unwrap();
                let u = unbatched(p.clone(), "smollm2", a, a.llama_calls).await;
                let b = batched(p.clone(), "smollm2", a, a.llama_calls).await;
                report("llama.cpp embedding server (SmolLM2-135M Q4_1)", a, u, b);
                let alone = Args { callers: 1, ..a };
                report_alone(batched(p, "smollm2", alone, 20).await);
            }
            _ => println!("### llama.cpp: SKIPPED (INFERMUX_LLAMA_EMBED_URL is not set)"),
        }
    });
}
