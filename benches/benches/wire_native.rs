//! Criterion benches of the native providers' wire formats (anthropic, gemini, ollama, hf-tgi,
//! hf-tei): building the chat request body, parsing a plain answer and a 100-event stream —
//! the operations `icount_wire_native` counts instructions of, from the same inputs.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[allow(dead_code, unreachable_pub)]
#[path = "../src/bin/icount_wire_native.rs"]
mod ops;

fn wire_native(c: &mut Criterion) {
    let inputs = ops::Inputs::new();
    let mut g = c.benchmark_group("wire_native");
    for (name, op) in ops::OPS {
        g.bench_function(*name, |b| b.iter(|| op(black_box(&inputs))));
    }
    g.finish();
}

criterion_group!(benches, wire_native);
criterion_main!(benches);
