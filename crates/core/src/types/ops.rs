//! Completions, embeddings, rerank and model listing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chat::FinishReason;
use super::usage::Usage;

/// A legacy text completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Output token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Provider-specific fields.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl CompletionRequest {
    /// A completion of `prompt` by `model`.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        CompletionRequest {
            model: model.into(),
            prompt: prompt.into(),
            max_tokens: None,
            temperature: None,
            stop: Vec::new(),
            seed: None,
            extra: Map::new(),
        }
    }
    /// Sets the output token limit.
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Sets the temperature.
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
}

/// A completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletionResponse {
    /// Provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Model.
    pub model: String,
    /// Generated text.
    pub text: String,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Who answered: set by the facade's client (routing, key, attempts, fallback); `None`
    /// from a provider called directly. Boxed, as `cache`: most answers have neither, and an
    /// answer is moved through every layer of a call (in place they made it 136 bytes larger).
    #[serde(skip)]
    pub served: Option<Box<crate::route::Served>>,
    /// Set when the answer came from the cache; `None` when a provider answered.
    #[serde(skip)]
    pub cache: Option<Box<crate::route::CacheHit>>,
}

impl CompletionResponse {
    /// A completion.
    pub fn new(model: impl Into<String>, text: impl Into<String>) -> Self {
        CompletionResponse {
            id: None,
            model: model.into(),
            text: text.into(),
            finish_reason: None,
            usage: None,
            served: None,
            cache: None,
        }
    }
}

/// An embeddings request.
///
/// ```
/// use infermux_core::EmbeddingRequest;
/// let req = EmbeddingRequest::new("all-minilm", ["hello", "world"]);
/// assert_eq!(req.inputs.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingRequest {
    /// Model.
    pub model: String,
    /// Texts to embed.
    pub inputs: Vec<String>,
    /// Requested dimensions, when the model supports shortening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Provider-specific fields.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl EmbeddingRequest {
    /// Embeds `inputs` with `model`.
    pub fn new<S: Into<String>>(
        model: impl Into<String>,
        inputs: impl IntoIterator<Item = S>,
    ) -> Self {
        EmbeddingRequest {
            model: model.into(),
            inputs: inputs.into_iter().map(Into::into).collect(),
            dimensions: None,
            extra: Map::new(),
        }
    }
}

/// Embeddings, one per input, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingResponse {
    /// Model.
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Who answered: set by the facade's client (routing, key, attempts, fallback); `None`
    /// from a provider called directly. Boxed, as `cache`: most answers have neither, and an
    /// answer is moved through every layer of a call (in place they made it 136 bytes larger).
    #[serde(skip)]
    pub served: Option<Box<crate::route::Served>>,
    /// Set when the answer came from the cache; `None` when a provider answered.
    #[serde(skip)]
    pub cache: Option<Box<crate::route::CacheHit>>,
}

impl EmbeddingResponse {
    /// Embeddings.
    pub fn new(model: impl Into<String>, embeddings: Vec<Vec<f32>>) -> Self {
        EmbeddingResponse {
            model: model.into(),
            embeddings,
            usage: None,
            served: None,
            cache: None,
        }
    }
    /// The dimension of the vectors (0 when empty).
    pub fn dimension(&self) -> usize {
        self.embeddings.first().map_or(0, Vec::len)
    }

    /// The answer, when its vectors are all of one length; else a
    /// [`Decode`](crate::ErrorKind::Decode) error (a proxy that cut one vector short would
    /// hand it to its caller as a vector of another space).
    ///
    /// ```
    /// use infermux_core::{EmbeddingResponse, ErrorKind};
    /// let ok = EmbeddingResponse::new("m", vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
    /// assert!(ok.same_dimension().is_ok());
    /// let cut = EmbeddingResponse::new("m", vec![vec![0.1, 0.2], vec![0.3]]);
    /// assert_eq!(cut.same_dimension().unwrap_err().kind(), ErrorKind::Decode);
    /// ```
    pub fn same_dimension(self) -> crate::Result<Self> {
        let d = self.dimension();
        match self.embeddings.iter().position(|v| v.len() != d) {
            None => Ok(self),
            Some(i) => Err(crate::Error::new(
                crate::ErrorKind::Decode,
                format!(
                    "the vectors of one answer differ in length: {d} for input 0, {} for input {i}",
                    self.embeddings[i].len()
                ),
            )),
        }
    }
}

/// A rerank request: score `documents` against `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RerankRequest {
    /// Model.
    pub model: String,
    /// Query.
    pub query: String,
    /// Candidate documents.
    pub documents: Vec<String>,
    /// Keep the best `top_n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u32>,
}

impl RerankRequest {
    /// A rerank request.
    pub fn new(model: impl Into<String>, query: impl Into<String>, documents: Vec<String>) -> Self {
        RerankRequest {
            model: model.into(),
            query: query.into(),
            documents,
            top_n: None,
        }
    }
}

/// One scored document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RerankResult {
    /// Index into the request's documents.
    pub index: usize,
    /// Relevance score (higher is better).
    pub score: f32,
}

impl RerankResult {
    /// Document `index` scored `score`.
    pub fn new(index: usize, score: f32) -> Self {
        RerankResult { index, score }
    }
}

/// Scored documents, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RerankResponse {
    /// Model.
    pub model: String,
    /// Results, best first.
    pub results: Vec<RerankResult>,
    /// Who answered: set by the facade's client (routing, key, attempts, fallback); `None`
    /// from a provider called directly. Boxed, as `cache`: most answers have neither, and an
    /// answer is moved through every layer of a call (in place they made it 136 bytes larger).
    #[serde(skip)]
    pub served: Option<Box<crate::route::Served>>,
    /// Set when the answer came from the cache; `None` when a provider answered.
    #[serde(skip)]
    pub cache: Option<Box<crate::route::CacheHit>>,
}

impl RerankResponse {
    /// Results of `model`, best first.
    pub fn new(model: impl Into<String>, results: Vec<RerankResult>) -> Self {
        RerankResponse {
            model: model.into(),
            results,
            served: None,
            cache: None,
        }
    }
}

/// One model a provider offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The id to put in requests.
    pub id: String,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Creation time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// The base model of an adapter (vLLM LoRA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl ModelInfo {
    /// A model.
    pub fn new(id: impl Into<String>) -> Self {
        ModelInfo {
            id: id.into(),
            owned_by: None,
            created: None,
            parent: None,
        }
    }
}

/// The models a provider offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct ModelList {
    /// Models.
    pub models: Vec<ModelInfo>,
}

impl ModelList {
    /// A list.
    pub fn new(models: Vec<ModelInfo>) -> Self {
        ModelList { models }
    }
}
