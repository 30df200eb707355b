//! The providers' own operations on [`Client`], each through [`Client::run_op`] or
//! [`Client::run_op_each`]: speech, transcription and file upload (endpoints of the `openai`
//! and `openai-compat` providers only), token counting (Anthropic, Gemini), model pulls
//! (Ollama), LoRA adapters (vLLM).

use infermux_core::{Idempotency, RequestContext, Result};
use infermux_resilience::Op;

use crate::client::Client;

#[cfg(all(feature = "openai", not(feature = "openai-compat")))]
use infermux_openai::media;
#[cfg(feature = "openai-compat")]
use infermux_openai_compat::media;

/// The media routes of an OpenAI or OpenAI-compatible provider.
#[cfg(any(feature = "openai", feature = "openai-compat"))]
fn media_of<'a>(p: &'a (dyn infermux_core::Provider + 'static)) -> Option<media::MediaClient<'a>> {
    #[cfg(feature = "openai-compat")]
    if let Some(c) = p.downcast_ref::<infermux_openai_compat::OpenAiCompat>() {
        return Some(c.media());
    }
    #[cfg(feature = "openai")]
    if let Some(o) = p.downcast_ref::<infermux_openai::OpenAi>() {
        return Some(o.media());
    }
    None
}

/// A provider that counts a prompt's tokens.
#[cfg(any(feature = "anthropic", feature = "gemini"))]
#[derive(Clone, Copy)]
enum Counter<'a> {
    #[cfg(feature = "anthropic")]
    Anthropic(&'a infermux_anthropic::Anthropic),
    #[cfg(feature = "gemini")]
    Gemini(&'a infermux_gemini::Gemini),
}

#[cfg(any(feature = "anthropic", feature = "gemini"))]
fn counter_of<'a>(p: &'a (dyn infermux_core::Provider + 'static)) -> Option<Counter<'a>> {
    #[cfg(feature = "anthropic")]
    if let Some(a) = p.downcast_ref::<infermux_anthropic::Anthropic>() {
        return Some(Counter::Anthropic(a));
    }
    #[cfg(feature = "gemini")]
    if let Some(g) = p.downcast_ref::<infermux_gemini::Gemini>() {
        return Some(Counter::Gemini(g));
    }
    None
}

/// `model`, or the deployment's model id when it names one.
#[cfg(any(
    feature = "openai",
    feature = "openai-compat",
    feature = "anthropic",
    feature = "gemini"
))]
fn model_for(own: &str, deployment: Option<&str>) -> String {
    deployment.unwrap_or(own).to_owned()
}

impl Client {
    /// `POST /audio/speech` on one member of `group` (`None`: the implicit group or the only
    /// endpoint; every member must be an OpenAI or OpenAI-compatible provider): the audio
    /// bytes. Idempotent (nothing is stored), so a 429, a 5xx or a dropped connection retries,
    /// on another key or endpoint when there is one. A routed group's deployment model id
    /// replaces `req.model`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux::openai_compat::{OpenAiCompat, media::SpeechRequest};
    /// use infermux::{Client, EndpointConfig, RequestContext};
    /// use infermux_testkit::{FaultPlan, Simulator};
    ///
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", format!("{}/v1", sim.url())).unwrap()).unwrap());
    /// let req = SpeechRequest::new("tts-1", "Hello there.", "alloy");
    /// let audio = client.speech(None, &req, RequestContext::new()).await.unwrap().value;
    /// assert!(!audio.is_empty());
    /// # }
    /// ```
    #[cfg(any(feature = "openai", feature = "openai-compat"))]
    pub async fn speech(
        &self,
        group: Option<&str>,
        req: &media::SpeechRequest,
        ctx: RequestContext,
    ) -> Result<crate::Ran<Vec<u8>>> {
        let op = Op::new("speech", Idempotency::Idempotent);
        self.run_projected(group, op, ctx, media_of, |m, actx, model| {
            let mut req = req.clone();
            req.model = model_for(&req.model, model);
            async move { m.speech(&req, &actx).await }
        })
        .await
    }

    /// `POST /audio/transcriptions` on one member of `group`, like [`Client::speech`]
    /// (idempotent).
    #[cfg(any(feature = "openai", feature = "openai-compat"))]
    pub async fn transcribe(
        &self,
        group: Option<&str>,
        req: &media::TranscriptionRequest,
        ctx: RequestContext,
    ) -> Result<crate::Ran<media::Transcription>> {
        let op = Op::new("transcribe", Idempotency::Idempotent);
        self.run_projected(group, op, ctx, media_of, |m, actx, model| {
            let mut req = req.clone();
            req.model = model_for(&req.model, model);
            async move { m.transcribe(&req, &actx).await }
        })
        .await
    }

    /// `POST /files` on one member of `group`: uploads `bytes` as `filename` for `purpose`.
    /// Not idempotent (a second upload stores a second file): retried only when the failed
    /// attempt provably never reached the server (a refused connection), never after a 5xx or a
    /// dropped answer. [`Ran::served`](crate::Ran::served) says which endpoint and key hold the file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, RequestContext};
    /// use infermux_testkit::{FaultPlan, Simulator};
    ///
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", format!("{}/v1", sim.url())).unwrap()).unwrap());
    /// let ran = client.upload_file(None, "batch.jsonl", b"{}\n", "batch", RequestContext::new()).await.unwrap();
    /// assert_eq!(ran.value.bytes, Some(3));
    /// # }
    /// ```
    #[cfg(any(feature = "openai", feature = "openai-compat"))]
    pub async fn upload_file(
        &self,
        group: Option<&str>,
        filename: &str,
        bytes: &[u8],
        purpose: &str,
        ctx: RequestContext,
    ) -> Result<crate::Ran<media::FileObject>> {
        let op = Op::new("upload_file", Idempotency::NonIdempotent);
        self.run_projected(group, op, ctx, media_of, |m, actx, _| async move {
            m.upload_file(filename, bytes, purpose, &actx).await
        })
        .await
    }

    /// The prompt tokens `req` would use, counted by one member of `group` (every member must
    /// be Anthropic or Gemini; `POST /v1/messages/count_tokens` or `countTokens`), through the
    /// pool like a call (idempotent). A routed group's deployment model id replaces
    /// `req.model`.
    #[cfg(any(feature = "anthropic", feature = "gemini"))]
    pub async fn count_tokens(
        &self,
        group: Option<&str>,
        req: &infermux_core::ChatRequest,
        ctx: RequestContext,
    ) -> Result<crate::Ran<u64>> {
        let op = Op::new("count_tokens", Idempotency::Idempotent);
        self.run_projected(group, op, ctx, counter_of, |c, actx, model| {
            let mut req = req.clone();
            req.model = model_for(&req.model, model);
            async move {
                match c {
                    #[cfg(feature = "anthropic")]
                    Counter::Anthropic(a) => a.count_tokens(&req, &actx).await,
                    #[cfg(feature = "gemini")]
                    Counter::Gemini(g) => g.count_tokens(&req, &actx).await,
                }
            }
        })
        .await
    }

    /// `POST /api/pull` on every Ollama endpoint of `group` (see [`Client::run_op_each`]): the
    /// progress lines of each pull, read to the end (`status: "success"` last). Idempotent. One
    /// result per endpoint. The whole pull is one attempt within the call deadline (the
    /// context's, else the client's timeout, 5 minutes by default): a large model needs a
    /// longer one.
    #[cfg(feature = "ollama")]
    pub async fn pull_model(
        &self,
        group: Option<&str>,
        model: &str,
        ctx: RequestContext,
    ) -> Result<
        Vec<(
            infermux_core::EndpointId,
            Result<Vec<infermux_ollama::PullProgress>>,
        )>,
    > {
        use futures_util::StreamExt;
        let op = Op::new("ollama.pull", Idempotency::Idempotent);
        self.run_op_each::<infermux_ollama::Ollama, _, _, _>(group, op, ctx, |t| async move {
            let stream = t.provider.pull(model, &t.ctx).await?;
            let mut stream = std::pin::pin!(stream);
            let mut lines = Vec::new();
            while let Some(line) = stream.next().await {
                lines.push(line?);
            }
            Ok(lines)
        })
        .await
    }

    /// `POST /v1/load_lora_adapter` on every vLLM endpoint of `group`: serves the adapter at
    /// `path` (on each server) as model `name`. Not idempotent (a second load of the same name
    /// is refused by vLLM): an endpoint's attempt is retried only when it provably never
    /// reached the server. One result per endpoint.
    #[cfg(feature = "vllm")]
    pub async fn load_lora_adapter(
        &self,
        group: Option<&str>,
        name: &str,
        path: &str,
        ctx: RequestContext,
    ) -> Result<Vec<(infermux_core::EndpointId, Result<()>)>> {
        let op = Op::new("vllm.load_lora_adapter", Idempotency::NonIdempotent);
        self.run_op_each::<infermux_vllm::Vllm, _, _, _>(group, op, ctx, |t| async move {
            t.provider.load_lora_adapter(name, path, &t.ctx).await
        })
        .await
    }

    /// `POST /v1/unload_lora_adapter` on every vLLM endpoint of `group`, like
    /// [`Client::load_lora_adapter`] (not idempotent).
    #[cfg(feature = "vllm")]
    pub async fn unload_lora_adapter(
        &self,
        group: Option<&str>,
        name: &str,
        ctx: RequestContext,
    ) -> Result<Vec<(infermux_core::EndpointId, Result<()>)>> {
        let op = Op::new("vllm.unload_lora_adapter", Idempotency::NonIdempotent);
        self.run_op_each::<infermux_vllm::Vllm, _, _, _>(group, op, ctx, |t| async move {
            t.provider.unload_lora_adapter(name, &t.ctx).await
        })
        .await
    }
}
