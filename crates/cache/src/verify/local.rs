//! [`ContextualVerifier`]: [`ContextualModel`] on the local all-MiniLM-L6-v2 embedder (feature
//! `local-embed`): it gets the token vectors of both texts from the model and scores the pair.

use async_trait::async_trait;
use infermux_core::Result;

use super::{ContextualModel, TokenVectors, Verifier};
use crate::embed::local::LocalEmbedder;

fn tokens(embedder: &LocalEmbedder, text: &str) -> Result<TokenVectors> {
    let (pieces, vectors) = embedder.token_embeddings(text)?;
    TokenVectors::new(pieces, vectors)
}

/// The default verifier with the local embedder: the [`ContextualModel`] over the pair's
/// lexical signals, its cosine, and the contextual token vectors the local model gives both
/// texts. The token vectors are computed on tokio's blocking pool (inline outside a runtime).
/// Cheap to clone (the model is shared).
#[derive(Debug, Clone)]
pub struct ContextualVerifier {
    embedder: LocalEmbedder,
    model: ContextualModel,
}

impl ContextualVerifier {
    /// The verifier at the model's default threshold, on `embedder`.
    pub fn new(embedder: LocalEmbedder) -> Self {
        ContextualVerifier {
            embedder,
            model: ContextualModel::new(),
        }
    }

    /// The verifier accepting at `threshold`; an error unless it is in `[0, 1]`.
    pub fn with_threshold(embedder: LocalEmbedder, threshold: f32) -> Result<Self> {
        Ok(ContextualVerifier {
            embedder,
            model: ContextualModel::with_threshold(threshold)?,
        })
    }

    /// The model it runs.
    pub fn model(&self) -> &ContextualModel {
        &self.model
    }
}

#[async_trait]
impl Verifier for ContextualVerifier {
    async fn score(&self, query: &str, candidate: &str, cosine: f32) -> Result<f32> {
        let embedder = self.embedder.clone();
        let model = self.model.clone();
        let (q, c) = (query.to_owned(), candidate.to_owned());
        let work = move || {
            let tq = tokens(&embedder, &q)?;
            let tc = tokens(&embedder, &c)?;
            let window = embedder.max_seq_length().saturating_sub(2);
            if unseen_difference(&q, &c, &tq, &tc, window) {
                return Ok(0.0);
            }
            model.score_tokens(&q, &c, cosine, &tq, &tc)
        };
        crate::embed::local::off_runtime("verifier", work).await
    }
    fn threshold(&self) -> f32 {
        self.model.threshold()
    }
    fn estimated_false_hit_rate(&self) -> Option<f64> {
        self.model.estimated_false_hit_rate()
    }
}

/// Whether the two texts may differ where the model cannot see: then the pair is refused
/// (score 0), whatever the trees say, since every signal but the lexical ones reads the same
/// for both.
/// - Either text fills the model's window (`window` word pieces): it was read only in part,
///   and two turns that share their opening look alike (a turn's length in characters does
///   not bound its pieces: Chinese is about one a character).
/// - Both give the same word pieces, but their words differ beyond case and spacing: what
///   told them apart became `[UNK]` (🍕 and 🍣, ２＋２ and ２＋３) or was an accent the
///   tokenizer strips (Vietnamese "cá" and "cà").
/// - Either has an `[UNK]` piece and their symbols outside ASCII and letters differ.
fn unseen_difference(
    q: &str,
    c: &str,
    tq: &TokenVectors,
    tc: &TokenVectors,
    window: usize,
) -> bool {
    if tq.pieces().len() >= window || tc.pieces().len() >= window {
        return true;
    }
    if tq.pieces() == tc.pieces() {
        // (composed first: "café" typed and "café" pasted from a decomposing system are
        // the same words)
        let surface = |t: &str| -> String {
            nfc(t)
                .chars()
                .filter(|ch| !ch.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        return surface(q) != surface(c);
    }
    let unknown = |t: &TokenVectors| t.pieces().iter().any(|p| p == "[UNK]");
    if unknown(tq) || unknown(tc) {
        let symbols = |t: &str| -> Vec<char> {
            let mut v: Vec<char> = t
                .chars()
                .filter(|ch| !ch.is_ascii() && !ch.is_alphabetic())
                .collect();
            v.sort_unstable();
            v
        };
        return symbols(q) != symbols(c);
    }
    false
}

/// `t` in Unicode's composed form (NFC), by the tokenizer crate's own normalizer.
fn nfc(t: &str) -> String {
    use tokenizers::{NormalizedString, Normalizer};
    let mut n = NormalizedString::from(t);
    match tokenizers::normalizers::unicode::NFC.normalize(&mut n) {
        Ok(()) => n.get().to_owned(),
        Err(_) => t.to_owned(),
    }
}
