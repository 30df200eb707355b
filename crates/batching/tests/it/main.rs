//! Integration tests of infermux-batching: the generic batcher under paused time, the
//! embedding adapter, a property test over random traffic, and a live llama.cpp check.

mod batcher;
mod embedding;
mod live;
mod prop;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use infermux_batching::{BatchConfig, Batcher};
use infermux_core::{RequestContext, Result};
use tokio::time::Instant;

/// Polls `f` once (so a submit is enqueued) and says whether it finished.
pub(crate) async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// What one flush saw: when (since the test started), the key and the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) at: Duration,
    pub(crate) key: u8,
    pub(crate) items: Vec<u32>,
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// A batcher over `u32` items weighing their own value, answering `key * 1000 + item`, that
/// logs each flush.
pub(crate) fn recording(cfg: BatchConfig) -> (Batcher<u8, u32, u32>, Log) {
    let log: Log = Arc::default();
    let t0 = Instant::now();
    let l = log.clone();
    let b = Batcher::new(
        cfg,
        |x: &u32| u64::from(*x),
        move |key: u8, items: Vec<u32>, _ctx: RequestContext| {
            l.lock().unwrap().push(Seen {
                at: t0.elapsed(),
                key,
                items: items.clone(),
            });
            async move {
                Ok::<_, infermux_core::Error>(
                    items
                        .iter()
                        .map(|x| u32::from(key) * 1000 + x)
                        .collect::<Vec<_>>(),
                )
            }
        },
    )
    .unwrap();
    (b, log)
}

pub(crate) fn cfg(items: usize, tokens: u64, wait_ms: u64) -> BatchConfig {
    BatchConfig::new(items, tokens, Duration::from_millis(wait_ms)).unwrap()
}

/// One context for the tests whose callers need no deadline or priority of their own.
pub(crate) fn ctx() -> &'static RequestContext {
    static CTX: std::sync::LazyLock<RequestContext> = std::sync::LazyLock::new(RequestContext::new);
    &CTX
}

pub(crate) fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}
