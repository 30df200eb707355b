//! infermux provider for [OPEA](https://opea.dev) GenAIComps microservices.
//!
//! A thin crate over [`infermux_openai_compat`]: the LLM text-generation microservice speaks
//! OpenAI chat completions (`/v1/chat/completions`), the embedding microservice OpenAI
//! embeddings (`/v1/embeddings`); this crate adds the reranking microservice
//! (`POST /v1/reranking` with `initial_query`, `retrieved_docs` and `top_n`) as
//! [`Request::Rerank`], and `GET /v1/health_check`. Each microservice listens on its own port,
//! so one [`Opea`] talks to one of them; its base URL includes `/v1`. The key is optional
//! (Bearer).
//!
//! The reranking answer comes in two shapes, both read: `reranked_docs: [{text, score}]`
//! (scores as given), or the older `documents: [text, …]` best first, which carries no scores —
//! then each result's score is derived from its rank (`1 / (rank + 1)`), so the order is kept
//! but the values are not model scores.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `opea`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{EndpointConfig, Provider, Request, RequestContext, RerankRequest, Response};
//! use infermux_opea::Opea;
//!
//! let reranker = Opea::new(EndpointConfig::new("rerank", "http://127.0.0.1:8000/v1")?)?;
//! let req = RerankRequest::new("bge", "What is deep learning?", vec![
//!     "Deep learning is not...".into(),
//!     "Deep learning is...".into(),
//! ]);
//! if let Response::Rerank(r) = reranker.call(&Request::Rerank(req), &RequestContext::new()).await? {
//!     println!("best: document {}", r.results[0].index);
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, Operation, Provider,
    Request, RequestContext, RerankRequest, RerankResponse, RerankResult, Response, Result,
};
use infermux_http::Auth;
use infermux_openai_compat::OpenAiCompat;
use serde_json::{Value, json};

/// The provider name errors and counters carry.
pub const NAME: &str = "opea";
/// The environment variable holding the microservice's base URL (including `/v1`).
pub const BASE_URL_ENV: &str = "OPEA_API_URL";
/// The environment variable holding the (optional) key.
pub const API_KEY_ENV: &str = "OPEA_API_KEY";

/// A client of one OPEA microservice.
#[derive(Debug, Clone)]
pub struct Opea {
    inner: OpenAiCompat,
}

impl Opea {
    /// A client for the microservice at `config.base_url` (including `/v1`).
    pub fn new(config: EndpointConfig) -> Result<Self> {
        let caps = Capabilities::new()
            .with(Operation::Chat)
            .with(Operation::ChatStream)
            .with(Operation::Tools)
            .with(Operation::Vision)
            .with(Operation::Embeddings)
            .with(Operation::Rerank);
        Ok(Opea {
            inner: OpenAiCompat::with_auth(NAME, config, Auth::Bearer)?.with_capabilities(caps),
        })
    }

    /// A client from `OPEA_API_URL` (required) and, when set, `OPEA_API_KEY`.
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, None)?
                .with_optional_api_key_from_env(&[API_KEY_ENV]),
        )
    }

    /// `GET /health_check`: `Ok` when the microservice answers 2xx.
    pub async fn health(&self, ctx: &RequestContext) -> Result<()> {
        self.inner
            .http()
            .get("/health_check")
            .send(ctx)
            .await?
            .bytes()
            .await?;
        Ok(())
    }

    async fn rerank(&self, req: &RerankRequest, ctx: &RequestContext) -> Result<RerankResponse> {
        let body = rerank_body(req);
        let bytes = self
            .inner
            .http()
            .post("/reranking")
            .json(&body)
            .send(ctx)
            .await?
            .bytes()
            .await?;
        parse_rerank(&bytes, req)
            .map_err(|e| e.in_context(ctx.request_id(), NAME, self.inner.endpoint()))
    }
}

/// The JSON body of a reranking request.
pub fn rerank_body(req: &RerankRequest) -> Value {
    json!({
        "initial_query": req.query,
        "retrieved_docs": req.documents.iter().map(|d| json!({"text": d})).collect::<Vec<_>>(),
        "top_n": req.top_n.unwrap_or(u32::try_from(req.documents.len()).unwrap_or(u32::MAX)),
    })
}

/// Parses a reranking answer (either shape, see the crate docs) against the request's
/// documents.
pub fn parse_rerank(body: &[u8], req: &RerankRequest) -> Result<RerankResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("reranking answer is not valid JSON: {e}"),
        )
    })?;
    let ranked: Vec<(String, Option<f64>)> =
        if let Some(docs) = v.get("reranked_docs").and_then(Value::as_array) {
            docs.iter()
                .map(|d| {
                    (
                        d.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        d.get("score").and_then(Value::as_f64),
                    )
                })
                .collect()
        } else if let Some(docs) = v.get("documents").and_then(Value::as_array) {
            docs.iter()
                .map(|d| {
                    let text = match d {
                        Value::String(s) => s.clone(),
                        other => other
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    };
                    (text, None)
                })
                .collect()
        } else {
            return Err(Error::new(
                ErrorKind::Decode,
                "reranking answer has neither `reranked_docs` nor `documents`",
            ));
        };
    let mut used = vec![false; req.documents.len()];
    let mut results = Vec::with_capacity(ranked.len());
    for (rank, (text, score)) in ranked.into_iter().enumerate() {
        let index = req
            .documents
            .iter()
            .enumerate()
            .position(|(i, d)| *d == text && !used.get(i).copied().unwrap_or(true))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "reranking answer holds a document that was not sent",
                )
            })?;
        if let Some(u) = used.get_mut(index) {
            *u = true;
        }
        let score = score.unwrap_or(1.0 / (rank as f64 + 1.0)) as f32;
        results.push(RerankResult::new(index, score));
    }
    Ok(RerankResponse::new(req.model.clone(), results))
}

#[async_trait]
impl Provider for Opea {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.inner.endpoint()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        match request {
            Request::Rerank(req) => self.rerank(req, ctx).await.map(Response::Rerank),
            other => self.inner.call(other, ctx).await,
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        self.inner.stream(request, ctx).await
    }
}
