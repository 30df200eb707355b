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
