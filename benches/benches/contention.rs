//! Two threads hammering one shared object: a `Resilient` stack (disabled and standard) around
//! an in-memory provider, a circuit breaker, an admission queue, an endpoint's counters, and
//! request-id generation. Each iteration is one operation on *each* of the two OS threads
//! (each thread with its own current-thread tokio runtime where one is needed), so the time
//! per iteration is the time for two concurrent operations; the `one_thread` variants run the
//! same loop on one thread for scale.
//!
//! `cargo bench -p infermux-benches --bench contention`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures_util::task::noop_waker;
use infermux_core::{
    Capabilities, EndpointCounters, EndpointId, EventStream, ModelList, Operation, Priority,
    Provider, Request, RequestContext, RequestId, Response, Result, SystemClock, Usage,
};
use infermux_resilience::breaker::{Breaker, BreakerConfig, CircuitBreaker, Outcome};
use infermux_resilience::queue::{Admission, QueueConfig};
use infermux_resilience::{ResilienceConfig, Resilient};

/// Answers every call at once with an empty model list (no allocation).
#[derive(Debug)]
struct Instant0 {
    endpoint: EndpointId,
}

#[async_trait]
impl Provider for Instant0 {
    fn name(&self) -> &'static str {
        "instant"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.endpoint
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with(Operation::Models)
    }
    async fn call(&self, _request: &Request, _ctx: &RequestContext) -> Result<Response> {
        Ok(Response::Models(ModelList::default()))
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> Result<EventStream> {
        Err(infermux_core::Error::new(
            infermux_core::ErrorKind::Unsupported,
            "no streams",
        ))
    }
}

/// Runs `body(iters)` on `threads` threads started together; the time from the common start
/// to the last thread's end.
fn contend(threads: usize, iters: u64, body: &(dyn Fn(u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                body(iters);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // the scope joins every thread before returning
        start
    })
    .elapsed()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

fn bench(c: &mut Criterion, name: &str, body: &(dyn Fn(u64) + Sync)) {
    let mut group = c.benchmark_group(format!("contention/{name}"));
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    group.throughput(Throughput::Elements(2));
    group.bench_function("two_threads", |b| b.iter_custom(|n| contend(2, n, body)));
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_thread", |b| b.iter_custom(|n| contend(1, n, body)));
    group.finish();
}

fn stacks(c: &mut Criterion) {
    for (name, config) in [
        ("resilient_disabled", ResilienceConfig::disabled()),
        ("resilient_standard", ResilienceConfig::standard()),
    ] {
        let provider = Arc::new(Instant0 {
            endpoint: EndpointId::new("instant"),
        });
        let stack = Resilient::new(provider, config).expect("a valid config");
        bench(c, name, &|n| {
            let ctx = RequestContext::new();
            runtime().block_on(async {
                for _ in 0..n {
                    let r = stack.call(black_box(&Request::Models), &ctx).await;
                    black_box(r.is_ok());
                }
            })
        });
    }
}

fn primitives(c: &mut Criterion) {
    let breaker = CircuitBreaker::new(BreakerConfig::standard(), Arc::new(SystemClock))
        .expect("a valid config");
    bench(c, "breaker_admit_record", &|n| {
        for _ in 0..n {
            if let Ok(t) = breaker.try_acquire() {
                breaker.on_outcome(black_box(t), Outcome::Success, Duration::from_millis(3));
            }
        }
    });

    let queue = Admission::new(QueueConfig::standard()).expect("a valid config");
    bench(c, "queue_acquire_release", &|n| {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..n {
            let f = pin!(queue.acquire(Priority::Normal));
            match f.poll(&mut cx) {
                Poll::Ready(Ok(p)) => drop(black_box(p)),
                _ => unreachable!("64 permits, two users"),
            }
        }
    });

    let counters = EndpointCounters::new();
    let usage = Usage::new(10, 20);
    bench(c, "counters_attempt", &|n| {
        for i in 0..n {
            counters.record_request();
            counters.adjust_in_flight(1);
            counters.adjust_in_flight(-1);
            counters.record_success(Duration::from_micros(1_000 + (i & 1023)), Some(&usage));
        }
    });

    bench(c, "request_id", &|n| {
        for _ in 0..n {
            black_box(RequestId::new());
        }
    });
}

criterion_group!(benches, stacks, primitives);
criterion_main!(benches);
