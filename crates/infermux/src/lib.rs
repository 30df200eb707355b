//! infermux: one resilient async client for inference backends.
//!
//! The facade re-exports the core types and every provider crate behind a Cargo feature of the
//! same name (`full` enables them all), and offers [`Client`]: typed `chat`, `stream_chat`,
//! `embed`, `complete` and `models` calls over any [`Provider`] through the
//! [`resilience`] stack (priority admission queue, circuit breaker, retries with backoff and
//! Retry-After, a call deadline), with per-endpoint counters and request ids.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
//! # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
//! # let local = format!("{}/v1", sim.url()); // the docs' tests: the testkit's simulator
//! use infermux::openai_compat::OpenAiCompat;
//! use infermux::{ChatRequest, Client, EndpointConfig, Message};
//!
//! // a local OpenAI-compatible server (llama.cpp's: "http://127.0.0.1:8080/v1")
//! let provider = OpenAiCompat::new(EndpointConfig::new("local", local)?)?;
//! let client = Client::new(provider);
//! let answer = client.chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")])).await?;
//! println!("{}", answer.text());
//! println!("{:?}", client.counters());
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! One feature per provider crate, named like the crate without `infermux-`, each
//! re-exporting that crate as a module of the same name (the table of providers is generated
//! by `cargo xtask codegen` into `docs/providers.md`):
//!
//! - `openai-compat` (default): any OpenAI-compatible server (llama.cpp, LocalAI, LM Studio…).
//! - `openai`: OpenAI and Azure OpenAI (chat, Responses API, embeddings, media, files).
//! - `groq`: Groq.
//! - `vllm`: vLLM, with LoRA adapters and `/metrics`.
//! - `opea`: OPEA GenAIComps microservices.
//! - `anthropic`: Anthropic's Messages API.
//! - `ollama`: Ollama's native `/api` and its `/v1` mode.
//! - `gemini`: Google Gemini (`generateContent`, both streaming formats, embeddings).
//! - `hf-tgi`: Hugging Face Text Generation Inference and the HF Inference API.
//! - `hf-tei`: Hugging Face Text Embeddings Inference (embed, rerank, sparse).
//! - `ovms`: OpenVINO Model Server (TF-Serving, KServe v2 tensors, `/v3`).
//! - `llvm`: the LLVM inference REST protocol.
//! - `full`: every provider.
//!
//! And four that no provider needs (`full` leaves them out):
//!
//! - `hnsw` (default): the semantic cache's HNSW index past a few thousand entries (USearch,
//!   whose C++ core needs a C++17 compiler). Without it (`default-features = false`) the cache
//!   works the same, its semantic lookups by brute force, and nothing in the build is C++.
//! - `redis`: state several processes share in Redis: the pools' cooldowns, key removals and
//!   limits (`ClientBuilder::shared_state`) and the response cache's Redis store
//!   (`ClientBuilder::cache_redis`, `redis_url` in `[cache]`).
//! - `local-embed`: the semantic cache's local embedder, all-MiniLM-L6-v2 in process
//!   (`SemanticCache::local`, `embedder = "local"` in `[cache.semantic]`).
//! - `s3`: S3-compatible model storage: the `s3` module (the `infermux-s3` crate) and
//!   `Config::s3_kit`, which builds a kit from `[s3]` in `infermux.toml`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
pub mod config;
mod extras;
mod from_config;
mod ops;
#[cfg(any(
    feature = "openai",
    feature = "openai-compat",
    feature = "anthropic",
    feature = "gemini",
    feature = "ollama",
    feature = "vllm"
))]
mod ops_typed;
mod providers;
mod router;

pub use client::{
    Client, ClientBuilder, Deployment, ModelGroup, NamedKey, OpenedStream, SHARED_KEYS,
};
pub use extras::SemanticCache;
pub use infermux_multiplex::{MultiPool, PoolConfig, Strategy};
pub use infermux_resilience::Op;
pub use ops::{OpTarget, Ran};
// The application-facing types of core; test clocks, counter internals and the attempt's
// plumbing stay at `infermux::core::…`.
/// Reading a stream (`next()`, `map`, …) needs no extra crate import.
pub use futures_util::StreamExt;
/// The attribute an implementation of [`Provider`] (or of the cache's `Embedder`,
/// `Verifier`) is written with: `#[infermux::async_trait]`.
pub use infermux_core::async_trait;
pub use infermux_core::{
    ApiKey, BreakerState, CacheHit, CacheTier, Capabilities, ChatRequest, ChatResponse,
    CompletionRequest, CompletionResponse, ContentPart, CounterSnapshot, EmbeddingRequest,
    EmbeddingResponse, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, FallbackTaken,
    FinishReason, Idempotency, ImageSource, Limits, Message, ModelInfo, ModelList, Operation,
    Priority, Provider, RateLimitInfo, RateLimitWindow, RejectReason, Request, RequestContext,
    RequestId, RerankRequest, RerankResponse, RerankResult, Response, ResponseFormat, Result, Role,
    Served, Signer, StopReason, StreamAccumulator, StreamEvent, SystemText, Timeouts, Tool,
    ToolCall, ToolChoice, Usage, cosine_similarity, estimate_tokens, shown_var_name,
};
pub mod prelude;
// (nothing to re-export when no provider feature is on: a client of other crates' providers)
#[allow(unused_imports, unreachable_pub)]
pub use providers::*;

/// Client-side batching: concurrent embedding calls coalesced into provider batches.
pub use infermux_batching as batching;
/// The response cache: exact and semantic tiers, embedders, verifiers, stores.
pub use infermux_cache as cache;
/// The core crate, for paths such as `infermux::core::Provider`.
pub use infermux_core as core;
/// The HTTP transport providers are built on: `http::Auth` (a key in a header of the
/// server's choosing, as Azure's `api-key`) and `http::HttpEndpoint` for
/// `OpenAiCompat::with_auth` and `with_http`.
pub use infermux_http as http;
/// Pools of (endpoint, key) members: strategies, cooldowns, limits.
pub use infermux_multiplex as multiplex;
/// The resilience stack: admission queue, retry, circuit breaker, call deadline.
pub use infermux_resilience as resilience;
/// S3-compatible model storage (feature `s3`): the [`infermux_s3`] crate.
#[cfg(feature = "s3")]
pub use infermux_s3 as s3;

// docs/s3.md's example, compiled as a doctest.
#[cfg(all(doctest, feature = "s3"))]
#[doc = include_str!("../../../docs/s3.md")]
struct S3Guide;

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The repository's README (its examples use this facade), compiled as doctests. Only under
// `cfg(doctest)`: the packaged crate never reads a file outside its folder.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct RepositoryReadmeDoctests;
