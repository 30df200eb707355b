//! The semantic tier with a deterministic embedder: hits, misses, skips, the verifier's say.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use infermux_cache::{Cache, CacheConfig, IndexConfig, SemanticConfig};
use infermux_core::{CacheTier, ChatRequest, Message, Request, RequestContext, Tool};
use serde_json::json;

use crate::support::{
    CosineVerifier, NoVerifier, WordsEmbedder, answer, ask, semantic_cache, text_of,
};

#[tokio::test]
async fn a_paraphrase_of_the_last_turn_hits_with_its_scores() {
    let (cache, emb) = semantic_cache(Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    cache
        .store(
            &ask("what is the capital of france"),
            &ctx,
            "g",
            &answer("Paris"),
        )
        .await;
    // the same words, another order and case: another exact key, the same vector
    let hit = cache
        .lookup(&ask("France: what is the capital of"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(text_of(&hit), "Paris");
    let h = hit.cache_hit().unwrap();
    assert_eq!(h.tier, CacheTier::Semantic);
    assert!(h.similarity.unwrap() > 0.99);
    assert!(h.verifier_score.unwrap() > 0.99);
    // another question misses
    assert!(
        cache
            .lookup(&ask("how tall is mount everest"), &ctx, "g")
            .await
            .is_none()
    );
    let s = cache.snapshot();
    assert_eq!((s.semantic_hits, s.semantic_misses), (1, 1));
    assert_eq!(s.estimated_false_hit_rate, Some(0.02));
    assert!(emb.calls.load(Ordering::SeqCst) >= 3);
    let mut out = String::new();
    cache.render_prometheus("c", &mut out);
    assert!(out.contains("infermux_cache_semantic_estimated_false_hit_rate{cache=\"c\"} 0.02"));
    assert!(out.contains("infermux_cache_hits_total{cache=\"c\",tier=\"semantic\"} 1"));
}

#[tokio::test]
async fn the_verifier_decides_after_the_vector_match() {
    let (cache, _) = semantic_cache(Arc::new(NoVerifier));
    let ctx = RequestContext::new();
    cache
        .store(
            &ask("what is the capital of france"),
            &ctx,
            "g",
            &answer("Paris"),
        )
        .await;
    assert!(
        cache
            .lookup(&ask("France: what is the capital of"), &ctx, "g")
            .await
            .is_none()
    );
    assert_eq!(cache.snapshot().verifier_rejects, 1);
}

#[tokio::test]
async fn sampled_and_tool_requests_are_skipped_unless_allowed() {
    let (cache, _) = semantic_cache(Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    let sampled = |t: &str| {
        Request::Chat(ChatRequest::new("m", vec![Message::user(t)]).with_temperature(0.7))
    };
    cache
        .store(&sampled("a b c"), &ctx, "g", &answer("x"))
        .await;
    assert!(cache.lookup(&sampled("c b a"), &ctx, "g").await.is_none());
    let tools = |t: &str| {
        Request::Chat(
            ChatRequest::new("m", vec![Message::user(t)]).with_tools(vec![Tool::new(
                "f",
                "d",
                json!({}),
            )]),
        )
    };
    cache.store(&tools("a b c"), &ctx, "g", &answer("x")).await;
    assert!(cache.lookup(&tools("c b a"), &ctx, "g").await.is_none());
    assert!(cache.snapshot().semantic_skipped >= 2);
    // the same given in `extra`, which providers write over the typed fields (before, a
    // sampled or tool-calling request written there was cached and served as any other)
    let via_extra = |t: &str, key: &str, value: serde_json::Value| {
        let mut c = ChatRequest::new("m", vec![Message::user(t)]);
        c.extra.insert(key.into(), value);
        Request::Chat(c)
    };
    for (key, value) in [
        ("temperature", json!(1.2)),
        ("tools", json!([{"type": "web_search"}])),
        ("tool_choice", json!("required")),
    ] {
        let before = cache.snapshot().semantic_skipped;
        cache
            .store(
                &via_extra("a b c", key, value.clone()),
                &ctx,
                "g",
                &answer("x"),
            )
            .await;
        assert!(
            cache
                .lookup(&via_extra("c b a", key, value), &ctx, "g")
                .await
                .is_none(),
            "{key}"
        );
        assert!(cache.snapshot().semantic_skipped > before, "{key}");
    }
    // allowed
    let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
        Arc::new(WordsEmbedder::default()),
        Arc::new(CosineVerifier(0.8)),
        SemanticConfig::default()
            .allow_sampled(true)
            .allow_tools(true),
    );
    cache
        .store(&sampled("a b c"), &ctx, "g", &answer("x"))
        .await;
    assert!(cache.lookup(&sampled("c b a"), &ctx, "g").await.is_some());
    cache.store(&tools("a b c"), &ctx, "g", &answer("x")).await;
    assert!(cache.lookup(&tools("c b a"), &ctx, "g").await.is_some());
}

#[tokio::test]
async fn an_embedder_failure_is_a_counted_miss() {
    let emb = Arc::new(WordsEmbedder {
        fail: true,
        ..Default::default()
    });
    let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
        emb,
        Arc::new(CosineVerifier(0.8)),
        SemanticConfig::default(),
    );
    let ctx = RequestContext::new();
    cache.store(&ask("a b"), &ctx, "g", &answer("x")).await;
    assert!(cache.lookup(&ask("b a"), &ctx, "g").await.is_none());
    assert!(
        cache.lookup(&ask("a b"), &ctx, "g").await.is_some(),
        "the exact tier still works"
    );
    assert!(cache.snapshot().embed_errors >= 2);
}

/// An embedder that fails is asked once per call, not again when the answer is stored: the
/// store ran before the caller got its answer, so each call paid the failure twice.
#[tokio::test]
async fn a_failing_embedder_is_asked_once_per_call() {
    let emb = Arc::new(WordsEmbedder {
        fail: true,
        ..Default::default()
    });
    let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
        emb.clone(),
        Arc::new(CosineVerifier(0.8)),
        SemanticConfig::default(),
    );
    let ctx = RequestContext::new();
    let r = cache
        .call(&ask("a b"), &ctx, "g", || async { Ok(answer("x")) })
        .await
        .unwrap();
    assert_eq!(text_of(&r), "x");
    assert_eq!(emb.calls.load(Ordering::SeqCst), 1);
    // a store with no lookup before it still embeds (and the exact tier kept the answer)
    cache.store(&ask("c d"), &ctx, "g", &answer("y")).await;
    assert_eq!(emb.calls.load(Ordering::SeqCst), 2);
    assert!(cache.lookup(&ask("a b"), &ctx, "g").await.is_some());
}

/// An embedder that never answers holds a call up for the tier's `embed_timeout`, once: the
/// lookup is a miss and the call goes on to the provider.
#[tokio::test(start_paused = true)]
async fn a_hanging_embedder_holds_a_call_up_for_the_embed_timeout_once() {
    #[derive(Debug)]
    struct Hangs;
    #[async_trait::async_trait]
    impl infermux_cache::Embedder for Hangs {
        fn model_id(&self) -> &str {
            "hangs"
        }
        async fn embed(
            &self,
            _texts: &[String],
            _ctx: &RequestContext,
        ) -> infermux_core::Result<Vec<Vec<f32>>> {
            std::future::pending().await
        }
    }
    let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
        Arc::new(Hangs),
        Arc::new(CosineVerifier(0.8)),
        SemanticConfig::default()
            .with_embed_timeout(std::time::Duration::from_secs(1))
            .unwrap(),
    );
    let ctx = RequestContext::new();
    let start = tokio::time::Instant::now();
    let r = cache
        .call(&ask("a b"), &ctx, "g", || async { Ok(answer("x")) })
        .await
        .unwrap();
    assert_eq!(text_of(&r), "x");
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(1));
    assert_eq!(cache.snapshot().embed_errors, 1);
    assert!(
        SemanticConfig::default()
            .with_embed_timeout(std::time::Duration::ZERO)
            .is_err()
    );
}

/// Brute force (the default below 4096 rows), and the HNSW graph from the first row: the
/// graph's search must skip evicted and expired rows as brute force does.
fn index_configs() -> [IndexConfig; 2] {
    [
        IndexConfig::default(),
        IndexConfig::default().with_hnsw_from(1),
    ]
}

#[tokio::test]
async fn the_semantic_tier_holds_its_size_bound() {
    for index in index_configs() {
        let emb = Arc::new(WordsEmbedder::default());
        let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
            emb,
            Arc::new(CosineVerifier(0.8)),
            SemanticConfig::default()
                .with_max_entries(2, 10)
                .unwrap()
                .with_index(index.clone())
                .unwrap(),
        );
        let ctx = RequestContext::new();
        for q in ["alpha beta", "gamma delta", "epsilon zeta"] {
            cache.store(&ask(q), &ctx, "g", &answer(q)).await;
        }
        // the oldest went
        assert!(
            cache.lookup(&ask("beta alpha"), &ctx, "g").await.is_none(),
            "{index:?}"
        );
        assert!(
            cache
                .lookup(&ask("zeta epsilon"), &ctx, "g")
                .await
                .is_some()
        );
        assert_eq!(cache.snapshot().evictions, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn semantic_entries_expire_after_their_ttl() {
    for index in index_configs() {
        let clock = infermux_core::ManualClock::new();
        let cache = Cache::new(CacheConfig::default())
            .unwrap()
            .with_clock(Arc::new(clock.clone()))
            .with_semantic(
                Arc::new(WordsEmbedder::default()),
                Arc::new(CosineVerifier(0.8)),
                SemanticConfig::default()
                    .with_ttl(std::time::Duration::from_secs(10))
                    .unwrap()
                    .with_index(index.clone())
                    .unwrap(),
            );
        let ctx = RequestContext::new();
        cache.store(&ask("a b c"), &ctx, "g", &answer("x")).await;
        clock.advance(std::time::Duration::from_secs(9));
        assert!(cache.lookup(&ask("c b a"), &ctx, "g").await.is_some());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(
            cache.lookup(&ask("c b a"), &ctx, "g").await.is_none(),
            "{index:?}"
        );
    }
}

#[tokio::test]
async fn long_last_turns_sharing_their_opening_go_to_the_exact_tier_only() {
    let (cache, _) = semantic_cache(Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    // a pasted document, then a question about it: the same opening, another question
    let doc: Vec<String> = (0..600).map(|i| format!("clause{i}")).collect();
    let doc = doc.join(" ");
    cache
        .store(
            &ask(&format!("{doc} who signed it")),
            &ctx,
            "g",
            &answer("Alice"),
        )
        .await;
    assert!(
        cache
            .lookup(&ask(&format!("{doc} when does it end")), &ctx, "g")
            .await
            .is_none(),
        "another question about the same document"
    );
    assert_eq!(cache.snapshot().semantic_hits, 0);
    assert!(cache.snapshot().semantic_skipped >= 1);
    // the very same request is still an exact hit
    assert!(
        cache
            .lookup(&ask(&format!("{doc} who signed it")), &ctx, "g")
            .await
            .is_some()
    );
}

/// Word vectors of a length that can change (another model behind the same group).
#[derive(Debug)]
struct ResizableEmbedder(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl infermux_cache::Embedder for ResizableEmbedder {
    fn model_id(&self) -> &str {
        "resizable"
    }
    async fn embed(
        &self,
        texts: &[String],
        _ctx: &RequestContext,
    ) -> infermux_core::Result<Vec<Vec<f32>>> {
        let n = self.0.load(Ordering::SeqCst);
        // the 64 word buckets folded into `n`
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; n];
                for (i, x) in crate::support::word_vector(t).into_iter().enumerate() {
                    v[i % n] += x;
                }
                v
            })
            .collect())
    }
}

#[tokio::test]
async fn vectors_of_each_length_keep_their_own_rows() {
    let emb = Arc::new(ResizableEmbedder(std::sync::atomic::AtomicUsize::new(64)));
    let cache = crate::support::semantic_cache_on(emb.clone(), Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    cache
        .store(
            &ask("what is the capital of france"),
            &ctx,
            "g",
            &answer("Paris"),
        )
        .await;
    // the embedder changes under the same id: its vectors are shorter
    emb.0.store(32, Ordering::SeqCst);
    cache
        .store(
            &ask("how tall is mount everest"),
            &ctx,
            "g",
            &answer("8849 m"),
        )
        .await;
    let hit = cache
        .lookup(&ask("everest: how tall is mount"), &ctx, "g")
        .await
        .expect("the new embedder's rows are served");
    assert_eq!(text_of(&hit), "8849 m");
    // back to the first size (a fallback model gone): its rows are still there
    emb.0.store(64, Ordering::SeqCst);
    let hit = cache
        .lookup(&ask("france: what is the capital of"), &ctx, "g")
        .await
        .expect("the first size's rows are kept");
    assert_eq!(text_of(&hit), "Paris");
}

/// The tier keeps within its byte budget: answers of about 20 KiB stored in 40 namespaces
/// (40 models) and 30 rows of one namespace leave the tier's weight within 256 KiB, whole
/// namespaces going least used first; a row over the whole budget is not kept. Before, only
/// `max_namespaces × max_entries_per_namespace` (10⁹ rows by default) bounded it.
#[tokio::test]
async fn the_tier_keeps_within_its_byte_budget() {
    let budget = 256 << 10;
    let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
        Arc::new(WordsEmbedder::default()),
        Arc::new(CosineVerifier(0.8)),
        SemanticConfig::default()
            .with_min_similarity(0.7)
            .unwrap()
            .with_max_bytes(budget)
            .unwrap(),
    );
    let ctx = RequestContext::new();
    let big = "x".repeat(20 << 10);
    let in_model =
        |model: &str, q: &str| Request::Chat(ChatRequest::new(model, vec![Message::user(q)]));
    for i in 0..40 {
        let req = in_model(&format!("m{i}"), "what is the capital of france");
        cache.store(&req, &ctx, "g", &answer(&big)).await;
    }
    let s = cache.snapshot();
    assert!(s.semantic_bytes <= budget, "{s:?}");
    assert!(s.semantic_bytes > 0, "{s:?}");
    // the latest namespace answers (a paraphrase: the semantic tier), and no more namespaces
    // than fit in the budget do
    let hit = cache
        .lookup(
            &in_model("m39", "France: what is the capital of"),
            &ctx,
            "g",
        )
        .await
        .expect("the latest namespace is held");
    assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Semantic);
    let mut held = 0;
    for i in 0..40 {
        let req = in_model(&format!("m{i}"), "France: what is the capital of");
        held += usize::from(cache.lookup(&req, &ctx, "g").await.is_some());
    }
    assert!(
        (1..=12).contains(&held),
        "{held} namespaces of about 21 KiB in 256 KiB"
    );
    // rows of one namespace
    for i in 0..30 {
        let req = in_model("one", &format!("question number {i} about the capital"));
        cache.store(&req, &ctx, "g", &answer(&big)).await;
    }
    assert!(cache.snapshot().semantic_bytes <= budget);
    // a row over the whole budget is not kept
    let huge = "y".repeat(300 << 10);
    let req = in_model("huge", "how tall is mount everest");
    cache.store(&req, &ctx, "g", &answer(&huge)).await;
    assert!(
        cache
            .lookup(&in_model("huge", "mount everest: how tall is"), &ctx, "g")
            .await
            .is_none()
    );
    assert!(cache.snapshot().semantic_bytes <= budget);
}

/// A verifier that never answers.
#[derive(Debug)]
struct Silent;

#[async_trait::async_trait]
impl infermux_cache::Verifier for Silent {
    async fn score(&self, _q: &str, _c: &str, _cosine: f32) -> infermux_core::Result<f32> {
        std::future::pending().await
    }
    fn threshold(&self) -> f32 {
        0.5
    }
}

/// A lookup ends within the caller's deadline though the verifier never answers (a miss,
/// counted as a reject). Before, only the embedder was bounded (by `embed_timeout`, off by
/// default), and the lookup waited on the verifier for ever.
#[tokio::test(start_paused = true)]
async fn a_verifier_that_never_answers_is_a_reject_at_the_callers_deadline() {
    let (cache, _) = semantic_cache(Arc::new(Silent));
    let ctx = RequestContext::new().with_timeout(std::time::Duration::from_millis(100));
    cache.store(&ask("a b c"), &ctx, "g", &answer("x")).await;
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        cache.lookup(&ask("c b a"), &ctx, "g"),
    )
    .await
    .expect("the lookup ends at the caller's deadline");
    assert!(found.is_none());
    assert_eq!(cache.snapshot().verifier_rejects, 1);
}

/// A lookup makes no namespace: a hundred one-off conversations (each its own namespace, by
/// their earlier turns) that only miss leave the tier empty, so its budget holds the
/// namespaces answers were stored in (each lookup made an empty cell before, weighing a share
/// of the budget and pushing real ones out). A store after them still lands and is found.
#[tokio::test]
async fn lookups_that_miss_leave_no_namespace_behind() {
    let (cache, _) = semantic_cache(Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    let conversation = |i: usize, last: &str| {
        Request::Chat(ChatRequest::new(
            "m",
            vec![
                Message::user(format!("earlier question number {i}")),
                Message::assistant("an earlier answer"),
                Message::user(last),
            ],
        ))
    };
    for i in 0..100 {
        assert!(
            cache
                .lookup(&conversation(i, "and what about tomorrow"), &ctx, "g")
                .await
                .is_none()
        );
    }
    let s = cache.snapshot();
    assert_eq!(s.semantic_misses, 100);
    assert_eq!(s.semantic_bytes, 0, "{s:?}");
    cache
        .store(
            &conversation(7, "and what about tomorrow"),
            &ctx,
            "g",
            &answer("rain"),
        )
        .await;
    let hit = cache
        .lookup(&conversation(7, "tomorrow: and what about"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(text_of(&hit), "rain");
    assert!(cache.snapshot().semantic_bytes > 0);
}

/// A last turn of nothing an embedder reads (a zero-width space, a control character, a byte
/// order mark) is skipped by the semantic tier, not sent to the embedder to fail as an
/// embedder error; the exact tier still answers it.
#[tokio::test]
async fn a_turn_of_invisible_characters_is_skipped_not_an_embedder_error() {
    let (cache, emb) = semantic_cache(Arc::new(CosineVerifier(0.8)));
    let ctx = RequestContext::new();
    for text in ["\u{200B}", "\u{1}\u{2}", " \u{FEFF} \u{200D} "] {
        assert!(
            cache.lookup(&ask(text), &ctx, "g").await.is_none(),
            "{text:?}"
        );
        cache.store(&ask(text), &ctx, "g", &answer("x")).await;
        assert!(
            cache.lookup(&ask(text), &ctx, "g").await.is_some(),
            "{text:?}"
        );
    }
    let s = cache.snapshot();
    assert_eq!(s.embed_errors, 0);
    assert!(s.semantic_skipped >= 3, "{s:?}");
    assert_eq!(
        emb.calls.load(Ordering::SeqCst),
        0,
        "the embedder was not asked"
    );
}
