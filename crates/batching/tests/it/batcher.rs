//! The generic batcher under paused time: each flush trigger, dedup, the bounded queue,
//! cancellation, errors and the batch's context.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infermux_batching::{BatchConfig, Batcher, FlushReason};
use infermux_core::{Error, ErrorKind, Priority, RequestContext};
use tokio::sync::Notify;

use crate::{Seen, cfg, ctx, ok, poll_once, recording};

#[tokio::test(start_paused = true)]
async fn a_batch_is_sent_max_wait_after_its_first_item() {
    let (b, log) = recording(cfg(100, 1000, 10));
    let (x, y, z) = tokio::join!(
        b.submit(1, 1, ctx()),
        b.submit(1, 2, ctx()),
        b.submit(1, 3, ctx())
    );
    assert_eq!((ok(x), ok(y), ok(z)), (1001, 1002, 1003));
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        log[0].at,
        Duration::from_millis(9),
        "max_wait 10 ms, aimed 1.5 ms early, the paused timer rounding up to the millisecond"
    );
    let mut items = log[0].items.clone();
    items.sort_unstable();
    assert_eq!(items, [1, 2, 3]);
    assert_eq!(b.stats().flushes(FlushReason::MaxWait), 1);
}

#[tokio::test(start_paused = true)]
async fn the_wait_counts_from_the_first_item_not_the_last() {
    let (b, log) = recording(cfg(100, 1000, 10));
    let mut first = Box::pin(b.submit(1, 1, ctx()));
    assert!(poll_once(&mut first).await.is_pending());
    tokio::time::advance(Duration::from_millis(7)).await;
    let (x, y) = tokio::join!(first, b.submit(1, 2, ctx()));
    assert_eq!((ok(x), ok(y)), (1001, 1002));
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].at,
        Duration::from_millis(9),
        "max_wait 10 ms, aimed 1.5 ms early, the paused timer rounding up to the millisecond"
    );
}

/// The batcher's task runs late (a busy thread): by then its first item is past due and a
/// second one waits in the channel. Both were submitted within the wait, so both go in one
/// batch — before the fix the due batch left with the first alone (the batcher's doctest
/// failed that way on a loaded CI machine).
#[tokio::test(start_paused = true)]
async fn submits_already_queued_join_a_batch_that_is_due_when_the_batcher_wakes() {
    let (b, log) = recording(cfg(100, 1000, 2));
    let mut first = Box::pin(b.submit(1, 1, ctx()));
    let mut second = Box::pin(b.submit(1, 2, ctx()));
    // both enqueued without the batcher's task running in between
    assert!(poll_once(&mut first).await.is_pending());
    assert!(poll_once(&mut second).await.is_pending());
    tokio::time::advance(Duration::from_millis(50)).await;
    let (x, y) = tokio::join!(first, second);
    assert_eq!((ok(x), ok(y)), (1001, 1002));
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].items, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_on_max_items() {
    let (b, log) = recording(cfg(3, 1000, 1000));
    let out = ok(b.submit_many(2, vec![1, 2, 3, 4], ctx()).await);
    assert_eq!(out, [2001, 2002, 2003, 2004]);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            Seen {
                at: Duration::ZERO,
                key: 2,
                items: vec![1, 2, 3]
            },
            Seen {
                at: Duration::from_millis(999),
                key: 2,
                items: vec![4]
            },
        ]
    );
    let s = b.stats();
    assert_eq!(s.flushes(FlushReason::MaxItems), 1);
    assert_eq!(s.flushes(FlushReason::MaxWait), 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_goes_before_an_item_would_take_it_over_max_tokens() {
    // items weigh their value: 4 + 5 fits in 10, + 3 would not
    let (b, log) = recording(cfg(100, 10, 50));
    let out = ok(b.submit_many(0, vec![4, 5, 3], ctx()).await);
    assert_eq!(out, [4, 5, 3]);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].at, log[0].items.clone()),
        (Duration::ZERO, vec![4, 5])
    );
    assert_eq!(
        (log[1].at, log[1].items.clone()),
        (Duration::from_millis(49), vec![3])
    );
    assert_eq!(b.stats().flushes(FlushReason::MaxTokens), 1);
}

#[tokio::test(start_paused = true)]
async fn an_oversize_item_goes_alone_at_once_and_leaves_the_open_batch_alone() {
    let (b, log) = recording(cfg(100, 10, 50));
    let out = ok(b.submit_many(0, vec![3, 50, 4], ctx()).await);
    assert_eq!(out, [3, 50, 4]);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0].at, log[0].items.clone()),
        (Duration::ZERO, vec![50])
    );
    assert_eq!(
        (log[1].at, log[1].items.clone()),
        (Duration::from_millis(49), vec![3, 4])
    );
    assert_eq!(b.stats().flushes(FlushReason::Oversize), 1);
}

#[tokio::test(start_paused = true)]
async fn identical_items_in_a_batch_are_sent_once_and_each_caller_gets_the_result() {
    let (b, log) = recording(cfg(100, 1000, 5));
    let (x, y, z) = tokio::join!(
        b.submit_many(1, vec![7, 8, 7], ctx()),
        b.submit(1, 8, ctx()),
        b.submit(2, 7, ctx()), // another key: not the same item
    );
    assert_eq!(ok(x), [1007, 1008, 1007]);
    assert_eq!(ok(y), 1008);
    assert_eq!(ok(z), 2007);
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|s| s.key);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].items, [7, 8]);
    assert_eq!(log[1].items, [7]);
    let s = b.stats();
    assert_eq!((s.submitted, s.items, s.dedup_hits), (5, 3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once_and_frees_up_after_the_flush() {
    let cfg = cfg(100, 1000, 20).with_queue_capacity(2).unwrap();
    let (b, _log) = recording(cfg);
    let mut first = Box::pin(b.submit_many(0, vec![1, 2], ctx()));
    assert!(poll_once(&mut first).await.is_pending());
    assert_eq!(b.queued(), 2);
    let refused = b.submit(0, 3, ctx()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::QueueFull);
    assert_eq!(b.stats().queue_full, 1);
    assert_eq!(ok(first.await), [1, 2]);
    assert_eq!(b.queued(), 0);
    assert_eq!(ok(b.submit(0, 3, ctx()).await), 3);
    // more items than the queue can ever hold is the caller's mistake, not a full queue
    let too_many = b.submit_many(0, vec![1, 2, 3], ctx()).await.unwrap_err();
    assert_eq!(too_many.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        too_many.request_id(),
        Some(ctx().request_id()),
        "{too_many:?}"
    );
    assert_eq!(refused.request_id(), Some(ctx().request_id()));
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_leaves_before_the_flush_is_left_out_and_harms_nobody() {
    let (b, log) = recording(cfg(100, 1000, 10));
    let mut gone = Box::pin(b.submit(0, 1, ctx()));
    assert!(poll_once(&mut gone).await.is_pending());
    drop(gone);
    assert_eq!(ok(b.submit(0, 2, ctx()).await), 2);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].items, [2]);
    assert_eq!(b.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_leaves_during_the_flush_does_not_stop_it_for_the_others() {
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let calls = Arc::new(Mutex::new(0u32));
    let (g, st, c) = (gate.clone(), started.clone(), calls.clone());
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        move |(), xs: Vec<u32>, _| {
            let g = g.clone();
            *c.lock().unwrap() += 1;
            st.notify_one();
            async move {
                g.notified().await;
                Ok(xs)
            }
        },
    )
    .unwrap();
    let mut gone = Box::pin(b.submit((), 1, ctx()));
    let mut stays = Box::pin(b.submit((), 2, ctx()));
    assert!(poll_once(&mut gone).await.is_pending());
    assert!(poll_once(&mut stays).await.is_pending());
    // the flush starts (at 5 ms) and waits on the gate
    started.notified().await;
    drop(gone);
    gate.notify_one();
    assert_eq!(ok(stays.await), 2);
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_whole_batch_error_goes_to_every_caller_of_that_batch_only() {
    let b = Batcher::new(
        cfg(2, 1000, 5),
        |_: &u32| 1,
        |(), xs: Vec<u32>, _| async move {
            if xs.contains(&13) {
                Err(Error::new(ErrorKind::Server, "boom").with_status(500))
            } else {
                Ok(xs)
            }
        },
    )
    .unwrap();
    // max 2 items: [13, 1] fails, [2] succeeds
    let (x, y, z) = tokio::join!(
        b.submit((), 13, ctx()),
        b.submit((), 1, ctx()),
        b.submit((), 2, ctx())
    );
    for e in [x.unwrap_err(), y.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::Server);
        assert_eq!(e.status(), Some(500));
    }
    assert_eq!(ok(z), 2);
    assert_eq!(b.stats().failed_batches, 1);
}

/// A refusal that may be one input's (`InvalidRequest`: an empty or too-long input) of a batch
/// of several is sent again in halves, down to the input refused alone: that caller gets the
/// error, the others their results (one caller's bad input failed everyone in its batch).
#[tokio::test(start_paused = true)]
async fn a_refused_batch_is_split_until_the_bad_input_fails_alone() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        move |(), xs: Vec<u32>, _| {
            seen.lock().unwrap().push(xs.clone());
            async move {
                if xs.contains(&13) {
                    Err(Error::new(ErrorKind::InvalidRequest, "input 13 is empty").with_status(400))
                } else {
                    Ok(xs)
                }
            }
        },
    )
    .unwrap();
    let (a, bad, c, d) = tokio::join!(
        b.submit((), 1, ctx()),
        b.submit((), 13, ctx()),
        b.submit((), 3, ctx()),
        b.submit((), 4, ctx())
    );
    assert_eq!((ok(a), ok(c), ok(d)), (1, 3, 4));
    let e = bad.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[0], vec![1, 13, 3, 4], "one batch first");
    assert!(calls.len() < 2 * 4, "at most 2n - 1 calls: {calls:?}");
    assert!(
        calls.contains(&vec![13]),
        "the bad input alone at last: {calls:?}"
    );
    let stats = b.stats();
    assert!(stats.splits >= 2, "{stats:?}");
    assert_eq!(stats.failed_batches, 1);
    // the error carries the caller's own request id, not the batch's
    let mine = RequestContext::new();
    let e = b.submit((), 13, &mine).await.unwrap_err();
    assert_eq!(e.request_id(), Some(mine.request_id()));
}

/// A refusal of the whole request (a parameter the model does not take: every part is
/// refused alike) is split within its budget, not down to every item: 64 items take at most
/// `1 + 4⌈log₂ 64⌉ + 2 = 27` calls, where splitting to single items took 127 (64 at once at
/// the last level, each refused). Every caller still gets the refusal.
#[tokio::test(start_paused = true)]
async fn a_refusal_of_the_whole_request_is_not_split_down_to_every_item() {
    let calls = Arc::new(Mutex::new(0u32));
    let seen = calls.clone();
    let b = Batcher::new(
        cfg(64, 100_000, 5),
        |_: &u32| 1,
        move |(), _xs: Vec<u32>, _| {
            *seen.lock().unwrap() += 1;
            async move {
                Err::<Vec<u32>, _>(
                    Error::new(
                        ErrorKind::InvalidRequest,
                        "This model does not support specifying dimensions.",
                    )
                    .with_status(400),
                )
            }
        },
    )
    .unwrap();
    let ctx = RequestContext::new();
    let e = b
        .submit_many((), (0..64).collect(), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let n = *calls.lock().unwrap();
    assert!(n <= 27, "{n} calls");
    assert!(n >= 3, "it was split at all: {n} calls");
}

/// An error that is the batch's (a server failure, a rate limit) goes to every caller as
/// before: it is not split.
#[tokio::test(start_paused = true)]
async fn a_batch_failing_for_the_server_is_not_split() {
    let calls = Arc::new(Mutex::new(0u32));
    let seen = calls.clone();
    let b = Batcher::new(cfg(100, 1000, 5), |_: &u32| 1, move |(), _xs: Vec<u32>, _| {
        *seen.lock().unwrap() += 1;
        async move { Err::<Vec<u32>, _>(Error::new(ErrorKind::Server, "boom").with_status(500)) }
    })
    .unwrap();
    let (x, y) = tokio::join!(b.submit((), 1, ctx()), b.submit((), 2, ctx()));
    assert_eq!(x.unwrap_err().kind(), ErrorKind::Server);
    assert_eq!(y.unwrap_err().kind(), ErrorKind::Server);
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(b.stats().splits, 0);
}

#[tokio::test(start_paused = true)]
async fn a_flush_answering_the_wrong_count_is_a_decode_error_to_every_caller() {
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        |(), mut xs: Vec<u32>, _| async move {
            xs.pop(); // one result short: every result would be someone else's
            Ok(xs)
        },
    )
    .unwrap();
    let (x, y) = tokio::join!(b.submit((), 1, ctx()), b.submit((), 2, ctx()));
    for e in [x.unwrap_err(), y.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_batch_context_has_the_latest_deadline_and_the_highest_priority() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        move |(), xs: Vec<u32>, c: RequestContext| {
            s.lock().unwrap().push((c.deadline(), c.priority()));
            async move { Ok(xs) }
        },
    )
    .unwrap();
    let soon = RequestContext::new()
        .with_timeout(Duration::from_secs(5))
        .with_priority(Priority::High);
    let later = RequestContext::new()
        .with_timeout(Duration::from_secs(60))
        .with_priority(Priority::Low);
    let none = RequestContext::new();
    let (x, y) = tokio::join!(b.submit((), 1, &later), b.submit((), 2, &soon));
    ok(x);
    ok(y);
    // a caller with no deadline: the batch has none
    let (x, y, z) = tokio::join!(
        b.submit((), 1, &later),
        b.submit((), 2, &soon),
        b.submit((), 3, &none)
    );
    ok(x);
    ok(y);
    ok(z);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(later.deadline(), Priority::High), (None, Priority::High)]
    );
}

/// A caller with a near deadline ends its own wait with a timeout; the batch, sent with the
/// others' deadline (here none), answers them. Before, the batch took the earliest deadline
/// of every caller that ever joined it: a caller that had left, or whose 2 ms were nearly
/// up, timed out everyone else.
#[tokio::test(start_paused = true)]
async fn a_callers_near_deadline_ends_its_own_wait_not_the_batch() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        move |(), xs: Vec<u32>, c: RequestContext| {
            s.lock().unwrap().push((xs.clone(), c.deadline()));
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(xs)
            }
        },
    )
    .unwrap();
    let hurried = RequestContext::new().with_timeout(Duration::from_millis(2));
    let patient = RequestContext::new();
    let started = tokio::time::Instant::now();
    let (x, y) = tokio::join!(
        async {
            let r = b.submit((), 1, &hurried).await;
            (r, started.elapsed())
        },
        b.submit((), 2, &patient)
    );
    let (x, at) = x;
    let e = x.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.request_id(), Some(hurried.request_id()));
    // at its own 2 ms (less the real time spent building the request, tokio's paused clock
    // rounding up to the millisecond), before the batch left at 5 ms
    assert!(
        at >= Duration::from_millis(1) && at <= Duration::from_millis(2),
        "{at:?}"
    );
    assert_eq!(ok(y), 2);
    // the hurried caller had left when the batch went: its item was left out, and its
    // deadline did not become the batch's
    assert_eq!(seen.lock().unwrap().clone(), [(vec![2], None)]);

    // one still waiting when the batch goes: the batch runs to the latest deadline, the
    // hurried caller times out alone, the other gets its answer
    let hurried = RequestContext::new().with_timeout(Duration::from_millis(8));
    let patient = RequestContext::new().with_timeout(Duration::from_secs(1));
    let (x, y) = tokio::join!(b.submit((), 3, &hurried), b.submit((), 4, &patient));
    assert_eq!(x.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(ok(y), 4);
    assert_eq!(seen.lock().unwrap()[1], (vec![3, 4], patient.deadline()));
    assert_eq!(b.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_flush_resolves_its_callers_with_an_error() {
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        |(), xs: Vec<u32>, _| async move {
            if xs.contains(&0) {
                panic!("flush bug");
            }
            Ok(xs)
        },
    )
    .unwrap();
    let e = b.submit((), 0, ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(ok(b.submit((), 1, ctx()).await), 1); // the batcher still works
}

#[test]
fn configs_are_validated_and_a_batcher_needs_a_runtime() {
    use std::time::Duration as D;
    assert_eq!(
        BatchConfig::new(0, 1, D::ZERO).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        BatchConfig::new(1, 0, D::ZERO).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert!(BatchConfig::new(1, 1, D::from_secs(61)).is_err());
    assert!(BatchConfig::default().with_queue_capacity(0).is_err());
    assert!(BatchConfig::new(1, 1, D::ZERO).is_ok());
    let e = Batcher::new(
        BatchConfig::default(),
        |_: &u32| 1,
        |(), xs: Vec<u32>, _| async move { Ok(xs) },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[tokio::test(start_paused = true)]
async fn presets_carry_the_providers_limits() {
    assert_eq!(BatchConfig::openai_embeddings().max_items(), 2048);
    assert_eq!(BatchConfig::openai_embeddings().max_tokens(), 300_000);
    assert_eq!(BatchConfig::tei(32).max_items(), 32);
    assert_eq!(BatchConfig::tei(0).max_items(), 1);
    assert_eq!(BatchConfig::gemini_batch_embed().max_items(), 100);
    assert!(BatchConfig::ollama_embed().max_items() >= 1);
    assert!(BatchConfig::llama_cpp_embeddings().max_items() >= 1);
    assert!(BatchConfig::llvm_batch_infer().max_items() >= 1);
}

/// The runtime that built the batcher shuts down (a client shared across `#[tokio::test]`s,
/// or one `Runtime` per blocking call): the callers of the batches it held get `Cancelled`
/// and their room in the queue back, and the next submit starts the batching task on its own
/// runtime. Before, every later submit failed with `Cancelled` for good.
#[test]
fn a_batcher_outlives_the_runtime_that_built_it() {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let first = rt();
    let b = first
        .block_on(async {
            Batcher::new(
                BatchConfig::new(100, 1000, Duration::from_secs(30))?.with_queue_capacity(1)?,
                |_: &u32| 1,
                |(), xs: Vec<u32>, _| async move { Ok(xs) },
            )
        })
        .unwrap();
    // an item left in an open batch (30 s wait) when the runtime goes
    let waiting = {
        let b = b.clone();
        first.spawn(async move { b.submit((), 1, &RequestContext::new()).await })
    };
    first.block_on(async {
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
    });
    assert_eq!(b.queued(), 1);
    drop(first);
    assert_eq!(
        b.queued(),
        0,
        "the queue's room came back with the runtime's batches"
    );
    drop(waiting);

    let second = rt();
    // the queue holds one item: had the lost item's room not come back, this were QueueFull
    assert_eq!(
        second
            .block_on(b.submit((), 7, &RequestContext::new()))
            .unwrap(),
        7
    );
    assert_eq!(b.queued(), 0);
    drop(second);
    // and again on a third runtime, after the second's shutdown
    let third = rt();
    assert_eq!(
        third
            .block_on(b.submit((), 9, &RequestContext::new()))
            .unwrap(),
        9
    );
}

/// An answer longer than the client's body limit (the vectors of a full batch: 2 048 × 1 536
/// floats are 40–70 MB of JSON, over the 32 MiB default) is asked again in halves, which fit:
/// every caller gets its result. It failed every caller of every full batch.
#[tokio::test(start_paused = true)]
async fn a_batch_answered_past_the_body_limit_is_split_into_parts_that_fit() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let b = Batcher::new(
        cfg(100, 1000, 5),
        |_: &u32| 1,
        move |(), xs: Vec<u32>, _| {
            seen.lock().unwrap().push(xs.len());
            async move {
                if xs.len() > 2 {
                    Err(
                        Error::new(ErrorKind::Decode, "response body exceeds the limit")
                            .with_status(200)
                            .with_over_body_limit(true),
                    )
                } else {
                    Ok(xs)
                }
            }
        },
    )
    .unwrap();
    let outs = ok(b.submit_many((), (0..8).collect(), ctx()).await);
    assert_eq!(outs, (0..8).collect::<Vec<_>>());
    let mut calls = calls.lock().unwrap().clone();
    calls.sort_unstable();
    assert_eq!(calls, vec![2, 2, 2, 2, 4, 4, 8], "halves until they fit");
    assert_eq!(b.stats().failed_batches, 0);
}
