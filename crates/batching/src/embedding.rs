//! [`EmbeddingBatcher`]: concurrent [`EmbeddingRequest`]s coalesced into provider batches, each
//! caller getting its own vectors back in order.

use std::future::Future;
use std::sync::Arc;

use infermux_core::{
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, RequestContext, Result, Served,
    estimate_tokens,
};
use serde_json::{Map, Value};

use crate::batcher::Batcher;
use crate::config::BatchConfig;
use crate::stats::BatchStats;

/// What must be equal for two inputs to share a request: the model and every parameter that
/// changes a vector (`dimensions`, the provider-specific `extra` fields, compared as canonical
/// JSON with sorted keys).
///
/// `Debug` (which the batch's tracing span shows) names the model and dimensions and only
/// counts the `extra` bytes: provider-specific fields are not for logs.
#[derive(Clone, PartialEq, Eq, Hash)]
struct EmbedKey {
    model: Arc<str>,
    dimensions: Option<u32>,
    /// `extra` as canonical JSON (`""` when empty).
    extra: Arc<str>,
}

impl std::fmt::Debug for EmbedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedKey")
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("extra_bytes", &self.extra.len())
            .finish()
    }
}

impl EmbedKey {
    fn of(req: &EmbeddingRequest) -> Self {
        let extra = if req.extra.is_empty() {
            String::new()
        } else {
            let mut out = String::new();
            canonical(&Value::Object(req.extra.clone()), &mut out);
            out
        };
        EmbedKey {
            model: Arc::from(req.model.as_str()),
            dimensions: req.dimensions,
            extra: Arc::from(extra),
        }
    }

    fn request(&self, inputs: Vec<String>) -> Result<EmbeddingRequest> {
        let mut req = EmbeddingRequest::new(&*self.model, inputs);
        req.dimensions = self.dimensions;
        if !self.extra.is_empty() {
            req.extra = serde_json::from_str::<Map<String, Value>>(&self.extra).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidRequest,
                    "extra fields could not be rebuilt",
                )
                .with_source(e)
            })?;
        }
        Ok(req)
    }
}

/// Writes `v` as JSON with every object's keys sorted, whatever order they were built in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Who answered a batch, shared by its items.
#[derive(Debug)]
struct BatchMeta {
    model: String,
    served: Option<Box<Served>>,
}

/// One input's vector and who answered its batch.
#[derive(Debug, Clone)]
struct Embedded {
    meta: Arc<BatchMeta>,
    vector: Vec<f32>,
}

/// Batches concurrent embedding requests: each input joins a batch of inputs with the same
/// model, `dimensions` and `extra` fields; a batch goes out as one [`EmbeddingRequest`] through
/// the flush closure (the facade passes one that calls its routed client, so the batch goes
/// through the pool, retries and breakers like any call); each caller gets its own vectors
/// back, in the order of its inputs.
///
/// Limits come from a [`BatchConfig`] preset for the provider behind the closure
/// ([`BatchConfig::openai_embeddings`], [`BatchConfig::tei`], [`BatchConfig::ollama_embed`],
/// [`BatchConfig::gemini_batch_embed`], [`BatchConfig::llama_cpp_embeddings`],
/// [`BatchConfig::llvm_batch_infer`]); tokens are estimated with
/// [`estimate_tokens`].
///
/// A caller's response has the model and [`Served`] of the batch that answered its first
/// input, and **no usage** (`usage: None`): a batch's usage covers other callers' inputs too
/// and the provider does not say which input cost what. The batch's usage is in the
/// `infermux.batch` tracing span's events.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux_core::Result<()> {
/// use infermux_batching::{BatchConfig, EmbeddingBatcher};
/// use infermux_core::{EmbeddingRequest, EmbeddingResponse, RequestContext};
///
/// // a stand-in for a provider: the vector of a text is [its length]
/// let batcher = EmbeddingBatcher::new(BatchConfig::openai_embeddings(), |req: EmbeddingRequest, _ctx| async move {
///     let vectors = req.inputs.iter().map(|s| vec![s.len() as f32]).collect();
///     Ok(EmbeddingResponse::new(req.model, vectors))
/// })?;
/// let ctx = RequestContext::new();
/// let (a, b) = tokio::join!(
///     batcher.embed(EmbeddingRequest::new("m", ["a", "bbb"]), &ctx),
///     batcher.embed(EmbeddingRequest::new("m", ["cc"]), &ctx),
/// );
/// assert_eq!(a?.embeddings, [vec![1.0], vec![3.0]]);
/// assert_eq!(b?.embeddings, [vec![2.0]]);
/// assert_eq!(batcher.stats().batches, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddingBatcher {
    inner: Batcher<EmbedKey, String, Embedded>,
    /// The flush closure, for a request that cannot be batched (inputs as token ids).
    direct: Direct,
}

/// A request sent as it is, unbatched.
type Direct = Arc<
    dyn Fn(
            EmbeddingRequest,
            RequestContext,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<EmbeddingResponse>> + Send>>
        + Send
        + Sync,
>;

impl std::fmt::Debug for EmbeddingBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingBatcher")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl EmbeddingBatcher {
    /// A batcher sending each batch as one [`EmbeddingRequest`] to `flush`, as `config` says.
    ///
    /// Errors: [`ErrorKind::Config`] outside a tokio runtime.
    pub fn new<F, Fut>(config: BatchConfig, flush: F) -> Result<Self>
    where
        F: Fn(EmbeddingRequest, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<EmbeddingResponse>> + Send + 'static,
    {
        let flush = Arc::new(flush);
        let direct: Direct = {
            let flush = Arc::clone(&flush);
            Arc::new(move |req, ctx| Box::pin(flush(req, ctx)))
        };
        let inner = Batcher::new(
            config,
            |s: &String| u64::from(estimate_tokens(s)),
            move |key: EmbedKey, inputs: Vec<String>, ctx: RequestContext| {
                let n = inputs.len();
                let flush = Arc::clone(&flush);
                // the provider's future is made inside the block, so the batch's task holds it
                // once (made outside, the block would hold it as a capture and again as the
                // future it awaits)
                async move {
                    let resp = flush(key.request(inputs)?, ctx).await?;
                    if let Some(u) = &resp.usage {
                        tracing::debug!(inputs = n, usage = ?u, "batch usage");
                    }
                    let meta = Arc::new(BatchMeta {
                        model: resp.model,
                        served: resp.served,
                    });
                    Ok(resp
                        .embeddings
                        .into_iter()
                        .map(|vector| Embedded {
                            meta: meta.clone(),
                            vector,
                        })
                        .collect::<Vec<_>>())
                }
            },
        )?;
        Ok(EmbeddingBatcher { inner, direct })
    }

    /// Embeds `req`'s inputs through the batches and answers its own vectors, in input order.
    ///
    /// Errors: [`ErrorKind::InvalidRequest`] for no input; [`ErrorKind::QueueFull`] at once
    /// when the queue is full; the error of a batch an input was in; [`ErrorKind::Decode`]
    /// when the provider answered a batch with another number of vectors than inputs.
    pub async fn embed(
        &self,
        req: EmbeddingRequest,
        ctx: &RequestContext,
    ) -> Result<EmbeddingResponse> {
        if req.inputs.is_empty() {
            return Err(Error::new(ErrorKind::InvalidRequest, "no input to embed")
                .with_request_id(ctx.request_id()));
        }
        // inputs as token ids (`extra.input`, the texts empty placeholders): neither split
        // nor deduplicated by their placeholders — sent as they are
        if req.extra.contains_key("input") {
            return (self.direct)(req, ctx.clone()).await;
        }
        let key = EmbedKey::of(&req);
        let items = self.inner.submit_many(key, req.inputs, ctx).await?;
        // a caller's inputs may have gone in several batches: answered by one group, the
        // answer says a fallback took part if one did (so a cache does not keep it as the
        // asked group's); answered by two groups (the one asked, and a fallback for one batch),
        // the vectors may be of two models' spaces and the call fails. Deployments of one
        // group may name their model differently: the group decides, not the model's name.
        let group = |e: &Embedded| e.meta.served.as_ref().map(|s| s.group.clone());
        if let Some(first) = items.first().map(group)
            && let Some(other) = items.iter().map(group).find(|g| *g != first)
        {
            return Err(Error::new(
                ErrorKind::Server,
                format!(
                    "the inputs went in several batches answered by two groups (`{}` and `{}`, \
                     a fallback for one of them): their vectors are not comparable",
                    first.as_deref().unwrap_or("-"),
                    other.as_deref().unwrap_or("-")
                ),
            )
            .with_request_id(ctx.request_id()));
        }
        let (model, served) = items.first().map_or_else(
            || (req.model.clone(), None),
            |first| {
                let with_fallback = items
                    .iter()
                    .find(|e| e.meta.served.as_ref().is_some_and(|s| s.fallback.is_some()));
                let e = with_fallback.unwrap_or(first);
                (e.meta.model.clone(), e.meta.served.clone())
            },
        );
        let mut resp = EmbeddingResponse::new(model, items.into_iter().map(|e| e.vector).collect());
        resp.served = served;
        Ok(resp)
    }

    /// The counters so far (one item per input).
    pub fn stats(&self) -> BatchStats {
        self.inner.stats()
    }

    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        self.inner.config()
    }
}
