//! Instruction counts of the resilience hot paths, for callgrind: runs one operation `n` times.
//!
//! `icount_resilience <op> <n>` where `op` is one of `resilient_disabled`,
//! `resilient_standard` (one `Resilient::call` around an in-memory provider that answers at
//! once, so only the stack is measured), `client_disabled`, `client_standard` (the facade's
//! `Client::call` with a fresh `RequestContext`, request id included), `client_routed` (the
//! same through a routed client: one endpoint with one key, its group's pool), `request_id`
//! (`RequestId::new`), `counters_success` (`EndpointCounters::record_success` with usage),
//! `breaker` (admit + record a success), `queue` (acquire a free permit + release it),
//! `budget` (a retry budget's refund on success). Instructions per operation =
//! (Ir(n2) − Ir(n1)) / (n2 − n1):
//!
//! ```text
//! cargo build --release -p infermux-benches --bin icount_resilience
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a.out target/release/icount_resilience breaker 1000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b.out target/release/icount_resilience breaker 11000
//! callgrind_annotate /tmp/a.out | head; callgrind_annotate /tmp/b.out | head
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::task::noop_waker;
use infermux::Client;
use infermux_core::{
    Capabilities, EndpointCounters, EndpointId, EventStream, ModelList, Operation, Priority,
    Provider, Request, RequestContext, RequestId, Response, Result, SystemClock, Usage,
};
use infermux_resilience::breaker::{Breaker, BreakerConfig, CircuitBreaker, Outcome};
use infermux_resilience::queue::{Admission, QueueConfig};
use infermux_resilience::retry::RetryBudget;
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

fn provider() -> Arc<dyn Provider> {
    Arc::new(Instant0 {
        endpoint: EndpointId::new("instant"),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("no runtime: {e}");
            std::process::exit(2)
        })
}

fn resilient(n: u64, config: ResilienceConfig) {
    let stack = Resilient::new(provider(), config).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let ctx = RequestContext::new();
    runtime().block_on(async {
        for _ in 0..n {
            let r = stack.call(black_box(&Request::Models), &ctx).await;
            black_box(r.is_ok());
        }
    });
}

fn client(n: u64, config: ResilienceConfig) {
    drive(
        Client::builder()
            .shared_provider(provider())
            .resilience(config),
        n,
    );
}

fn routed(n: u64) {
    let key = infermux::NamedKey::new("k", infermux::ApiKey::new("sk-bench"));
    let builder = Client::builder()
        .shared_endpoint(provider())
        .key("instant", key)
        .resilience(ResilienceConfig::standard());
    drive(builder, n);
}

/// Builds the client and makes `n` calls with fresh contexts.
fn drive(builder: infermux::ClientBuilder, n: u64) {
    let Ok(client) = builder.build() else {
        eprintln!("no client");
        std::process::exit(2)
    };
    runtime().block_on(async {
        for _ in 0..n {
            let r = client
                .call(black_box(&Request::Models), RequestContext::new())
                .await;
            black_box(r.is_ok());
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(op), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: icount_resilience <op> <n>");
        std::process::exit(2)
    };
    match op.as_str() {
        "resilient_disabled" => resilient(n, ResilienceConfig::disabled()),
        "resilient_standard" => resilient(n, ResilienceConfig::standard()),
        "client_disabled" => client(n, ResilienceConfig::disabled()),
        "client_standard" => client(n, ResilienceConfig::standard()),
        "client_routed" => routed(n),
        "request_id" => {
            for _ in 0..n {
                black_box(RequestId::new());
            }
        }
        "counters_success" => {
            let c = EndpointCounters::new();
            let usage = Usage::new(10, 20);
            for i in 0..n {
                c.record_success(Duration::from_micros(1_000 + (i & 1023)), Some(&usage));
            }
            black_box(c.snapshot());
        }
        "breaker" => {
            let b = CircuitBreaker::new(BreakerConfig::standard(), Arc::new(SystemClock))
                .unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(2)
                });
            for _ in 0..n {
                if let Ok(t) = b.try_acquire() {
                    b.on_outcome(black_box(t), Outcome::Success, Duration::from_millis(3));
                }
            }
        }
        "queue" => {
            let q = Admission::new(QueueConfig::standard()).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(2)
            });
            let waker = noop_waker();
            let mut cx = Context::from_waker(&waker);
            for _ in 0..n {
                let f = pin!(q.acquire(Priority::Normal));
                match f.poll(&mut cx) {
                    Poll::Ready(Ok(p)) => drop(black_box(p)),
                    _ => std::process::exit(3),
                }
            }
        }
        "budget" => {
            let b = RetryBudget::standard();
            for _ in 0..n {
                b.deposit();
            }
            black_box(b.available());
        }
        other => {
            eprintln!("unknown op {other}");
            std::process::exit(2)
        }
    }
}
