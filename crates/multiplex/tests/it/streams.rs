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
