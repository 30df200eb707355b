//! A property test: over random callers (several keys, duplicate items, several items per
//! caller, callers that leave, batches that fail, a small queue), no item is lost, duplicated
//! or given another caller's result.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use infermux_batching::{BatchConfig, Batcher};
use infermux_core::{Error, ErrorKind, RequestContext};
use proptest::prelude::*;

use crate::poll_once;

#[derive(Debug, Clone)]
struct Caller {
    key: u8,
    items: Vec<u32>,
    leaves: bool,
    gap_ms: u64,
}

#[derive(Debug, Clone)]
struct Sent {
    key: u8,
    items: Vec<u32>,
    failed: bool,
}

fn caller() -> impl Strategy<Value = Caller> {
    (
        0u8..3,
        proptest::collection::vec(0u32..12, 1..5),
        proptest::bool::weighted(0.2),
        0u64..4,
    )
        .prop_map(|(key, items, leaves, gap_ms)| Caller {
            key,
            items,
            leaves,
            gap_ms,
        })
}

/// Runs the callers; returns the batches sent and each caller's outcome (`None`: it left).
async fn run(
    cfg: BatchConfig,
    callers: &[Caller],
) -> (
    Vec<Sent>,
    Vec<Option<Result<Vec<(u8, u32)>, Error>>>,
    u64,
    usize,
) {
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let s = sent.clone();
    let b = Batcher::new(
        cfg,
        |x: &u32| u64::from(*x) + 1,
        move |key: u8, items: Vec<u32>, _ctx: RequestContext| {
            // a batch holding 11 fails as a whole
            let failed = items.contains(&11);
            let n = {
                let mut s = s.lock().unwrap();
                s.push(Sent {
                    key,
                    items: items.clone(),
                    failed,
                });
                s.len() - 1
            };
            async move {
                if failed {
                    Err(Error::new(ErrorKind::Server, format!("batch {n}")))
                } else {
                    Ok(items.iter().map(|x| (key, *x)).collect::<Vec<_>>())
                }
            }
        },
    )
    .unwrap();
    let ctx = RequestContext::new();
    let mut outcomes = Vec::with_capacity(callers.len());
    let mut waiting = Vec::new();
    let mut accepted = 0u64;
    for (i, c) in callers.iter().enumerate() {
        let mut f = Box::pin(b.submit_many(c.key, c.items.clone(), &ctx));
        match poll_once(&mut f).await {
            Poll::Ready(r) => {
                if r.is_ok() {
                    accepted += c.items.len() as u64;
                }
                outcomes.push(Some(r));
            }
            Poll::Pending => {
                accepted += c.items.len() as u64;
                if c.leaves {
                    drop(f);
                    outcomes.push(None);
                } else {
                    outcomes.push(None);
                    waiting.push((i, f));
                }
            }
        }
        tokio::time::advance(Duration::from_millis(c.gap_ms)).await;
    }
    for (i, f) in waiting {
        let r = tokio::time::timeout(Duration::from_secs(3600), f)
            .await
            .expect("a submit never resolved: an item was lost");
        outcomes[i] = Some(r);
    }
    // let the flushes of the callers that left finish too
    tokio::time::sleep(Duration::from_secs(120)).await;
    let stats = b.stats();
    assert_eq!(stats.submitted, accepted);
    let queued = b.queued();
    let sent = sent.lock().unwrap().clone();
    (sent, outcomes, stats.items, queued)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn no_item_is_lost_duplicated_or_given_to_another_caller(
        callers in proptest::collection::vec(caller(), 1..40),
        max_items in 1usize..6,
        max_tokens in 4u64..30,
        wait_ms in 0u64..6,
        capacity in 1usize..24,
    ) {
        let cfg = BatchConfig::new(max_items, max_tokens, Duration::from_millis(wait_ms))
            .unwrap()
            .with_queue_capacity(capacity)
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (sent, outcomes, items_stat, queued) = rt.block_on(run(cfg, &callers));
        prop_assert_eq!(queued, 0);
        prop_assert_eq!(items_stat, sent.iter().map(|s| s.items.len() as u64).sum::<u64>());
        // a batch never carries an item twice, nor an item nobody submitted under its key
        for s in &sent {
            let distinct: HashSet<_> = s.items.iter().collect();
            prop_assert_eq!(distinct.len(), s.items.len(), "{:?}", s);
            prop_assert!(s.items.len() <= max_items);
            for x in &s.items {
                prop_assert!(callers.iter().any(|c| c.key == s.key && c.items.contains(x)));
            }
        }
        for (c, outcome) in callers.iter().zip(&outcomes) {
            match outcome {
                None => prop_assert!(c.leaves, "a staying caller got no answer: {:?}", c),
                Some(Ok(out)) => {
                    let want: Vec<(u8, u32)> = c.items.iter().map(|x| (c.key, *x)).collect();
                    prop_assert_eq!(out, &want);
                    for x in &c.items {
                        prop_assert!(sent.iter().any(|s| s.key == c.key && !s.failed && s.items.contains(x)));
                    }
                }
                Some(Err(e)) => match e.kind() {
                    ErrorKind::QueueFull => {}
                    ErrorKind::InvalidRequest => prop_assert!(c.items.len() > capacity),
                    ErrorKind::Server => {
                        let n: usize = e.message().trim_start_matches("batch ").parse().unwrap();
                        let s = &sent[n];
                        prop_assert!(s.failed);
                        prop_assert_eq!(s.key, c.key);
                        prop_assert!(c.items.iter().any(|x| s.items.contains(x)));
                    }
                    other => prop_assert!(false, "unexpected error kind {:?}: {}", other, e),
                },
            }
        }
    }
}
