//! The local embedder's throughput (feature `local-embed`): sentences per second embedded one
//! at a time and in batches of 32, on short (chat-question-sized) and longer texts.
//!
//! `INFERMUX_MINILM_DIR=<all-MiniLM-L6-v2 folder> cargo bench -p infermux-cache
//! --features local-embed --bench local_embed` (`.ci/run` fetches the folder). Without the
//! variable it says so and measures nothing.

use std::time::{Duration, Instant};

use infermux_cache::LocalEmbedder;

/// How long each measurement runs at least.
const BUDGET: Duration = Duration::from_secs(5);

/// Sentences of about `words` words, varied so no two are the same.
fn sentences(n: usize, words: usize) -> Vec<String> {
    const VOCAB: [&str; 16] = [
        "how",
        "do",
        "I",
        "reset",
        "my",
        "password",
        "cache",
        "model",
        "answer",
        "question",
        "the",
        "semantic",
        "embedding",
        "fast",
        "why",
        "server",
    ];
    (0..n)
        .map(|i| {
            (0..words)
                .map(|w| VOCAB[(i * 7 + w * 3 + w * w) % VOCAB.len()])
                .collect::<Vec<_>>()
                .join(" ")
                + &format!(" {i}?")
        })
        .collect()
}

/// Sentences per second embedding `texts` in calls of `batch`, over at least [`BUDGET`].
fn rate(embedder: &LocalEmbedder, texts: &[String], batch: usize) -> f64 {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // warm up
    embedder.embed_batch(&refs[..batch]).expect("embeds");
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < BUDGET {
        for chunk in refs.chunks(batch) {
            let v = embedder.embed_batch(chunk).expect("embeds");
            done += v.len();
        }
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let Some(dir) = std::env::var_os("INFERMUX_MINILM_DIR").filter(|v| !v.is_empty()) else {
        println!("INFERMUX_MINILM_DIR is not set: nothing measured");
        return;
    };
    let embedder = LocalEmbedder::open(&dir).expect("loads the model");
    println!(
        "{embedder:?}, {} threads available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (label, words) in [("short (~10 words)", 10), ("long (~60 words)", 60)] {
        let texts = sentences(256, words);
        let single = rate(&embedder, &texts, 1);
        let batched = rate(&embedder, &texts, 32);
        println!(
            "{label:<18} single {single:>8.1} sentences/s   batch 32 {batched:>8.1} sentences/s   ({:.1}x)",
            batched / single
        );
    }
}
