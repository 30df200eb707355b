//! TEI's wire format: `/embed`, `/embed_sparse`, `/rerank` and `/info` bodies (serialised from
//! the borrowed inputs, no `serde_json::Value` tree) and answers (read into typed structs), and
//! the HF Inference API feature-extraction answers (sentence vectors or token vectors).
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

use infermux_core::{Error, ErrorKind, RerankResult, Result};
use infermux_http::HeaderMap;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

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

/// The `/embed` (or `/embed_sparse`, or a feature-extraction) body of `inputs`, serialised
/// straight from them (what [`embed_body`] returns as a `Value`): `inputs`, `normalize`,
/// `truncate` and `dimensions`, with `extra`'s keys added as they are (winning over a field of
/// the same name).
///
/// ```
/// use infermux_hf_tei::wire::{EmbedBody, EmbedOptions};
///
/// let inputs = ["hello".to_owned()];
/// let extra = serde_json::Map::new();
/// let body = EmbedBody::new(&inputs, EmbedOptions::new().with_truncate(true), None, &extra);
/// assert_eq!(
///     serde_json::to_string(&body).unwrap(),
///     r#"{"inputs":["hello"],"truncate":true}"#
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EmbedBody<'a> {
    inputs: &'a [String],
    opts: EmbedOptions,
    dimensions: Option<u32>,
    extra: &'a Map<String, Value>,
}

impl<'a> EmbedBody<'a> {
    /// The body of `inputs` with `opts`, `dimensions` and `extra`.
    pub fn new(
        inputs: &'a [String],
        opts: EmbedOptions,
        dimensions: Option<u32>,
        extra: &'a Map<String, Value>,
    ) -> Self {
        EmbedBody {
            inputs,
            opts,
            dimensions,
            extra,
        }
    }
}

impl Serialize for EmbedBody<'_> {
    // keys in ascending order, merged with `extra`'s, as the `Value` object (a `BTreeMap`)
    // this body used to be built as printed them
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let mut pending = self.extra.iter().peekable();
        let fields: [(&str, Option<Field<'_>>); 4] = [
            ("dimensions", self.dimensions.map(Field::U32)),
            ("inputs", Some(Field::Strs(self.inputs))),
            ("normalize", self.opts.normalize.map(Field::Bool)),
            ("truncate", self.opts.truncate.map(Field::Bool)),
        ];
        for (key, value) in fields {
            let Some(value) = value else { continue };
            while let Some((k, v)) = pending.next_if(|(k, _)| k.as_str() < key) {
                map.serialize_entry(k, v)?;
            }
            if !self.extra.contains_key(key) {
                map.serialize_entry(key, &value)?;
            }
        }
        for (k, v) in pending {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A field of [`EmbedBody`].
#[derive(Serialize)]
#[serde(untagged)]
enum Field<'a> {
    U32(u32),
    Bool(bool),
    Strs(&'a [String]),
}

/// The `/embed` (or `/embed_sparse`) body for `inputs`; `extra` keys are added as they are.
pub fn embed_body(
    inputs: &[String],
    opts: EmbedOptions,
    dimensions: Option<u32>,
    extra: &Map<String, Value>,
) -> Value {
    serde_json::to_value(EmbedBody::new(inputs, opts, dimensions, extra)).unwrap_or(Value::Null)
}

/// The `/rerank` body, serialised straight from the query and texts (what [`rerank_body`]
/// returns as a `Value`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RerankBody<'a> {
    query: &'a str,
    raw_scores: bool,
    return_text: bool,
    texts: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
}

impl<'a> RerankBody<'a> {
    /// The body ranking `texts` against `query`.
    pub fn new(query: &'a str, texts: &'a [String], truncate: Option<bool>) -> Self {
        RerankBody {
            query,
            raw_scores: false,
            return_text: false,
            texts,
            truncate,
        }
    }
}

/// The `/rerank` body.
pub fn rerank_body(query: &str, texts: &[String], truncate: Option<bool>) -> Value {
    serde_json::to_value(RerankBody::new(query, texts, truncate)).unwrap_or(Value::Null)
}

/// Parses `/embed`: one vector per input.
pub fn parse_embed(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>> {
    let v: Vec<Vec<f32>> =
        infermux_http::json::from_body(body).map_err(|e| decode_err("embeddings", e))?;
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
        infermux_http::json::from_body(body).map_err(|e| decode_err("sparse embeddings", e))?;
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

/// Parses `/rerank` into results, best first, at most `top_n`; a document ranked that does
/// not exist, or ranked twice, is a `Decode` error.
///
/// ```
/// use infermux_hf_tei::wire::parse_rerank;
/// let r = parse_rerank(br#"[{"index":1,"score":0.9},{"index":0,"score":0.2}]"#, 2, None).unwrap();
/// assert_eq!((r[0].index, r[1].index), (1, 0));
/// assert!(parse_rerank(br#"[{"index":2,"score":0.9}]"#, 2, None).is_err());
/// assert!(parse_rerank(br#"[{"index":0,"score":0.9},{"index":0,"score":0.8}]"#, 2, None).is_err());
/// ```
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
    let mut ranks: Vec<Rank> =
        infermux_http::json::from_body(body).map_err(|e| decode_err("ranks", e))?;
    // each document of the request, once: a repeated index would show one document twice
    // and hide another
    let mut seen = vec![false; documents];
    for r in &ranks {
        match seen.get_mut(r.index) {
            None => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("TEI ranked document {} of {documents}", r.index),
                ));
            }
            Some(true) => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("TEI ranked document {} twice", r.index),
                ));
            }
            Some(once) => *once = true,
        }
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
    infermux_http::json::from_body(body).map_err(|e| decode_err("info", e))
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
    // the usual answers, one sentence vector per input, read straight into vectors; anything
    // else through a `Value`, as it always was
    if let Ok(vectors) = serde_json::from_slice::<Vec<Vec<f32>>>(body)
        && !vectors.is_empty()
        && vectors.len() == expected
    {
        return Ok(vectors);
    }
    if let Ok(vector) = infermux_http::json::from_body::<Vec<f32>>(body)
        && !vector.is_empty()
        && expected == 1
    {
        return Ok(vec![vector]);
    }
    let v: Value = infermux_http::json::from_body(body).map_err(|e| decode_err("features", e))?;
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

/// The error of a non-2xx answer: [`infermux_http::error_from_response`] (which also maps the
/// HF Inference API's 503 "model is loading" to `Overloaded` with `estimated_time` as the
/// retry-after), except for TEI's own statuses (its OpenAPI spec):
/// - 429 `overloaded` ("Model is overloaded", the server's queue is full) is `Overloaded`,
///   not a key's `RateLimited`;
/// - 413 `validation` saying an input "must have less than N tokens" is `ContextLength`
///   (other 413s, a batch too large, stay `InvalidRequest`);
/// - 424 `backend` ("Inference failed") is `Server`, a failure a retry may not meet again,
///   unless it says the model is of another kind ("not an embedding model"): `Unsupported`.
pub fn error_from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let base = infermux_http::error_from_response(status, headers, body);
    let Some(kind) = tei_kind(status, base.message()) else {
        return base;
    };
    let mut e = Error::new(kind, base.message().to_owned())
        .with_status(status)
        .with_reached_server(true);
    if let Some(after) = base.retry_after() {
        e = e.with_retry_after(after);
    }
    e
}

/// An error of TEI's OpenAI-compatible routes (`/v1/embeddings`), mapped by the OpenAI rules,
/// given the kind [`error_from_response`] gives TEI's own statuses.
pub fn refine_openai_error(e: Error) -> Error {
    match e.status().and_then(|s| tei_kind(s, e.message())) {
        Some(kind) => e.with_kind(kind),
        None => e,
    }
}

/// The limit a refusal of a batch announces: TEI's `batch size 64 > maximum allowed batch
/// size 16` (413 on `/embed`, 422 in some versions and on `/rerank`).
///
/// ```
/// use infermux_hf_tei::wire::announced_batch_limit;
/// assert_eq!(announced_batch_limit("batch size 64 > maximum allowed batch size 16"), Some(16));
/// assert_eq!(announced_batch_limit("`inputs` must have less than 512 tokens"), None);
/// ```
pub fn announced_batch_limit(message: &str) -> Option<usize> {
    let (_, after) = message.split_once("maximum allowed batch size ")?;
    let digits: &str = &after[..after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len())];
    digits.parse().ok().filter(|&n| n >= 1)
}

/// The kind TEI's spec gives `status` with `message`, where it differs from the generic one.
fn tei_kind(status: u16, message: &str) -> Option<ErrorKind> {
    let lower = message.to_ascii_lowercase();
    Some(match status {
        429 if lower.contains("overloaded") => ErrorKind::Overloaded,
        413 if lower.contains("must have less than") => ErrorKind::ContextLength,
        424 if lower.contains("is not a ") || lower.contains("is not an ") => {
            ErrorKind::Unsupported
        }
        424 => ErrorKind::Server,
        _ => return None,
    })
}
