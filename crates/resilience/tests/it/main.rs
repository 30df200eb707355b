//! Integration tests of infermux-resilience: the breaker against a reference model and under
//! concurrency, queue properties, retry decisions, the stack against the fault-injecting
//! simulator (soak and cancellation).

mod adapters;
mod breaker;
mod cancel;
mod config;
mod contention;
mod counters;
mod deadline;
mod errors;
mod first_content;
mod hot_path;
mod queue;
mod retry;
mod stack;
mod stub;
mod tower;
mod tracing;
