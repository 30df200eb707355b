//! infermux provider for Hugging Face [Text Embeddings Inference](https://github.com/huggingface/text-embeddings-inference)
//! (TEI), and for the HF Inference API's feature-extraction task.
//!
//! Three modes ([`Mode`]):
//! - [`Mode::Server`] (default), a TEI server: embeddings with `/embed` (`normalize` and
//!   `truncate` from [`HfTei::with_embed_options`], or per request in `extra`); inputs beyond
//!   the server's `max_client_batch_size` (read once from `/info`, or set with
//!   [`HfTei::with_max_client_batch_size`]) are split into several requests whose results are
//!   reassembled in order; rerank with `/rerank`; models from `/info`; and as inherent methods
//!   [`HfTei::embed_sparse`] (`/embed_sparse`), [`HfTei::info`] and [`HfTei::health`].
//! - [`Mode::OpenAi`]: embeddings through TEI's `/v1/embeddings`, spoken by
//!   [`infermux_openai_compat`]; rerank and models as in `Server`.
//! - [`Mode::InferenceApi`] ([`HfTei::inference_api`]): `POST {base}/pipeline/feature-extraction/{model}`
//!   on `https://router.huggingface.co/hf-inference`. Models without a pooling layer answer
//!   token vectors, which are mean-pooled. A 503 "model is loading" with `estimated_time`
//!   becomes an `Overloaded` error with that `retry_after`; [`HfTei::with_wait_for_model`]
//!   sends `x-wait-for-model: true` so the server waits instead.
//!
//! The key is sent as `Authorization: Bearer`; a local TEI server needs none. From the
//! environment ([`HfTei::from_env`]) it is `HF_TOKEN` (or `HF_API_KEY`) only for Hugging
//! Face's own hosts, and `TEI_API_KEY` (a server started with `--api-key`) for any other. [`cosine_similarity`] and [`cosine_similarities`] compare vectors on ndarray.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `hf-tei`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};
//! use infermux_hf_tei::{HfTei, cosine_similarity};
//! use ndarray::ArrayView1;
//!
//! let tei = HfTei::from_env()?; // TEI_URL (default http://127.0.0.1:8080), TEI_API_KEY when set
//! let req = Request::Embeddings(EmbeddingRequest::new("", ["cat", "kitten"]));
//! if let Response::Embeddings(e) = tei.call(&req, &RequestContext::new()).await? {
//!     let s = cosine_similarity(ArrayView1::from(&e.embeddings[0]), ArrayView1::from(&e.embeddings[1]));
//!     println!("similarity {s}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! - `unified`: `unified::launch` starts a TEI server (a process or a container, through
//!   `infermux-containers`), waits until it is ready and returns this crate's client with the
//!   server's supervisor.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod similarity;
#[cfg(feature = "unified")]
pub mod unified;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EmbeddingResponse, EndpointConfig, EndpointId, Error, ErrorKind, EventStream,
    ModelInfo, ModelList, Operation, Provider, Request, RequestContext, Response, Result,
};
use infermux_http::{Auth, HttpEndpoint, HttpRequest, HttpResponse};
use infermux_openai_compat::OpenAiCompat;
use serde_json::Value;

/// The `ndarray` whose arrays [`to_matrix`] and [`cosine_similarities`] take and return:
/// name its types through this path to get the same version.
pub use ndarray;
pub use similarity::{cosine_similarities, cosine_similarity, to_matrix};
pub use wire::{EmbedOptions, SparseValue, TeiInfo};

/// The provider name errors and counters carry.
pub const NAME: &str = "hf-tei";
/// The environment variable holding a TEI server's URL.
pub const BASE_URL_ENV: &str = "TEI_URL";
/// The default URL of a local TEI server.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";
/// The environment variables holding the Hugging Face token, in order of preference.
pub const API_KEY_ENVS: [&str; 2] = ["HF_TOKEN", "HF_API_KEY"];
/// The environment variable holding the key of a TEI server started with `--api-key`.
pub const SERVER_API_KEY_ENV: &str = "TEI_API_KEY";

/// The environment variables a client of the server at `base_url` reads its key from:
/// the Hugging Face token ([`API_KEY_ENVS`]) on Hugging Face's own hosts only, and
/// [`SERVER_API_KEY_ENV`] anywhere else, so an account token never goes to a server of
/// someone else's.
///
/// ```
/// use infermux_hf_tei::api_key_envs_for;
/// assert_eq!(api_key_envs_for("http://127.0.0.1:8080"), ["TEI_API_KEY"]);
/// assert_eq!(
///     api_key_envs_for("https://router.huggingface.co/hf-inference"),
///     ["HF_TOKEN", "HF_API_KEY"]
/// );
/// ```
pub fn api_key_envs_for(base_url: &str) -> &'static [&'static str] {
    if infermux_core::is_hugging_face_url(base_url) {
        &API_KEY_ENVS
    } else {
        &[SERVER_API_KEY_ENV]
    }
}
/// The HF Inference API's base URL.
pub const INFERENCE_API_URL: &str = "https://router.huggingface.co/hf-inference";
/// The batch size assumed when `/info` is not offered (TEI's default `max_client_batch_size`).
pub const DEFAULT_MAX_CLIENT_BATCH_SIZE: usize = 32;

/// Which API [`Provider`] calls use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// TEI's own routes.
    #[default]
    Server,
    /// TEI's OpenAI-compatible `/v1/embeddings`.
    OpenAi,
    /// The HF Inference API's feature-extraction task for this model.
    InferenceApi {
        /// The model (`sentence-transformers/all-MiniLM-L6-v2`).
        model: String,
    },
}

/// A client of one TEI server (or of the HF Inference API).
#[derive(Debug, Clone)]
pub struct HfTei {
    http: HttpEndpoint,
    openai: OpenAiCompat,
    mode: Mode,
    options: EmbedOptions,
    wait_for_model: bool,
    /// `max_client_batch_size`; 0 until known.
    batch: Arc<AtomicUsize>,
}

impl HfTei {
    /// A client of the TEI server at `config.base_url` (its root; a trailing `/v1` is removed).
    pub fn new(mut config: EndpointConfig) -> Result<Self> {
        let root = infermux_core::server_root(&config.base_url, &["/v1"]);
        config.base_url = root;
        // one connection pool for the native and the OpenAI-compatible (`/v1`) routes
        let http = HttpEndpoint::new(NAME, config, Auth::Bearer)?;
        let v1 = http.rebased(format!("{}/v1", http.config().base_url))?;
        let openai = OpenAiCompat::with_http(v1)
            .with_capabilities(Capabilities::new().with(Operation::Embeddings));
        Ok(HfTei {
            http,
            openai,
            mode: Mode::Server,
            options: EmbedOptions::default(),
            wait_for_model: false,
            batch: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A client from `TEI_URL` (default [`DEFAULT_BASE_URL`]) and the key variables
    /// [`api_key_envs_for`] names for it: `HF_TOKEN` / `HF_API_KEY` on Hugging Face's hosts,
    /// `TEI_API_KEY` anywhere else.
    pub fn from_env() -> Result<Self> {
        let config = EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?;
        let envs = api_key_envs_for(&config.base_url);
        Self::new(config.with_optional_api_key_from_env(envs))
    }

    /// A client of the HF Inference API's feature extraction for `model` at `config.base_url`
    /// (normally [`INFERENCE_API_URL`]).
    pub fn inference_api(config: EndpointConfig, model: impl Into<String>) -> Result<Self> {
        Ok(Self::new(config)?.with_mode(Mode::InferenceApi {
            model: model.into(),
        }))
    }

    /// [`HfTei::inference_api`] on [`INFERENCE_API_URL`] with `HF_TOKEN` / `HF_API_KEY`.
    pub fn inference_api_from_env(model: impl Into<String>) -> Result<Self> {
        let cfg = EndpointConfig::new(NAME, INFERENCE_API_URL)?
            .with_optional_api_key_from_env(&API_KEY_ENVS);
        Self::inference_api(cfg, model)
    }

    /// The same server in `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// `normalize` and `truncate` sent with every `/embed` (a request's `extra` overrides).
    pub fn with_embed_options(mut self, options: EmbedOptions) -> Self {
        self.options = options;
        self
    }

    /// Fixes `max_client_batch_size` instead of reading it from `/info`.
    pub fn with_max_client_batch_size(self, n: usize) -> Self {
        self.batch.store(n.max(1), Ordering::Relaxed);
        self
    }

    /// Sends `x-wait-for-model: true` (Inference API): the server holds the request while the
    /// model loads instead of answering 503.
    pub fn with_wait_for_model(mut self, yes: bool) -> Self {
        self.wait_for_model = yes;
        self
    }

    fn in_ctx(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    async fn send(&self, req: HttpRequest<'_>, ctx: &RequestContext) -> Result<HttpResponse> {
        let req = if self.wait_for_model {
            req.header("x-wait-for-model", "true")
        } else {
            req
        };
        req.send_mapped(ctx, wire::error_from_response).await
    }

    async fn post_json(
        &self,
        path: &str,
        body: &(impl serde::Serialize + Sync),
        ctx: &RequestContext,
    ) -> Result<Vec<u8>> {
        let resp = self.send(self.http.post(path).json(body), ctx).await?;
        Ok(resp.bytes().await?.to_vec())
    }

    /// `GET /health`: `Ok` when the server answers 2xx.
    pub async fn health(&self, ctx: &RequestContext) -> Result<()> {
        self.send(self.http.get("/health"), ctx)
            .await?
            .bytes()
            .await?;
        Ok(())
    }

    /// `GET /info`; also remembers `max_client_batch_size`.
    pub async fn info(&self, ctx: &RequestContext) -> Result<TeiInfo> {
        let body = self
            .send(self.http.get("/info"), ctx)
            .await?
            .bytes()
            .await?;
        let info = wire::parse_info(&body).map_err(self.in_ctx(ctx))?;
        self.batch
            .store(info.max_client_batch_size.max(1), Ordering::Relaxed);
        Ok(info)
    }

    /// `max_client_batch_size`, from `/info` the first time more than one input is sent
    /// ([`DEFAULT_MAX_CLIENT_BATCH_SIZE`] when the server has no `/info`).
    async fn batch_size(&self, inputs: usize, ctx: &RequestContext) -> Result<usize> {
        let known = self.batch.load(Ordering::Relaxed);
        if known > 0 || inputs <= 1 {
            return Ok(known.max(1));
        }
        match self.info(ctx).await {
            Ok(info) => Ok(info.max_client_batch_size.max(1)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.batch
                    .store(DEFAULT_MAX_CLIENT_BATCH_SIZE, Ordering::Relaxed);
                Ok(DEFAULT_MAX_CLIENT_BATCH_SIZE)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `inputs` with `send` in parts of `max_client_batch_size`, their results joined in
    /// order. A part refused because the server's limit is smaller than this client knew
    /// (`batch size 64 > maximum allowed batch size 16`: the server restarted with a smaller
    /// `--max-client-batch-size`, or a replica behind the same address has another) is sent
    /// again in parts of that size, which is remembered.
    async fn in_parts<'a, T, F, Fut>(
        &self,
        inputs: &'a [String],
        ctx: &RequestContext,
        mut send: F,
    ) -> Result<Vec<T>>
    where
        F: FnMut(&'a [String]) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let mut size = self.batch_size(inputs.len(), ctx).await?;
        let mut out = Vec::with_capacity(inputs.len());
        let mut rest = inputs;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            match send(&rest[..n]).await {
                Ok(part) => {
                    out.extend(part);
                    rest = &rest[n..];
                }
                Err(e) => match wire::announced_batch_limit(e.message()) {
                    // (smaller each time: this ends)
                    Some(limit) if limit < n => {
                        self.batch.store(limit, Ordering::Relaxed);
                        size = limit;
                    }
                    _ => return Err(e),
                },
            }
        }
        Ok(out)
    }

    /// `/embed` for `inputs`, split by `max_client_batch_size` and reassembled in order.
    pub async fn embed(
        &self,
        inputs: &[String],
        dimensions: Option<u32>,
        extra: &serde_json::Map<String, Value>,
        ctx: &RequestContext,
    ) -> Result<Vec<Vec<f32>>> {
        self.in_parts(inputs, ctx, |chunk| async move {
            let body = wire::EmbedBody::new(chunk, self.options, dimensions, extra);
            let bytes = self.post_json("/embed", &body, ctx).await?;
            wire::parse_embed(&bytes, chunk.len()).map_err(self.in_ctx(ctx))
        })
        .await
    }

    /// `/embed_sparse` (SPLADE models) for `inputs`, split like [`HfTei::embed`].
    pub async fn embed_sparse(
        &self,
        inputs: &[String],
        ctx: &RequestContext,
    ) -> Result<Vec<Vec<SparseValue>>> {
        let opts = EmbedOptions {
            normalize: None,
            truncate: self.options.truncate,
        };
        let no_extra = serde_json::Map::new();
        let no_extra = &no_extra;
        self.in_parts(inputs, ctx, |chunk| async move {
            let body = wire::EmbedBody::new(chunk, opts, None, no_extra);
            let bytes = self.post_json("/embed_sparse", &body, ctx).await?;
            wire::parse_embed_sparse(&bytes, chunk.len()).map_err(self.in_ctx(ctx))
        })
        .await
    }

    async fn feature_extraction(
        &self,
        model: &str,
        inputs: &[String],
        extra: &serde_json::Map<String, Value>,
        ctx: &RequestContext,
    ) -> Result<Vec<Vec<f32>>> {
        let body = wire::EmbedBody::new(inputs, self.options, None, extra);
        // (a Hub id, `org/name`: one `/` at most)
        let model = infermux_http::PathName::with_slashes(1)
            .check("model", model)
            .map_err(self.in_ctx(ctx))?;
        let path = format!("/pipeline/feature-extraction/{model}");
        let bytes = self.post_json(&path, &body, ctx).await?;
        wire::parse_feature_extraction(&bytes, inputs.len()).map_err(self.in_ctx(ctx))
    }
}

#[async_trait]
impl Provider for HfTei {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new().with(Operation::Embeddings);
        match self.mode {
            Mode::InferenceApi { .. } => caps,
            _ => caps.with(Operation::Rerank).with(Operation::Models),
        }
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.in_ctx(ctx);
        match (request, &self.mode) {
            (Request::Embeddings(req), _) if req.inputs.is_empty() => Err(ctx_err(Error::new(
                ErrorKind::InvalidRequest,
                "no input to embed",
            ))),
            (Request::Embeddings(req), Mode::OpenAi) => {
                // within the limit this client knows: the request as it is (no copy of its
                // inputs), unless the answer announces a smaller limit
                let size = self.batch_size(req.inputs.len(), ctx).await?;
                if req.inputs.len() <= size {
                    let answer = self.openai.call(request, ctx).await;
                    let smaller = answer.as_ref().err().and_then(|e| {
                        wire::announced_batch_limit(e.message())
                            .filter(|&limit| limit < req.inputs.len())
                    });
                    let Some(limit) = smaller else {
                        return answer.map_err(wire::refine_openai_error);
                    };
                    // (the parts below are of the limit the refusal announced)
                    self.batch.store(limit, Ordering::Relaxed);
                }
                // TEI answers 413 past `max_client_batch_size` on `/v1/embeddings` too
                let all =
                    std::sync::Mutex::new(EmbeddingResponse::new(req.model.clone(), Vec::new()));
                let vectors = self
                    .in_parts(&req.inputs, ctx, |chunk| {
                        let mut part = req.clone();
                        part.inputs = chunk.to_vec();
                        let all = &all;
                        async move {
                            let answer = self
                                .openai
                                .call(&Request::Embeddings(part), ctx)
                                .await
                                .map_err(wire::refine_openai_error)?;
                            let Response::Embeddings(e) = answer else {
                                return Err(Error::new(
                                    ErrorKind::Decode,
                                    "embeddings were answered with another operation",
                                ));
                            };
                            let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
                            all.model = e.model;
                            if let Some(u) = e.usage {
                                all.usage.get_or_insert_with(Default::default).add(&u);
                            }
                            Ok(e.embeddings)
                        }
                    })
                    .await
                    .map_err(&ctx_err)?;
                let mut all = all.into_inner().unwrap_or_else(|p| p.into_inner());
                all.embeddings = vectors;
                Ok(Response::Embeddings(all.same_dimension().map_err(ctx_err)?))
            }
            (Request::Embeddings(req), Mode::InferenceApi { model }) => {
                let v = self
                    .feature_extraction(model, &req.inputs, &req.extra, ctx)
                    .await?;
                Ok(Response::Embeddings(
                    EmbeddingResponse::new(model.clone(), v)
                        .same_dimension()
                        .map_err(ctx_err)?,
                ))
            }
            (Request::Embeddings(req), Mode::Server) => {
                let v = self
                    .embed(&req.inputs, req.dimensions, &req.extra, ctx)
                    .await?;
                Ok(Response::Embeddings(
                    EmbeddingResponse::new(req.model.clone(), v)
                        .same_dimension()
                        .map_err(ctx_err)?,
                ))
            }
            (Request::Rerank(req), _) if req.documents.is_empty() => Err(ctx_err(Error::new(
                ErrorKind::InvalidRequest,
                "no document to rerank",
            ))),
            (Request::Rerank(req), Mode::Server | Mode::OpenAi) => {
                // split by `max_client_batch_size` (TEI answers 413 past it); each document is
                // scored against the query alone, so the parts' scores rank together
                let size = self.batch_size(req.documents.len(), ctx).await?;
                let mut results = Vec::with_capacity(req.documents.len());
                for (n, chunk) in req.documents.chunks(size).enumerate() {
                    let body = wire::RerankBody::new(&req.query, chunk, self.options.truncate);
                    let bytes = self.post_json("/rerank", &body, ctx).await?;
                    let part = wire::parse_rerank(&bytes, chunk.len(), None).map_err(&ctx_err)?;
                    results.extend(part.into_iter().map(|mut r| {
                        r.index += n * size;
                        r
                    }));
                }
                results.sort_by(|a, b| b.score.total_cmp(&a.score));
                if let Some(n) = req.top_n {
                    results.truncate(n as usize);
                }
                Ok(Response::Rerank(infermux_core::RerankResponse::new(
                    req.model.clone(),
                    results,
                )))
            }
            (Request::Models, Mode::Server | Mode::OpenAi) => {
                let info = self.info(ctx).await?;
                let mut m = ModelInfo::new(info.model_id);
                m.owned_by = Some("tei".into());
                Ok(Response::Models(ModelList::new(vec![m])))
            }
            (other, _) => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("hf-tei does not offer {:?} in this mode", other.operation()),
            ))),
        }
    }

    async fn stream(&self, _request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        Err(self.in_ctx(ctx)(Error::new(
            ErrorKind::Unsupported,
            "hf-tei has nothing to stream",
        )))
    }
}
