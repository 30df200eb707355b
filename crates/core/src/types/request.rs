//! [`Request`] and [`Response`]: one enum each over every operation, so every layer is written
//! once.

use serde::{Deserialize, Serialize};

use super::chat::{ChatRequest, ChatResponse};
use super::ops::{
    CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse, ModelList,
    RerankRequest, RerankResponse,
};
use super::usage::Usage;
use crate::provider::Operation;

/// A request for one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "request", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Chat.
    Chat(ChatRequest),
    /// Legacy completion.
    Completion(CompletionRequest),
    /// Embeddings.
    Embeddings(EmbeddingRequest),
    /// Rerank.
    Rerank(RerankRequest),
    /// List models.
    Models,
}

impl Request {
    /// The operation.
    pub fn operation(&self) -> Operation {
        match self {
            Request::Chat(_) => Operation::Chat,
            Request::Completion(_) => Operation::Completion,
            Request::Embeddings(_) => Operation::Embeddings,
            Request::Rerank(_) => Operation::Rerank,
            Request::Models => Operation::Models,
        }
    }
    /// The model named, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Request::Chat(r) => Some(&r.model),
            Request::Completion(r) => Some(&r.model),
            Request::Embeddings(r) => Some(&r.model),
            Request::Rerank(r) => Some(&r.model),
            Request::Models => None,
        }
    }
    /// The same request for another model (a deployment's own model id); a model list has no
    /// model and is returned unchanged.
    pub fn with_model(&self, model: &str) -> Request {
        let mut r = self.clone();
        match &mut r {
            Request::Chat(r) => model.clone_into(&mut r.model),
            Request::Completion(r) => model.clone_into(&mut r.model),
            Request::Embeddings(r) => model.clone_into(&mut r.model),
            Request::Rerank(r) => model.clone_into(&mut r.model),
            Request::Models => {}
        }
        r
    }
    /// A rough upper estimate of the tokens the request uses (input by
    /// [`estimate_tokens`](crate::estimate_tokens) plus its output limit, or `default_output`
    /// when it sets none): what a tokens-per-minute limit reserves before the call.
    pub fn estimate_tokens(&self, default_output: u32) -> u64 {
        let text = |s: &str| u64::from(crate::estimate_tokens(s));
        match self {
            Request::Chat(r) => {
                let input: u64 = r.messages.iter().map(|m| text(&m.text()) + 4).sum::<u64>();
                input + u64::from(r.max_tokens.unwrap_or(default_output))
            }
            Request::Completion(r) => {
                text(&r.prompt) + u64::from(r.max_tokens.unwrap_or(default_output))
            }
            Request::Embeddings(r) => r.inputs.iter().map(|s| text(s)).sum(),
            Request::Rerank(r) => text(&r.query) + r.documents.iter().map(|s| text(s)).sum::<u64>(),
            Request::Models => 0,
        }
    }
}

/// The response to a [`Request`], same variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "response", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// Chat.
    Chat(ChatResponse),
    /// Legacy completion.
    Completion(CompletionResponse),
    /// Embeddings.
    Embeddings(EmbeddingResponse),
    /// Rerank.
    Rerank(RerankResponse),
    /// Models.
    Models(ModelList),
}

impl Response {
    /// The operation.
    pub fn operation(&self) -> Operation {
        match self {
            Response::Chat(_) => Operation::Chat,
            Response::Completion(_) => Operation::Completion,
            Response::Embeddings(_) => Operation::Embeddings,
            Response::Rerank(_) => Operation::Rerank,
            Response::Models(_) => Operation::Models,
        }
    }
    /// Token usage, when reported.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            Response::Chat(r) => r.usage.as_ref(),
            Response::Completion(r) => r.usage.as_ref(),
            Response::Embeddings(r) => r.usage.as_ref(),
            Response::Rerank(_) | Response::Models(_) => None,
        }
    }
    /// Who answered, when the facade's client set it.
    pub fn served(&self) -> Option<&crate::route::Served> {
        match self {
            Response::Chat(r) => r.served.as_deref(),
            Response::Completion(r) => r.served.as_deref(),
            Response::Embeddings(r) => r.served.as_deref(),
            Response::Rerank(r) => r.served.as_deref(),
            Response::Models(_) => None,
        }
    }
    /// Set when the answer came from the cache.
    pub fn cache_hit(&self) -> Option<&crate::route::CacheHit> {
        match self {
            Response::Chat(r) => r.cache.as_deref(),
            Response::Completion(r) => r.cache.as_deref(),
            Response::Embeddings(r) => r.cache.as_deref(),
            Response::Rerank(r) => r.cache.as_deref(),
            Response::Models(_) => None,
        }
    }
    /// Marks the answer as served from the cache (a model list ignores it).
    pub fn set_cache_hit(&mut self, hit: crate::route::CacheHit) {
        match self {
            Response::Chat(r) => r.cache = Some(Box::new(hit)),
            Response::Completion(r) => r.cache = Some(Box::new(hit)),
            Response::Embeddings(r) => r.cache = Some(Box::new(hit)),
            Response::Rerank(r) => r.cache = Some(Box::new(hit)),
            Response::Models(_) => {}
        }
    }
    /// Forgets who answered (a stored answer served again from a cache was served by it).
    pub fn clear_served(&mut self) {
        match self {
            Response::Chat(r) => r.served = None,
            Response::Completion(r) => r.served = None,
            Response::Embeddings(r) => r.served = None,
            Response::Rerank(r) => r.served = None,
            Response::Models(_) => {}
        }
    }
    /// Sets who answered (a model list has no field for it and ignores it).
    pub fn set_served(&mut self, served: crate::route::Served) {
        let served = Some(Box::new(served));
        match self {
            Response::Chat(r) => r.served = served,
            Response::Completion(r) => r.served = served,
            Response::Embeddings(r) => r.served = served,
            Response::Rerank(r) => r.served = served,
            Response::Models(_) => {}
        }
    }
}
