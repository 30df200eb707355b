//! The stack's own cost per attempt, observed from outside: how often it reads its clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use infermux_core::{Clock, Provider, RequestContext};
use infermux_resilience::{ResilienceConfig, Resilient};

use crate::stub::{Stub, chat, ok};

/// The system's clock, counting its reads.
#[derive(Debug, Default)]
struct CountingClock(AtomicUsize);

impl Clock for CountingClock {
    fn now(&self) -> Instant {
        self.0.fetch_add(1, Ordering::SeqCst);
        Instant::now()
    }
}

#[tokio::test]
async fn a_successful_attempt_reads_the_stacks_clock_twice() {
    for config in [ResilienceConfig::standard(), ResilienceConfig::disabled()] {
        let clock = Arc::new(CountingClock::default());
        let provider = Stub::new(|_| async { ok() });
        let stack = Resilient::with_clock(provider, config, clock.clone()).unwrap();
        let before = clock.0.load(Ordering::SeqCst);
        for _ in 0..10 {
            stack.call(&chat(), &RequestContext::new()).await.unwrap();
        }
        // the attempt's start and end: latency, and time to first byte when nothing marked it
        assert_eq!(clock.0.load(Ordering::SeqCst) - before, 2 * 10);
    }
}
