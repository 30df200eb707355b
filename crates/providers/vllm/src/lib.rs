//! infermux provider for [vLLM](https://docs.vllm.ai)'s OpenAI-compatible server.
//!
//! A thin crate over [`infermux_openai_compat`] (chat, streaming, tools, completions,
//! embeddings, models) that adds vLLM's own routes: LoRA adapters listed from `/v1/models`
//! (an adapter has a `parent`), loaded and unloaded at run time with `/v1/load_lora_adapter`
//! and `/v1/unload_lora_adapter`; `/metrics` in Prometheus text parsed into a typed
//! [`MetricsSnapshot`] / [`VllmMetrics`]; and `/health`. The base URL is the server's root
//! (`http://127.0.0.1:8000`, a trailing `/v1` is accepted); the key is optional.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `vllm`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//! use infermux_vllm::Vllm;
//!
//! let vllm = Vllm::from_env()?; // VLLM_API_URL, and VLLM_API_KEY when set
//! let ctx = RequestContext::new();
//! vllm.health(&ctx).await?;
//! let req = Request::Chat(ChatRequest::new("meta-llama/Llama-3.1-8B-Instruct", vec![Message::user("Hi!")]));
//! if let Response::Chat(answer) = vllm.call(&req, &ctx).await? {
//!     println!("{}", answer.text());
//! }
//! println!("{:?}", vllm.metrics(&ctx).await?.vllm());
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! - `unified`: `unified::launch` starts a vLLM server (a process or a container, through
//!   `infermux-containers`), waits until it is ready and returns this crate's client with the
//!   server's supervisor.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod metrics;
#[cfg(feature = "unified")]
pub mod unified;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, ModelInfo, Provider,
    Request, RequestContext, Response, Result,
};
use infermux_http::{Auth, HttpEndpoint};
use infermux_openai_compat::{OpenAiCompat, wire};

pub use metrics::{MetricsSnapshot, Sample, VllmMetrics};

/// The provider name errors and counters carry.
pub const NAME: &str = "vllm";
/// The environment variable holding the server's URL.
pub const BASE_URL_ENV: &str = "VLLM_API_URL";
/// The environment variable holding the (optional) key.
pub const API_KEY_ENV: &str = "VLLM_API_KEY";
/// The default URL of a local vLLM server.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8000";

/// A client of one vLLM server.
#[derive(Debug, Clone)]
pub struct Vllm {
    inner: OpenAiCompat,
    root: HttpEndpoint,
}

impl Vllm {
    /// A client for the server at `config.base_url` (its root; a trailing `/v1` is removed).
    pub fn new(mut config: EndpointConfig) -> Result<Self> {
        let root = infermux_core::server_root(&config.base_url, &["/v1"]);
        config.base_url = root;
        // one connection pool for `/v1` and the server's own routes (`/health`, `/metrics`)
        let root = HttpEndpoint::new(NAME, config, Auth::Bearer)?;
        let inner =
            OpenAiCompat::with_http(root.rebased(format!("{}/v1", root.config().base_url))?);
        Ok(Vllm { inner, root })
    }

    /// A client from `VLLM_API_URL` (default [`DEFAULT_BASE_URL`]) and, when set,
    /// `VLLM_API_KEY`.
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?
                .with_optional_api_key_from_env(&[API_KEY_ENV]),
        )
    }

    fn in_ctx(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.root.error_context(ctx)
    }

    /// `GET /health`: `Ok` when the server answers 2xx.
    pub async fn health(&self, ctx: &RequestContext) -> Result<()> {
        self.root.get("/health").send(ctx).await?.bytes().await?;
        Ok(())
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self, ctx: &RequestContext) -> Result<MetricsSnapshot> {
        let body = self.root.get("/metrics").send(ctx).await?.bytes().await?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| Error::new(ErrorKind::Decode, format!("metrics are not UTF-8: {e}")))
            .map_err(self.in_ctx(ctx))?;
        MetricsSnapshot::parse(text).map_err(self.in_ctx(ctx))
    }

    /// The LoRA adapters the server offers: the models of `/v1/models` that have a `parent`.
    pub async fn lora_adapters(&self, ctx: &RequestContext) -> Result<Vec<ModelInfo>> {
        let body = self.root.get("/v1/models").send(ctx).await?.bytes().await?;
        let list = wire::parse_models(&body).map_err(self.in_ctx(ctx))?;
        Ok(list
            .models
            .into_iter()
            .filter(|m| m.parent.is_some())
            .collect())
    }

    /// `POST /v1/load_lora_adapter`: serves the adapter at `path` (on the server) as model
    /// `name`. Needs a server started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`.
    pub async fn load_lora_adapter(
        &self,
        name: &str,
        path: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.root
            .post("/v1/load_lora_adapter")
            .json(&LoraAdapter {
                lora_name: name,
                lora_path: Some(path),
            })
            .send(ctx)
            .await?
            .bytes()
            .await?;
        Ok(())
    }

    /// `POST /v1/unload_lora_adapter`: stops serving adapter `name`.
    pub async fn unload_lora_adapter(&self, name: &str, ctx: &RequestContext) -> Result<()> {
        self.root
            .post("/v1/unload_lora_adapter")
            .json(&LoraAdapter {
                lora_name: name,
                lora_path: None,
            })
            .send(ctx)
            .await?
            .bytes()
            .await?;
        Ok(())
    }
}

/// The body of `/v1/load_lora_adapter` (with the path) and `/v1/unload_lora_adapter`.
#[derive(serde::Serialize)]
struct LoraAdapter<'a> {
    lora_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lora_path: Option<&'a str>,
}

#[async_trait]
impl Provider for Vllm {
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
        self.inner.call(request, ctx).await
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        self.inner.stream(request, ctx).await
    }
}
