//! [`Embedder`]: texts to vectors, for the semantic cache.

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "local-embed")]
pub mod local;
#[cfg(feature = "local-embed")]
pub use local::LocalEmbedder;

use async_trait::async_trait;
use infermux_core::{
    EmbeddingRequest, Error, ErrorKind, Provider, Request, RequestContext, Response, Result,
};

/// Turns texts into vectors: one vector per text, in order, all of one dimension.
///
/// The semantic cache compares only vectors of one [`model_id`](Embedder::model_id), so two
/// embedders never share an index.
#[async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// A stable name of the model and its settings (part of the semantic namespace).
    fn model_id(&self) -> &str;
    /// Embeds `texts`, one vector per text, in order.
    async fn embed(&self, texts: &[String], ctx: &RequestContext) -> Result<Vec<Vec<f32>>>;
}

/// Any [`Provider`] with embeddings (OpenAI, TEI, Ollama, Gemini, llama.cpp, …) as an
/// [`Embedder`].
#[derive(Clone)]
pub struct ProviderEmbedder {
    provider: Arc<dyn Provider>,
    model: String,
    id: String,
}

impl fmt::Debug for ProviderEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEmbedder")
            .field("endpoint", self.provider.endpoint())
            .field("model", &self.model)
            .finish()
    }
}

impl ProviderEmbedder {
    /// Embeds with `model` on `provider`.
    pub fn new(provider: Arc<dyn Provider>, model: impl Into<String>) -> Self {
        let model = model.into();
        let id = format!("{}:{}", provider.name(), model);
        ProviderEmbedder {
            provider,
            model,
            id,
        }
    }
}

#[async_trait]
impl Embedder for ProviderEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    async fn embed(&self, texts: &[String], ctx: &RequestContext) -> Result<Vec<Vec<f32>>> {
        let req = Request::Embeddings(EmbeddingRequest::new(
            self.model.clone(),
            texts.iter().cloned(),
        ));
        match self.provider.call(&req, ctx).await? {
            Response::Embeddings(r) if r.embeddings.len() == texts.len() => Ok(r.embeddings),
            Response::Embeddings(r) => Err(Error::new(
                ErrorKind::Decode,
                format!("{} vectors for {} texts", r.embeddings.len(), texts.len()),
            )),
            other => Err(Error::new(
                ErrorKind::Decode,
                format!("expected embeddings, got {:?}", other.operation()),
            )),
        }
    }
}
