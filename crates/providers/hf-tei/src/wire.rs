//! TEI's wire format: `/embed`, `/embed_sparse`, `/rerank` and `/info` bodies and the HF
//! Inference API feature-extraction answers (sentence vectors or token vectors).

use infermux_core::{Error, ErrorKind, RerankResult, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("invalid TEI {what}: {e}"))
}

/// Options of `/embed` that change the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EmbedOptions {
    /// L2-normalise the vectors (`normalize`; TEI's default is `true`). `None` leaves it to the
    /// server.
    pub normalize: Option<bool>,
    /// Truncate inputs longer than the model's limit instead of failing (`truncate`).
    pub truncate: Option<bool>,
}

impl EmbedOptions {
    /// Both left to the server.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `normalize`.
    pub fn with_normalize(mut self, yes: bool) -> Self {
        self.normalize = Some(yes);
        self
    }
    /// Sets `truncate`.
    pub fn with_truncate(mut self, yes: bool) -> Self {
        self.truncate = Some(yes);
        self
    }
}

/// The `/embed` (or `/embed_sparse`) body for `inputs`; `extra` keys are added as they are.
pub fn embed_body(
    inputs: &[String],
    opts: EmbedOptions,
    dimensions: Option<u32>,
    extra: &Map<String, Value>,
) -> Value {
    let mut body = Map::new();
    body.insert("inputs".into(), json!(inputs));
    if let Some(n) = opts.normalize {
        body.insert("normalize".into(), json!(n));
    }
    if let Some(t) = opts.truncate {
        body.insert("truncate".into(), json!(t));
    }
    if let Some(d) = dimensions {
        body.insert("dimensions".into(), json!(d));
    }
    for (k, v) in extra {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// The `/rerank` body.
pub fn rerank_body(query: &str, texts: &[String], truncate: Option<bool>) -> Value {
    let mut body =
        json!({"query": query, "texts": texts, "raw_scores": false, "return_text": false});
    if let Some(t) = truncate {
        body["truncate"] = json!(t);
    }
    body
}

/// Parses `/embed`: one vector per input.
pub fn parse_embed(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>> {
    let v: Vec<Vec<f32>> = serde_json::from_slice(body).map_err(|e| decode_err("embeddings", e))?;
    if v.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("TEI returned {} embeddings for {expected} inputs", v.len()),
        ));
    }
    Ok(v)
}

/// One non-zero entry of a sparse (SPLADE) embedding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SparseValue {
    /// Vocabulary index.
    pub index: u32,
    /// Weight.
    pub value: f32,
}

/// Parses `/embed_sparse`: one sparse vector per input.
pub fn parse_embed_sparse(body: &[u8], expected: usize) -> Result<Vec<Vec<SparseValue>>> {
    let v: Vec<Vec<SparseValue>> =
        serde_json::from_slice(body).map_err(|e| decode_err("sparse embeddings", e))?;
    if v.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "TEI returned {} sparse embeddings for {expected} inputs",
                v.len()
            ),
        ));
    }
    Ok(v)
}

/// Parses `/rerank` into results, best first, at most `top_n`.
pub fn parse_rerank(
    body: &[u8],
    documents: usize,
    top_n: Option<u32>,
) -> Result<Vec<RerankResult>> {
    #[derive(Deserialize)]
    struct Rank {
        index: usize,
        score: f32,
    }
    let mut ranks: Vec<Rank> = serde_json::from_slice(body).map_err(|e| decode_err("ranks", e))?;
    if let Some(bad) = ranks.iter().find(|r| r.index >= documents) {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("TEI ranked document {} of {documents}", bad.index),
        ));
    }
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let Some(n) = top_n {
        ranks.truncate(n as usize);
    }
    Ok(ranks
        .into_iter()
        .map(|r| RerankResult::new(r.index, r.score))
        .collect())
}

/// What `/info` says about the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TeiInfo {
    /// The model served.
    pub model_id: String,
    /// Its revision.
    #[serde(default)]
    pub model_sha: Option<String>,
    /// `float16`, `float32`, ...
    #[serde(default)]
    pub model_dtype: Option<String>,
    /// `{"embedding": {"pooling": "cls"}}`, `{"reranker": ...}`, `{"classifier": ...}`.
    #[serde(default)]
    pub model_type: Value,
    /// Inputs a client may send in one request.
    pub max_client_batch_size: usize,
    /// Longest input in tokens.
    #[serde(default)]
    pub max_input_length: Option<usize>,
    /// Tokens the server batches together.
    #[serde(default)]
    pub max_batch_tokens: Option<usize>,
    /// Concurrent requests the server accepts.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    /// Whether the server truncates long inputs by itself.
    #[serde(default)]
    pub auto_truncate: Option<bool>,
    /// Server version.
    #[serde(default)]
    pub version: Option<String>,
}

impl TeiInfo {
    /// Whether the model is a reranker.
    pub fn is_reranker(&self) -> bool {
        self.model_type.get("reranker").is_some()
    }
}

/// Parses `/info`.
pub fn parse_info(body: &[u8]) -> Result<TeiInfo> {
    serde_json::from_slice(body).map_err(|e| decode_err("info", e))
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.first().map_or(0, depth),
        _ => 0,
    }
}

fn floats(v: &Value) -> Result<Vec<f32>> {
    serde_json::from_value(v.clone()).map_err(|e| decode_err("feature-extraction vector", e))
}

/// The mean of token vectors (for models without a pooling layer).
fn mean_pool(tokens: &Value) -> Result<Vec<f32>> {
    let rows: Vec<Vec<f32>> =
        serde_json::from_value(tokens.clone()).map_err(|e| decode_err("token vectors", e))?;
    let Some(dim) = rows.first().map(Vec::len) else {
        return Err(Error::new(ErrorKind::Decode, "no token vectors"));
    };
    let mut out = vec![0f32; dim];
    for r in &rows {
        if r.len() != dim {
            return Err(Error::new(
                ErrorKind::Decode,
                "token vectors of unequal length",
            ));
        }
        for (o, x) in out.iter_mut().zip(r) {
            *o += x;
        }
    }
    let n = rows.len() as f32;
    out.iter_mut().for_each(|o| *o /= n);
    Ok(out)
}

/// Parses an HF Inference API feature-extraction answer for `expected` inputs: one vector
/// (`[f32]`), one per input (`[[f32]]`), or token vectors per input (`[[[f32]]]`, from models
/// without pooling), which are mean-pooled into one vector per input.
pub fn parse_feature_extraction(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("features", e))?;
    let arr = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let out = match depth(&v) {
        1 => vec![floats(&v)?],
        2 if arr.len() == expected => arr.iter().map(floats).collect::<Result<_>>()?,
        2 if expected == 1 => vec![mean_pool(&v)?],
        3 => arr.iter().map(mean_pool).collect::<Result<_>>()?,
        d => {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("unexpected feature-extraction answer of depth {d}"),
            ));
        }
    };
    if out.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("{} vectors for {expected} inputs", out.len()),
        ));
    }
    Ok(out)
}

/// The error of a non-2xx answer. TEI's errors need nothing of their own: this is
/// [`infermux_http::error_from_response`], which also maps the HF Inference API's 503 "model
/// is loading" (`Overloaded` with `estimated_time` as the retry-after).
pub use infermux_http::error_from_response;
