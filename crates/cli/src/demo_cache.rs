//! The second part of `infermux demo`: the response cache and the embedding batcher, against a
//! healthy local simulator. Questions are asked again (exact hits) and reworded (semantic hits,
//! when the local embedder's model folder is there), and concurrent embedding calls go out as
//! a few batches, each caller getting its own vector.

use std::time::Duration;

use futures_util::StreamExt;
use infermux::batching::BatchConfig;
use infermux::cache::CacheConfig;
use infermux::openai_compat::OpenAiCompat;
use infermux::{
    CacheTier, ChatRequest, Client, EmbeddingRequest, EndpointConfig, ErrorKind, Message,
};
use infermux_testkit::{FaultPlan, Simulator};

/// Questions asked once each, then again word for word, then reworded.
pub(crate) const QUESTIONS: [(&str, &str); 6] = [
    (
        "What is the capital of France?",
        "What's the capital city of France?",
    ),
    (
        "How do I reverse a list in Python?",
        "How can I reverse a list in Python?",
    ),
    (
        "What is a circuit breaker in distributed systems?",
        "What is a circuit breaker in a distributed system?",
    ),
    (
        "Why is the sky blue?",
        "Why is the sky blue during the day?",
    ),
    (
        "How many legs does a spider have?",
        "How many legs do spiders have?",
    ),
    ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
];

fn error(msg: String) -> infermux::Error {
    infermux::Error::new(ErrorKind::Decode, msg)
}

/// What the cache part found.
pub(crate) struct CacheReport {
    pub(crate) exact_hits: u64,
    pub(crate) semantic_hits: u64,
    pub(crate) semantic_on: bool,
}

pub(crate) async fn run(
    semantic: Option<infermux::SemanticCache>,
) -> infermux::Result<CacheReport> {
    let sim = Simulator::start(FaultPlan::none())
        .await
        .map_err(|e| error(format!("starting the simulator: {e}")))?;
    let provider = || OpenAiCompat::new(EndpointConfig::new("sim-c", format!("{}/v1", sim.url()))?);
    let semantic_on = semantic.is_some();
    let mut builder = Client::builder()
        .provider(provider()?)
        .cache(CacheConfig::new(Duration::from_secs(600), 10_000)?);
    if let Some(s) = semantic {
        builder = builder.semantic_cache(s);
    }
    let client = builder.build()?;
    outln!(
        "\ncache: {} questions asked, asked again word for word, then reworded (group-free client on sim-c)",
        QUESTIONS.len()
    );
    let ask = |q: &str| ChatRequest::new("sim-echo-1", vec![Message::user(q)]).with_max_tokens(16);
    let mut sent_before = sim.requests();
    for round in ["first time", "word for word", "reworded"] {
        let mut hits = Vec::new();
        for (q, reworded) in QUESTIONS {
            let text = if round == "reworded" { reworded } else { q };
            let r = client.chat(ask(text)).await?;
            if let Some(hit) = r.cache {
                hits.push(hit);
            }
        }
        let sent = sim.requests() - sent_before;
        sent_before = sim.requests();
        let exact = hits.iter().filter(|h| h.tier == CacheTier::Exact).count();
        let semantic: Vec<_> = hits
            .iter()
            .filter(|h| h.tier == CacheTier::Semantic)
            .collect();
        out!(
            "  {round:<14} {exact} exact hits, {} semantic hits, {sent} sent to the server",
            semantic.len()
        );
        if let Some(h) = semantic.first() {
            out!(
                " (e.g. similarity {:.3}, verifier {:.3})",
                h.similarity.unwrap_or(0.0),
                h.verifier_score.unwrap_or(0.0)
            );
        }
        outln!();
    }
    if !semantic_on {
        outln!(
            "  semantic tier: off — no all-MiniLM-L6-v2 folder (set INFERMUX_MINILM_DIR; see docs/cache.md)"
        );
    }
    let snap = client
        .cache()
        .map(|c| c.snapshot())
        .ok_or_else(|| error("the client has no cache".into()))?;

    // embeddings: 64 concurrent single-input calls, unbatched and batched
    let plain = Client::new(provider()?);
    let batched = Client::builder()
        .provider(provider()?)
        .batch_embeddings(BatchConfig::default().with_max_wait(Duration::from_millis(5))?)
        .build()?;
    let texts: Vec<String> = (0..64).map(|i| format!("document number {i}")).collect();
    let before = sim.requests();
    let expected: Vec<_> = futures_util::stream::iter(texts.iter())
        .map(|t| plain.embed(EmbeddingRequest::new("sim-embed", [t.clone()])))
        .buffered(64)
        .collect()
        .await;
    let unbatched_sent = sim.requests() - before;
    let before = sim.requests();
    let got: Vec<_> = futures_util::stream::iter(texts.iter())
        .map(|t| batched.embed(EmbeddingRequest::new("sim-embed", [t.clone()])))
        .buffered(64)
        .collect()
        .await;
    let batched_sent = sim.requests() - before;
    let mut own = 0;
    for (g, e) in got.iter().zip(&expected) {
        match (g, e) {
            (Ok(g), Ok(e)) if g.embeddings == e.embeddings => own += 1,
            _ => {}
        }
    }
    let stats = batched
        .batch_stats()
        .ok_or_else(|| error("the client has no batcher".into()))?;
    outln!(
        "\nbatching: 64 concurrent embedding calls of one input each\n  unbatched: {unbatched_sent} requests; batched: {batched_sent} requests (batches {}, mean size {:.1}); {own}/64 callers got their own vector",
        stats.batches,
        stats.items as f64 / stats.batches.max(1) as f64,
    );
    if own != 64 {
        return Err(error(format!(
            "{} callers got a wrong vector or an error",
            64 - own
        )));
    }
    Ok(CacheReport {
        exact_hits: snap.exact_hits,
        semantic_hits: snap.semantic_hits,
        semantic_on,
    })
}

/// The semantic tier when the local embedder's model folder is found (`INFERMUX_MINILM_DIR`).
pub(crate) fn semantic_from_env() -> infermux::Result<Option<infermux::SemanticCache>> {
    match std::env::var_os("INFERMUX_MINILM_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => infermux::SemanticCache::local(dir, None).map(Some),
        None => Ok(None),
    }
}
