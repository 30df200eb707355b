//! Benchmarks of infermux-cache: an exact hit, and a semantic-tier vector lookup at 10⁵
//! entries × 384 dimensions through the HNSW graph and by brute force (with the graph's
//! recall@1 against brute force printed before the figures).
//!
//! Vectors are clustered like sentence embeddings: 1000 random centres in [-1, 1]³⁸⁴, each
//! vector its centre plus uniform noise of ±0.5 per coordinate (a splitmix64 generator, seed
//! fixed); queries are fresh draws from the same clusters.
//!
//! Also a miss that calls through (`cache/miss_call/*`): the lookup, the upstream call (a ready
//! answer the store refuses, so every call misses) and the refused store, with identical calls
//! coalesced (the default) and without, side by side.
//!
//! `cargo bench -p infermux-cache --bench cache` (`CACHE_BENCH_N` sets the entry count).
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use infermux_cache::{Cache, CacheConfig, CacheKey, IndexConfig, VectorIndex};
use infermux_core::{
    ChatRequest, ChatResponse, FinishReason, Message, Request, RequestContext, Response,
};

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut centre_rng = Rng(7);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| centre_rng.unit()).collect())
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let c = &centres[(rng.next_u64() as usize + i) % clusters];
            c.iter().map(|x| x + spread * rng.unit()).collect()
        })
        .collect()
}

/// The request both the hit and the miss benchmarks ask.
fn question() -> Request {
    Request::Chat(
        ChatRequest::new(
            "smollm2",
            vec![
                Message::system("You are a helpful assistant. Be brief."),
                Message::user("What is the capital of France?"),
            ],
        )
        .with_max_tokens(64)
        .with_temperature(0.0),
    )
}

fn exact_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let req = question();
    let ctx = RequestContext::new().with_tenant("team-a");
    let resp = Response::Chat(ChatResponse::new("smollm2", Message::assistant("Paris.")));
    rt.block_on(cache.store(&req, &ctx, "group-a", &resp));
    // the key alone: the canonical writer and XXH3-128
    c.bench_function("cache/exact_key", |b| {
        b.iter(|| CacheKey::exact(black_box(&req), &ctx, "group-a"))
    });
    // one `block_on` per batch of lookups, not per lookup: what is timed is the lookup an async
    // caller awaits, not entering the runtime
    c.bench_function("cache/exact_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let hit = cache.lookup(black_box(&req), &ctx, "group-a").await;
                    assert!(hit.is_some());
                    black_box(hit);
                }
                start.elapsed()
            })
        });
    });
}

fn miss_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let req = question();
    let ctx = RequestContext::new().with_tenant("team-a");
    // cut by the content filter: never stored, so every call misses
    let mut answer = ChatResponse::new("smollm2", Message::assistant("Paris."));
    answer.finish_reason = Some(FinishReason::ContentFilter);
    let resp = Response::Chat(answer);
    let mut g = c.benchmark_group("cache/miss_call");
    for (name, coalesce) in [("coalesced", true), ("alone", false)] {
        let cache = Cache::new(CacheConfig::default().with_coalescing(coalesce)).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let r = cache
                            .call(black_box(&req), &ctx, "group-a", || async {
                                Ok(resp.clone())
                            })
                            .await
                            .unwrap();
                        black_box(r);
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

fn semantic_lookup(c: &mut Criterion) {
    let n: usize = std::env::var("CACHE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dim = 384;
    let data = clustered(n, dim, 1000, 0.5, 1);
    let queries = clustered(1000, dim, 1000, 0.5, 2);
    let t = Instant::now();
    let mut index = VectorIndex::new(dim, IndexConfig::default().with_hnsw_from(n)).unwrap();
    for v in &data {
        index.push(v).unwrap();
    }
    assert!(index.uses_hnsw());
    eprintln!(
        "built {n} x {dim} (HNSW M 16, ef_construction 100) in {:?}",
        t.elapsed()
    );
    for ef in [32, 40, 48, 64, 128] {
        index.set_ef_search(ef);
        let agree = queries
            .iter()
            .filter(|q| {
                index.search(q, 1).first().map(|m| m.row)
                    == index.search_brute(q, 1).first().map(|m| m.row)
            })
            .count();
        // p50 of single top-4 lookups, measured directly (criterion reports the mean)
        let mut times: Vec<Duration> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                black_box(index.search(q, 4));
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "ef {ef}: recall@1 vs brute force over {} queries {:.4}; top-4 lookup p50 {:?} p99 {:?}",
            queries.len(),
            agree as f64 / queries.len() as f64,
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
    index.set_ef_search(64);
    let mut g = c.benchmark_group("cache/semantic");
    g.sample_size(20);
    let mut i = 0;
    g.bench_function(format!("hnsw_top4_{n}x{dim}"), |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            index.search(black_box(&queries[i]), 4)
        });
    });
    g.bench_function(format!("brute_top4_{n}x{dim}"), |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            index.search_brute(black_box(&queries[i]), 4)
        });
    });
    g.finish();
}

criterion_group!(benches, exact_hit, miss_call, semantic_lookup);
criterion_main!(benches);
