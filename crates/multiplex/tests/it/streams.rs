//! Streams and the pool's load picture: a member generating streams counts them in flight
//! until each ends, so load-based strategies send the next call elsewhere.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use infermux_core::{
    Capabilities, EndpointId, Error, ErrorKind, EventStream, Operation, Provider, Request,
    RequestContext, Response, Result, StreamEvent,
};
use infermux_multiplex::{MemberSpec, PoolConfig, Strategy};

use crate::stub::{chat, executor_of, policy, pool};

/// A provider whose streams send one piece of text, then wait until dropped.
#[derive(Debug)]
struct Endless(EndpointId);

#[async_trait]
impl Provider for Endless {
    fn name(&self) -> &'static str {
        "endless"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.0
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with(Operation::ChatStream)
    }
    async fn call(&self, _request: &Request, _ctx: &RequestContext) -> Result<Response> {
        Err(Error::new(ErrorKind::Unsupported, "streams only"))
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> Result<EventStream> {
        let first = futures_util::stream::iter([Ok(StreamEvent::TextDelta {
            text: "thinking".into(),
        })]);
        Ok(Box::pin(first.chain(futures_util::stream::pending())))
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_generating_streams_counts_them_in_flight_until_they_end() {
    let pool = pool(
        vec![
            executor_of(Arc::new(Endless(EndpointId::new("a"))), 16),
            executor_of(Arc::new(Endless(EndpointId::new("b"))), 16),
        ],
        vec![MemberSpec::new(0), MemberSpec::new(1)],
        PoolConfig::new(Strategy::LeastInFlight),
    );
    let p = policy(1, std::time::Duration::from_secs(60));
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = p
            .stream(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap()
            .value;
        assert!(s.next().await.is_some());
        open.push(s);
    }
    let in_flight: Vec<u32> = pool.status().iter().map(|m| m.in_flight).collect();
    assert_eq!(in_flight, [2, 2], "four live streams, two on each member");
    // the streams on one member end: it is the least loaded again
    drop(open.remove(0));
    drop(open.remove(1));
    let mut in_flight: Vec<u32> = pool.status().iter().map(|m| m.in_flight).collect();
    in_flight.sort_unstable();
    assert_eq!(in_flight, [0, 2], "both streams of one member ended");
    // it is the least loaded again: the next stream goes there
    let mut s = p
        .stream(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap()
        .value;
    assert!(s.next().await.is_some());
    let mut in_flight: Vec<u32> = pool.status().iter().map(|m| m.in_flight).collect();
    in_flight.sort_unstable();
    assert_eq!(in_flight, [1, 2], "the new stream went to the idle member");
    drop(s);
    drop(open);
    let in_flight: Vec<u32> = pool.status().iter().map(|m| m.in_flight).collect();
    assert_eq!(in_flight, [0, 0]);
}

/// A provider whose streams say they used `output` tokens, then end.
#[derive(Debug)]
struct Uses(EndpointId, u64);

#[async_trait]
impl Provider for Uses {
    fn name(&self) -> &'static str {
        "uses"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.0
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with(Operation::ChatStream)
    }
    async fn call(&self, _request: &Request, _ctx: &RequestContext) -> Result<Response> {
        Err(Error::new(ErrorKind::Unsupported, "streams only"))
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> Result<EventStream> {
        Ok(Box::pin(futures_util::stream::iter([
            Ok(StreamEvent::TextDelta { text: "x".into() }),
            Ok(StreamEvent::Usage(infermux_core::Usage::new(10, self.1))),
            Ok(StreamEvent::Done {
                finish_reason: None,
            }),
        ])))
    }
}

/// A stream's token reservation is settled with its usage when it ends, as a plain answer's
/// is: tokens used beyond the estimate are charged to the key's TPM limit, tokens not used
/// are given back. Before, a stream kept its estimate whatever it used (its opening was
/// reported before any usage was known), so the pool let through what the provider refused.
#[tokio::test(start_paused = true)]
async fn a_streams_usage_settles_its_token_reservation_when_it_ends() {
    use infermux_core::ApiKey;
    // TPM 2000, half of it spendable at once: a bucket of 1000; estimates of 16 output tokens
    let config = || {
        PoolConfig::new(Strategy::RoundRobin)
            .with_default_output_tokens(16)
            .with_limit_burst_percent(50)
    };
    let member = || {
        MemberSpec::new(0)
            .with_key("k", ApiKey::new("sk-k"))
            .with_tpm(2000)
    };
    async fn drain(pool: &infermux_multiplex::MultiPool) {
        let p = policy(1, std::time::Duration::from_secs(60));
        let mut s = p
            .stream(pool, &chat(), &RequestContext::new())
            .await
            .unwrap()
            .value;
        while let Some(ev) = s.next().await {
            ev.unwrap();
        }
    }
    // used 910, far past the estimate: charged, so 500 more do not fit the bucket now
    let heavy = pool(
        vec![executor_of(Arc::new(Uses(EndpointId::new("a"), 900)), 4)],
        vec![member()],
        config(),
    );
    drain(&heavy).await;
    assert!(
        heavy.try_lease(500, &[]).is_none(),
        "the 910 tokens used are charged"
    );
    // used 10 of an estimate of 900: given back, so 900 fit again at once
    let config_big = || config().with_default_output_tokens(900);
    let light = pool(
        vec![executor_of(Arc::new(Uses(EndpointId::new("b"), 0)), 4)],
        vec![member()],
        config_big(),
    );
    drain(&light).await;
    assert!(
        light.try_lease(900, &[]).is_some(),
        "the unused estimate is given back"
    );
}
