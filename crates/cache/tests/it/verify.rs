//! The verifiers: Rust scores equal the Python research pipeline's on fixture pairs
//! (`verify_fixture.json`, written by `verify-research/train.py`), and that check can fail.

use infermux_cache::{ContextualModel, LexicalVerifier, TokenVectors, Verifier};
use infermux_core::ErrorKind;
use serde_json::Value;

const FIXTURE: &str = include_str!("verify_fixture.json");

fn pairs() -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(FIXTURE).expect("the fixture is JSON")
}

fn tokens(pair: &Value, side: &str) -> TokenVectors {
    let pieces = pair[format!("pieces_{side}")]
        .as_array()
        .expect("pieces")
        .iter()
        .map(|p| p.as_str().expect("a piece").to_owned())
        .collect();
    let vectors = pair[format!("vectors_{side}")]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            v.as_array()
                .expect("a vector")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect();
    TokenVectors::new(pieces, vectors).expect("valid token vectors")
}

/// Compares the Rust scores of every fixture pair with the Python ones; the first mismatch.
fn check(pairs: &[Value]) -> Result<(), String> {
    let lexical = LexicalVerifier::new();
    let contextual = ContextualModel::new();
    for p in pairs {
        let (a, b) = (p["a"].as_str().unwrap_or(""), p["b"].as_str().unwrap_or(""));
        let cos = p["cosine"].as_f64().unwrap_or(f64::NAN) as f32;
        let want = p["lexical_score"].as_f64().unwrap_or(f64::NAN);
        let got = lexical.score_pair(a, b, cos).map_err(|e| e.to_string())?;
        if (f64::from(got) - want).abs() > 1e-6 {
            return Err(format!("{}: lexical score {got}, Python {want}", p["id"]));
        }
        let want = p["contextual_score"].as_f64().unwrap_or(f64::NAN);
        let got = contextual
            .score_tokens(a, b, cos, &tokens(p, "a"), &tokens(p, "b"))
            .map_err(|e| e.to_string())?;
        if (f64::from(got) - want).abs() > 1e-6 {
            return Err(format!(
                "{}: contextual score {got}, Python {want}",
                p["id"]
            ));
        }
    }
    Ok(())
}

#[test]
fn rust_scores_equal_the_python_pipeline_on_the_fixture_pairs() {
    let pairs = pairs();
    assert!(pairs.len() >= 10, "a handful of pairs from each set");
    check(&pairs).unwrap();
}

#[test]
fn the_score_check_fails_on_a_changed_text_or_score() {
    let good = pairs();
    // a word swapped into another place changes the order signals
    let mut swapped = good.clone();
    let a = swapped[0]["a"].as_str().unwrap().to_owned();
    let mut words: Vec<&str> = a.split(' ').collect();
    words.reverse();
    swapped[0]["a"] = Value::from(words.join(" "));
    assert!(
        check(&swapped).is_err(),
        "a reordered text must change the score"
    );
    // an expected score off by 1e-3
    let mut off = good.clone();
    let s = off[1]["contextual_score"].as_f64().unwrap();
    off[1]["contextual_score"] = Value::from(s + 1e-3);
    assert!(check(&off).unwrap_err().contains("contextual"));
}

#[tokio::test]
async fn verifiers_accept_at_their_threshold_and_export_the_measured_false_hit_rate() {
    let v = LexicalVerifier::new();
    assert_eq!(v.threshold(), LexicalVerifier::default_threshold());
    let fhr = v.estimated_false_hit_rate().expect("measured");
    assert!((0.0..0.1).contains(&fhr), "{fhr}");
    let same = v
        .score("How do I learn Rust?", "How do I learn Rust?", 1.0)
        .await
        .unwrap();
    assert!(same >= v.threshold(), "{same}");
    let other = v
        .score("How do I learn Rust?", "Where is the Eiffel tower?", 0.1)
        .await
        .unwrap();
    assert!(other < v.threshold(), "{other}");
    let m = ContextualModel::new();
    assert!(m.estimated_false_hit_rate().is_some());
}

#[test]
fn bad_thresholds_cosines_and_token_vectors_are_typed_errors() {
    for t in [f32::NAN, -0.1, 1.5] {
        assert_eq!(
            LexicalVerifier::with_threshold(t).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            ContextualModel::with_threshold(t).unwrap_err().kind(),
            ErrorKind::Config
        );
    }
    let e = LexicalVerifier::new()
        .score_pair("a", "b", f32::NAN)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = TokenVectors::new(vec!["a".into()], vec![]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = TokenVectors::new(
        vec!["a".into(), "b".into()],
        vec![vec![1.0], vec![1.0, 2.0]],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    // empty texts score without panicking
    let t = TokenVectors::default();
    ContextualModel::new()
        .score_tokens("", "", 0.0, &t, &t)
        .unwrap();
}

/// The local model and the contextual verifier on it, or a visible skip without the model.
#[cfg(feature = "local-embed")]
fn local_verifier() -> Option<(
    infermux_cache::LocalEmbedder,
    infermux_cache::ContextualVerifier,
)> {
    use infermux_testkit::skip::{Need, skip};
    let Some(dir) = std::env::var_os("INFERMUX_MINILM_DIR").filter(|v| !v.is_empty()) else {
        skip(
            Need::Fixtures,
            "INFERMUX_MINILM_DIR is not set (the all-MiniLM-L6-v2 model folder)",
        );
        return None;
    };
    let embedder = infermux_cache::LocalEmbedder::open(&dir).unwrap();
    let v = infermux_cache::ContextualVerifier::new(embedder.clone());
    Some((embedder, v))
}

/// The cosine of the model's vectors of `a` and `b`.
#[cfg(feature = "local-embed")]
fn cosine(embedder: &infermux_cache::LocalEmbedder, a: &str, b: &str) -> f32 {
    let e = embedder.embed_batch(&[a, b]).unwrap();
    e[0].iter().zip(&e[1]).map(|(x, y)| x * y).sum::<f32>()
}

/// With the local model: the [`ContextualVerifier`](infermux_cache::ContextualVerifier) scores
/// what the pure model scores on the embedder's token vectors, and tells a swapped subject and
/// object from a paraphrase.
#[cfg(feature = "local-embed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextual_verifier_on_the_local_model_scores_as_the_pure_model_does() {
    let Some((embedder, v)) = local_verifier() else {
        return;
    };
    let cos = |a: &str, b: &str| cosine(&embedder, a, b);
    let tokens = |t: &str| {
        let (p, v) = embedder.token_embeddings(t).unwrap();
        TokenVectors::new(p, v).unwrap()
    };
    let (a, b) = (
        "How do I learn Python quickly?",
        "How can I learn Python quickly?",
    );
    let c = cos(a, b);
    let got = v.score(a, b, c).await.unwrap();
    let want = ContextualModel::new()
        .score_tokens(a, b, c, &tokens(a), &tokens(b))
        .unwrap();
    assert_eq!(got, want);
    assert!(got >= v.threshold(), "a paraphrase is accepted: {got}");
    let (a, b) = (
        "The company sold the subsidiary to the bank in 1998.",
        "The bank sold the subsidiary to the company in 1998.",
    );
    let swapped = v.score(a, b, cos(a, b)).await.unwrap();
    assert!(swapped < v.threshold(), "a swap is rejected: {swapped}");
    assert_eq!(
        v.estimated_false_hit_rate(),
        ContextualModel::new().estimated_false_hit_rate()
    );
}

/// Where the model cannot see a difference, the pair is refused whatever the trees say: two
/// texts whose word pieces are the same though their words differ (what told them apart
/// became `[UNK]`, or an accent the tokenizer strips), symbols under an `[UNK]` that differ,
/// and texts that fill the model's window (two long turns sharing their opening). The same
/// words in another case or spacing still pass.
#[cfg(feature = "local-embed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_model_cannot_see_is_refused() {
    let Some((embedder, v)) = local_verifier() else {
        return;
    };
    let cos = |a: &str, b: &str| cosine(&embedder, a, b);
    let opening = "数据库".repeat(100);
    let long_a = format!("{opening}我应该用哪个数据库");
    let long_b = format!("{opening}怎么删除数据并清空数据库");
    for (a, b) in [
        ("what does 🍕 mean", "what does 🍣 mean"),
        ("what is ２＋２", "what is ２＋３"),
        ("tôi muốn mua cá", "tôi muốn mua cà"),
        ("what does 🍕 mean", "what does 🍣 mean here"),
        (long_a.as_str(), long_b.as_str()),
    ] {
        let score = v.score(a, b, cos(a, b)).await.unwrap();
        assert_eq!(score, 0.0, "{a} / {b}");
    }
    let (a, b) = (
        "How do I learn Python quickly?",
        "how do i learn python quickly ?",
    );
    let same = v.score(a, b, cos(a, b)).await.unwrap();
    assert!(same >= v.threshold(), "case and spacing only: {same}");
    // the same words composed and decomposed (NFC and NFD) are the same words
    let (a, b) = (
        "where is the caf\u{e9} open",
        "where is the cafe\u{301} open",
    );
    let same = v.score(a, b, cos(a, b)).await.unwrap();
    assert!(same > 0.0, "NFC and NFD: {same}");
}
