//! [`ContextualModel`]: the verifier model that also reads MiniLM's contextual per-word-piece
//! vectors, so that the same word in another role (a swapped subject and object) counts against
//! a match; [`TokenVectors`] carries those vectors.

use infermux_core::{Error, ErrorKind, Result};

use super::calibrated::{Fitted, check_cosine, check_threshold};
use super::features::{self, N_FEATURES, N_LEXICAL};

/// The word pieces of one text (without `[CLS]` and `[SEP]`) and their contextual vectors (the
/// model's last hidden state), one per piece.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenVectors {
    pieces: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

impl TokenVectors {
    /// Pairs `pieces` with `vectors`; an error unless there is one vector per piece, all of one
    /// dimension and finite.
    pub fn new(pieces: Vec<String>, vectors: Vec<Vec<f32>>) -> Result<Self> {
        if pieces.len() != vectors.len() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("{} word pieces but {} vectors", pieces.len(), vectors.len()),
            ));
        }
        if let Some(first) = vectors.first()
            && vectors
                .iter()
                .any(|v| v.len() != first.len() || v.iter().any(|x| !x.is_finite()))
        {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "token vectors of unequal dimension or not finite",
            ));
        }
        Ok(TokenVectors { pieces, vectors })
    }

    /// The word pieces.
    pub fn pieces(&self) -> &[String] {
        &self.pieces
    }

    /// The vectors, one per piece.
    pub fn vectors(&self) -> &[Vec<f32>] {
        &self.vectors
    }
}

/// The calibrated verifier model over the lexical signals of
/// [`LexicalVerifier`](super::LexicalVerifier) plus contextual token alignment (how well each
/// word piece of one text is matched in the other, whether shared pieces keep their contextual
/// vector, whether the alignment keeps the order). Pure: the caller supplies the token vectors
/// (see `ContextualVerifier` with feature `local-embed`, which gets them from the local
/// all-MiniLM-L6-v2).
#[derive(Debug, Clone)]
pub struct ContextualModel {
    fitted: Fitted,
    threshold: f32,
}

impl Default for ContextualModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ContextualModel {
    /// The model at its default threshold (chosen for precision ≥ 0.97 on Quora pairs).
    pub fn new() -> Self {
        let fitted = super::model::CONTEXTUAL;
        ContextualModel {
            threshold: fitted.threshold as f32,
            fitted,
        }
    }

    /// The model accepting at `threshold` instead; an error unless `threshold` is in `[0, 1]`.
    pub fn with_threshold(threshold: f32) -> Result<Self> {
        let mut m = Self::new();
        m.threshold = check_threshold(threshold)?;
        Ok(m)
    }

    /// The default threshold.
    pub fn default_threshold() -> f32 {
        super::model::CONTEXTUAL.threshold as f32
    }

    /// The score that `query` means the same as `candidate`, given their sentence cosine and
    /// their token vectors; an error when `cosine` is not a number.
    pub fn score_tokens(
        &self,
        query: &str,
        candidate: &str,
        cosine: f32,
        query_tokens: &TokenVectors,
        candidate_tokens: &TokenVectors,
    ) -> Result<f32> {
        let cos = check_cosine(cosine)?;
        let mut x = [0.0; N_FEATURES];
        x[..N_LEXICAL].copy_from_slice(&features::lexical(query, candidate, cos));
        x[N_LEXICAL..].copy_from_slice(&features::contextual(
            &query_tokens.pieces,
            &query_tokens.vectors,
            &candidate_tokens.pieces,
            &candidate_tokens.vectors,
        ));
        Ok(self.fitted.model.score(&x) as f32)
    }

    /// The threshold at or above which a candidate is accepted.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// 1 − the precision measured on held-out Quora pairs at [`threshold`](Self::threshold).
    pub fn estimated_false_hit_rate(&self) -> Option<f64> {
        self.fitted.false_hit_rate_at(self.threshold)
    }

    /// The fitted model's version name.
    pub fn model_name(&self) -> &'static str {
        self.fitted.name
    }
}
