//! Criterion benches of the OpenAI-protocol wire formats (`openai-compat`, `openai` and its
//! Responses API): building a chat request body, parsing a plain answer and a 100-event
//! stream. The inputs and operations are those of the `icount_wire_openai` binary, which
//! measures the same operations in instructions under callgrind.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../src/bin/icount_wire_openai.rs"]
#[allow(dead_code, unreachable_pub)]
mod ops;

fn wire(c: &mut Criterion) {
    let inputs = ops::Inputs::build();
    let mut g = c.benchmark_group("wire_openai");
    for op in ops::OPS {
        g.bench_function(op, |b| b.iter(|| ops::run(black_box(op), &inputs)));
    }
    g.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
