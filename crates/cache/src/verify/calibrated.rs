//! [`LexicalVerifier`]: boosted trees over the sentence cosine and cheap order-aware lexical
//! signals, fitted on the fit split of the visible labelled pairs (see
//! `crates/cache/verify-research/`), with its parameters generated into `model.rs`.

use async_trait::async_trait;
use infermux_core::{Error, ErrorKind, Result};

use super::Verifier;
use super::features::{self, N_FEATURES, N_LEXICAL};

/// One node of a regression tree: a leaf when `feature` is negative.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// Index into the model's `columns`, or −1 for a leaf.
    pub feature: i16,
    /// A value `<=` it goes `left`.
    pub threshold: f64,
    pub left: u16,
    pub right: u16,
    /// The leaf's contribution to the log-odds.
    pub value: f64,
}

/// Boosted regression trees (LightGBM's, flattened): `σ(Σ leaf values)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trees {
    /// Which signals (indexes into lexical-then-contextual) the trees read.
    pub columns: &'static [usize],
    pub trees: &'static [&'static [Node]],
}

/// A fitted scoring model (the research scripts can also fit a logistic regression; boosted
/// trees won on the fit split, so they are all this crate runs).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Model {
    Trees(Trees),
}

impl Model {
    /// The probability that the pair means the same, from all its signals.
    pub(crate) fn score(&self, x: &[f64; N_FEATURES]) -> f64 {
        let z: f64 = match self {
            Model::Trees(m) => m
                .trees
                .iter()
                .map(|tree| {
                    let mut i = 0usize;
                    loop {
                        let n = &tree[i];
                        if n.feature < 0 {
                            break n.value;
                        }
                        let v = x[m.columns[n.feature as usize]];
                        i = usize::from(if v <= n.threshold { n.left } else { n.right });
                    }
                })
                .sum(),
        };
        1.0 / (1.0 + (-z).exp())
    }
}

/// A fitted model with the threshold chosen on the fit split and its measured false-hit rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fitted {
    /// A stable name for the model version.
    pub name: &'static str,
    pub model: Model,
    /// The default threshold: the lowest with precision ≥ 0.97 on the Quora fit split (out of
    /// fold).
    pub threshold: f64,
    /// 1 − precision at `threshold` on the Quora validation split.
    pub false_hit_rate: f64,
    /// Precision on the Quora validation split at thresholds 0, 0.01, …, 1 (NaN where nothing
    /// is accepted).
    pub precision_table: &'static [f64],
}

impl Fitted {
    /// The estimated false-hit rate at `threshold`: the measured one at the default, else from
    /// the table at the nearest tabulated threshold at or below.
    pub(crate) fn false_hit_rate_at(&self, threshold: f32) -> Option<f64> {
        if (f64::from(threshold) - self.threshold).abs() < 1e-6 {
            return Some(self.false_hit_rate);
        }
        let i = ((f64::from(threshold) * 100.0).floor().max(0.0) as usize)
            .min(self.precision_table.len().checked_sub(1)?);
        let p = self.precision_table[i];
        p.is_finite().then_some(1.0 - p)
    }
}

pub(crate) fn check_threshold(threshold: f32) -> Result<f32> {
    if threshold.is_finite() && (0.0..=1.0).contains(&threshold) {
        Ok(threshold)
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!("a verifier threshold must be within [0, 1], got {threshold}"),
        ))
    }
}

pub(crate) fn check_cosine(cosine: f32) -> Result<f64> {
    if cosine.is_finite() {
        Ok(f64::from(cosine))
    } else {
        Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("the cosine given to the verifier is not a number: {cosine}"),
        ))
    }
}

/// Verifies a semantic-cache candidate from the two texts and their sentence cosine alone: a
/// small boosted-trees model (150 trees of 8 leaves) over the cosine, word and bigram overlap, the order of the shared
/// words (longest common subsequence, concordance), and mismatches of numbers, negations and
/// capitalised names. Works with any [`Embedder`](crate::Embedder).
///
/// Its default [`threshold`](Verifier::threshold) was chosen for precision ≥ 0.97 on Quora
/// question pairs; its [`estimated_false_hit_rate`](Verifier::estimated_false_hit_rate) is
/// 1 − the precision measured at that threshold on held-out pairs. Both are measured with
/// all-MiniLM-L6-v2 cosines: with another embedder the figures do not carry over.
#[derive(Debug, Clone)]
pub struct LexicalVerifier {
    fitted: Fitted,
    threshold: f32,
}

impl Default for LexicalVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl LexicalVerifier {
    /// The verifier at its default threshold.
    pub fn new() -> Self {
        let fitted = super::model::LEXICAL;
        LexicalVerifier {
            threshold: fitted.threshold as f32,
            fitted,
        }
    }

    /// The verifier accepting at `threshold` instead; an error unless `threshold` is in `[0, 1]`.
    pub fn with_threshold(threshold: f32) -> Result<Self> {
        let mut v = Self::new();
        v.threshold = check_threshold(threshold)?;
        Ok(v)
    }

    /// The default threshold (the one [`new`](Self::new) uses).
    pub fn default_threshold() -> f32 {
        super::model::LEXICAL.threshold as f32
    }

    /// The score of a pair, synchronously (what [`Verifier::score`] returns); an error when
    /// `cosine` is not a number.
    pub fn score_pair(&self, query: &str, candidate: &str, cosine: f32) -> Result<f32> {
        let cos = check_cosine(cosine)?;
        let mut x = [0.0; N_FEATURES];
        x[..N_LEXICAL].copy_from_slice(&features::lexical(query, candidate, cos));
        Ok(self.fitted.model.score(&x) as f32)
    }

    /// The fitted model's version name.
    pub fn model_name(&self) -> &'static str {
        self.fitted.name
    }
}

#[async_trait]
impl Verifier for LexicalVerifier {
    async fn score(&self, query: &str, candidate: &str, cosine: f32) -> Result<f32> {
        self.score_pair(query, candidate, cosine)
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }
    fn estimated_false_hit_rate(&self) -> Option<f64> {
        self.fitted.false_hit_rate_at(self.threshold)
    }
}
