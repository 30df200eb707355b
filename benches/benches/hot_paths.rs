//! Criterion benches of the hot paths that exist so far: SSE decoding and chunk parsing of a
//! streamed answer, request ids, the latency histogram and error construction.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infermux_benches::openai_sse_body;
use infermux_core::{EndpointCounters, Error, ErrorKind, RequestId};
use infermux_http::decode::SseDecoder;
use infermux_openai_compat::ChatStreamState;

fn decode(c: &mut Criterion) {
    let body = openai_sse_body(500);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sse_decode_1k_chunks", |b| {
        b.iter(|| {
            let mut d = SseDecoder::new();
            let mut n = 0;
            for chunk in body.chunks(1024) {
                n += d.feed(black_box(chunk)).map(|v| v.len()).unwrap_or(0);
            }
            n
        })
    });
    g.bench_function("sse_decode_and_parse_openai_chunks", |b| {
        b.iter(|| {
            let mut d = SseDecoder::new();
            let mut st = ChatStreamState::new();
            let mut n = 0;
            for chunk in body.chunks(1024) {
                for ev in d.feed(black_box(chunk)).unwrap_or_default() {
                    n += st.on_data(&ev.data).map(|v| v.len()).unwrap_or(0);
                }
            }
            n
        })
    });
    g.finish();
}

fn core(c: &mut Criterion) {
    c.bench_function("request_id_new", |b| b.iter(RequestId::new));
    let counters = EndpointCounters::new();
    c.bench_function("counters_record_success", |b| {
        b.iter(|| counters.record_success(black_box(Duration::from_micros(1234)), None))
    });
    c.bench_function("error_new_with_context", |b| {
        b.iter(|| {
            Error::new(ErrorKind::RateLimited, "slow down")
                .with_status(429)
                .with_retry_after(Duration::from_secs(1))
        })
    });
}

criterion_group!(benches, decode, core);
criterion_main!(benches);
