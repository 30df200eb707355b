//! Criterion benches of the multiplex pool's hot path over 16 members: selection alone (the
//! eligibility scan and the strategy, `now` passed in) per strategy, and a full pick with
//! RPM/TPM limits (scan, strategy, limits reserved, the endpoint's permit and breaker ticket
//! taken, the lease dropped).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use infermux_core::{
    ApiKey, Capabilities, EndpointId, Error, ErrorKind, EventStream, Provider, Request,
    RequestContext, Response, Result,
};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
use infermux_resilience::AttemptExecutor;
use infermux_resilience::breaker::BreakerConfig;
use infermux_resilience::queue::QueueConfig;

#[derive(Debug)]
struct Idle(EndpointId);

#[async_trait]
impl Provider for Idle {
    fn name(&self) -> &'static str {
        "idle"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.0
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn call(&self, _r: &Request, _c: &RequestContext) -> Result<Response> {
        Err(Error::new(ErrorKind::Unsupported, "idle"))
    }
    async fn stream(&self, _r: &Request, _c: &RequestContext) -> Result<EventStream> {
        Err(Error::new(ErrorKind::Unsupported, "idle"))
    }
}

/// 16 members: 4 endpoints (with breakers) × 4 keys, optionally with generous limits.
fn pool(strategy: Strategy, limits: bool) -> MultiPool {
    let execs: Vec<_> = (0..4)
        .map(|e| {
            let provider = Arc::new(Idle(EndpointId::new(format!("e{e}"))));
            Arc::new(
                AttemptExecutor::new(
                    provider,
                    QueueConfig::standard(),
                    Some(BreakerConfig::standard()),
                )
                .unwrap(),
            )
        })
        .collect();
    let members = (0..16)
        .map(|i| {
            let m = MemberSpec::new(i % 4)
                .with_key(&format!("k{i}"), ApiKey::new(format!("sk-{i}")))
                .with_weight(1 + i as u32 % 3);
            if limits {
                m.with_rpm(u32::MAX).with_tpm(u32::MAX)
            } else {
                m
            }
        })
        .collect();
    MultiPool::new(execs, members, PoolConfig::new(strategy)).unwrap()
}

fn select(c: &mut Criterion) {
    for strategy in Strategy::ALL {
        let pool = pool(strategy, false);
        let now = Instant::now();
        c.bench_function(&format!("multiplex_select_16_{strategy}"), |b| {
            b.iter(|| black_box(pool.select(black_box(now))))
        });
    }
}

fn pick(c: &mut Criterion) {
    for strategy in [Strategy::RoundRobin, Strategy::LowestLatency] {
        let pool = pool(strategy, true);
        c.bench_function(&format!("multiplex_pick_16_limits_{strategy}"), |b| {
            b.iter(|| black_box(pool.try_lease(black_box(40), &[])))
        });
    }
}

criterion_group!(benches, select, pick);
criterion_main!(benches);
