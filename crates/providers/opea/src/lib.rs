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
//! Tools: OPEA's chat gateway takes `tool_choice` `"none"` (its default) or a named tool only.
//! A chat with tools must name the tool to call (`ToolChoice::Tool`); without it, or with
//! `auto` / `required`, the call is refused as `Unsupported` before anything is sent
//! ([`check_tool_choice`]), instead of the tools going unused.
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
use infermux_openai_compat::json::lenient::{self, List, Object};
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

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
        let bytes = self
            .inner
            .http()
            .post("/reranking")
            .json(&RerankBody::new(req))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        parse_rerank(&bytes, req)
            .map_err(|e| e.in_context(ctx.request_id(), NAME, self.inner.endpoint()))
    }
}

/// OPEA's chat gateway takes `tool_choice` `"none"` (its default) or a named tool only: tools
/// sent without naming one are silently not called, and `"auto"` or `"required"` is refused.
/// So a chat with tools must name the tool ([`ToolChoice::Tool`](infermux_core::ToolChoice));
/// otherwise this is `Unsupported`, before anything is sent.
pub fn check_tool_choice(request: &Request) -> Result<()> {
    use infermux_core::ToolChoice;
    let Request::Chat(chat) = request else {
        return Ok(());
    };
    if chat.tools.is_empty() {
        return Ok(());
    }
    match &chat.tool_choice {
        Some(ToolChoice::Tool(_) | ToolChoice::None) => Ok(()),
        _ => Err(Error::new(
            ErrorKind::Unsupported,
            "OPEA's chat gateway calls a tool only when the request names it (tool_choice \
             \"none\" or a named tool; not \"auto\" or \"required\"): set ToolChoice::Tool",
        )),
    }
}

/// The JSON body of a reranking request ([`RerankBody`] as a `Value`).
pub fn rerank_body(req: &RerankRequest) -> Value {
    serde_json::to_value(RerankBody::new(req)).unwrap_or(Value::Null)
}

/// The body of a reranking request, borrowed from the request and serialised straight to
/// JSON: `initial_query`, `retrieved_docs` (`[{"text": …}]`) and `top_n` (every document
/// unless the request says).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RerankBody<'a> {
    initial_query: &'a str,
    retrieved_docs: Docs<'a>,
    top_n: u32,
}

impl<'a> RerankBody<'a> {
    /// The body of `req`.
    pub fn new(req: &'a RerankRequest) -> Self {
        RerankBody {
            initial_query: &req.query,
            retrieved_docs: Docs(&req.documents),
            top_n: req
                .top_n
                .unwrap_or(u32::try_from(req.documents.len()).unwrap_or(u32::MAX)),
        }
    }
}

/// Documents as `[{"text": …}]`.
#[derive(Debug, Clone, Copy)]
struct Docs<'a>(&'a [String]);

#[derive(Serialize)]
struct Doc<'a> {
    text: &'a str,
}

impl Serialize for Docs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|text| Doc { text }))
    }
}

/// A reranking answer as read: `reranked_docs` or `documents`, each absent unless a list.
#[derive(Debug, Default)]
struct Answer<'a> {
    reranked_docs: List<Object<Scored<'a>>>,
    documents: List<Document<'a>>,
}

lenient::fields!(Answer<'de> {
    "reranked_docs" => reranked_docs,
    "documents" => documents,
});

/// `{"text", "score"}` of `reranked_docs`.
#[derive(Debug, Default)]
struct Scored<'a> {
    text: lenient::Str<'a>,
    score: lenient::F64,
}

lenient::fields!(Scored<'de> {
    "text" => text,
    "score" => score,
});

/// An entry of `documents`: its text, or `{"text": …}`'s (empty for anything else).
#[derive(Debug, Default)]
struct Document<'a>(Option<std::borrow::Cow<'a, str>>);

impl<'de> Deserialize<'de> for Document<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Document<'de>, E> {
                Ok(Document(Some(s.into())))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Document<'de>, E> {
                Ok(Document(Some(s.to_owned().into())))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Document<'de>, A::Error> {
                let text: Scored<'de> = lenient::read_fields(map)?;
                Ok(Document(text.text.0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Document<'de>, A::Error> {
                List::<lenient::Skip>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Document(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Document<'de>, E> {
                Ok(Document(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Document<'de>, E> {
                Ok(Document(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Document<'de>, E> {
                Ok(Document(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Document<'de>, E> {
                Ok(Document(None))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Document<'de>, E> {
                Ok(Document(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a reranking answer (either shape, see the crate docs) against the request's
/// documents.
pub fn parse_rerank(body: &[u8], req: &RerankRequest) -> Result<RerankResponse> {
    let v: Object<Answer<'_>> = infermux_http::json::from_body(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("reranking answer is not valid JSON: {e}"),
        )
    })?;
    let v = v.into_inner();
    let ranked: Vec<(std::borrow::Cow<'_, str>, Option<f64>)> =
        if let Some(docs) = v.reranked_docs.0 {
            docs.into_iter()
                .map(|d| {
                    let d = d.into_inner();
                    (d.text.0.unwrap_or_default(), d.score.0)
                })
                .collect()
        } else if let Some(docs) = v.documents.0 {
            docs.into_iter()
                .map(|d| (d.0.unwrap_or_default(), None))
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
        check_tool_choice(request)
            .map_err(|e| e.in_context(ctx.request_id(), NAME, self.inner.endpoint()))?;
        match request {
            Request::Rerank(req) => self.rerank(req, ctx).await.map(Response::Rerank),
            other => self.inner.call(other, ctx).await,
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        check_tool_choice(request)
            .map_err(|e| e.in_context(ctx.request_id(), NAME, self.inner.endpoint()))?;
        self.inner.stream(request, ctx).await
    }
}
