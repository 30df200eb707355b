//! Measures the memory held by 100 000 queued requests: the RSS growth of this process
//! (`/proc/self/statm`) while that many `Admission::acquire` futures wait behind one held
//! permit. `cargo run --release -p infermux-benches --bin queue_memory`

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::task::noop_waker;
use infermux_core::{Priority, Result};
use infermux_resilience::queue::{Admission, Permit, QueueConfig};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

type Acquire<'a> = Pin<Box<dyn Future<Output = Result<Permit>> + 'a>>;

fn main() {
    const N: usize = 100_000;
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let q = Admission::new(QueueConfig::standard().with_permits(1).with_max_queued(N)).unwrap();
    let mut first: Acquire<'_> = Box::pin(q.acquire(Priority::Normal));
    let Poll::Ready(Ok(held)) = first.as_mut().poll(&mut cx) else {
        eprintln!("the first permit was not granted");
        std::process::exit(1);
    };
    let before = rss_bytes();
    let mut waiting: Vec<Acquire<'_>> = Vec::with_capacity(N);
    for i in 0..N {
        let prio = [Priority::Low, Priority::Normal, Priority::High][i % 3];
        let mut f: Acquire<'_> = Box::pin(q.acquire(prio));
        if f.as_mut().poll(&mut cx).is_ready() {
            eprintln!("request {i} was not queued");
            std::process::exit(1);
        }
        waiting.push(f);
    }
    let after = rss_bytes();
    assert_eq!(q.queued(), N);
    let mb = (after.saturating_sub(before)) as f64 / 1e6;
    println!(
        "{N} queued requests hold {mb:.1} MB ({:.0} bytes each)",
        (after - before) as f64 / N as f64
    );
    drop(waiting);
    drop(held);
    assert_eq!(q.queued(), 0);
    assert_eq!(q.available(), 1);
    if mb > 100.0 {
        eprintln!("over the 100 MB target");
        std::process::exit(1);
    }
}
