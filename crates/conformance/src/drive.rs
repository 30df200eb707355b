//! Replaying one interaction: the core request read from the recorded one, the provider at
//! the replay server's address, the call (plain or streamed, or a provider's inherent
//! method), and the verdict against the oracle's reading of the recorded body.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use infermux::groq::Groq;
use infermux::openai::media::{ImageRequest, SpeechRequest, TranscriptionRequest};
use infermux::openai::{OpenAi, responses};
use infermux::openai_compat::{OpenAiCompat, wire};
use infermux::{
    ChatRequest, CompletionRequest, CompletionResponse, EmbeddingRequest, EndpointConfig, Error,
    ErrorKind, Message, Provider, Request, RequestContext, RerankRequest, Response, Role,
    StreamAccumulator, Timeouts,
};
use infermux_testkit::cassette::split_uri;
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, Interaction, ReplayServer};
use serde_json::Value;

use crate::route::{Op, route};
use crate::{Record, Runner, Verdict};

/// The model named in a Gemini path (`/v1beta/models/<model>:<method>`).
fn gemini_model(path: &str) -> &str {
    path.split_once("/models/")
        .map_or("", |(_, rest)| rest.split(':').next().unwrap_or(""))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(xs) => xs
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn u32_at(v: &Value, pointer: &str) -> Option<u32> {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// The core request for a recorded request, and whether it streams. Operations driven
/// through inherent methods read the recorded request themselves (`Request::Models` here).
fn core_request(op: Op, it: &Interaction) -> infermux::Result<(Request, bool)> {
    let body = || {
        it.request.json().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                "recorded request body is not JSON",
            )
        })
    };
    let path = it.request.path();
    Ok(match op {
        Op::Chat => {
            let b = body()?;
            (
                Request::Chat(wire::chat_request_from_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::Completion => {
            let b = body()?;
            (
                Request::Completion(wire::completion_request_from_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::Embeddings => (
            Request::Embeddings(wire::embedding_request_from_json(&body()?)?),
            false,
        ),
        Op::Responses => {
            let b = body()?;
            (
                Request::Chat(responses::chat_request_from_responses_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::AnthropicChat => {
            let b = body()?;
            (
                Request::Chat(infermux::anthropic::wire::chat_request_from_json(&b)?),
                infermux::anthropic::wire::request_streams(&b),
            )
        }
        Op::GeminiChat => (
            Request::Chat(infermux::gemini::wire::chat_request_from_json(
                gemini_model(path),
                &body()?,
            )?),
            path.ends_with(":streamGenerateContent"),
        ),
        Op::GeminiEmbed => {
            let b = body()?;
            let inputs: Vec<String> = b["requests"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            r["content"]["parts"][0]["text"]
                                .as_str()
                                .unwrap_or("")
                                .to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut req = EmbeddingRequest::new(gemini_model(path), inputs);
            req.dimensions = u32_at(&b, "/requests/0/outputDimensionality");
            if let Some(t) = b["requests"][0].get("taskType") {
                req.extra.insert("taskType".to_owned(), t.clone());
            }
            (Request::Embeddings(req), false)
        }
        Op::OllamaChat => {
            let b = body()?;
            let messages = b["messages"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            Message::new(
                                Role::from(m["role"].as_str().unwrap_or("user")),
                                m["content"].as_str().unwrap_or(""),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut req = ChatRequest::new(b["model"].as_str().unwrap_or(""), messages);
            req.max_tokens = u32_at(&b, "/options/num_predict");
            (Request::Chat(req), b["stream"] != Value::Bool(false))
        }
        Op::OllamaGenerate => {
            let b = body()?;
            let mut req = CompletionRequest::new(
                b["model"].as_str().unwrap_or(""),
                b["prompt"].as_str().unwrap_or(""),
            );
            req.max_tokens = u32_at(&b, "/options/num_predict");
            (Request::Completion(req), b["stream"] != Value::Bool(false))
        }
        Op::OllamaEmbed => {
            let b = body()?;
            let req =
                EmbeddingRequest::new(b["model"].as_str().unwrap_or(""), strings(&b["input"]));
            (Request::Embeddings(req), false)
        }
        Op::TgiInferenceApi | Op::TgiGenerate => {
            let b = body()?;
            let prompt = match &b["inputs"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let model = path.split_once("/models/").map_or("tgi", |(_, m)| m);
            let mut req = CompletionRequest::new(model, prompt);
            req.max_tokens = u32_at(&b, "/parameters/max_new_tokens");
            let streamed = b["stream"] == Value::Bool(true) || path.ends_with("/generate_stream");
            (Request::Completion(req), streamed)
        }
        Op::TeiFeatureExtraction | Op::TeiEmbed => {
            let b = body()?;
            (
                Request::Embeddings(EmbeddingRequest::new("tei", strings(&b["inputs"]))),
                false,
            )
        }
        Op::TeiRerank => {
            let b = body()?;
            let req = RerankRequest::new(
                "tei",
                b["query"].as_str().unwrap_or(""),
                strings(&b["texts"]),
            );
            (Request::Rerank(req), false)
        }
        Op::Models | Op::AnthropicModels | Op::GeminiModels | Op::OllamaTags => {
            (Request::Models, false)
        }
        // inherent methods: they read the recorded request themselves
        _ => (Request::Models, false),
    })
}

/// The oracle's reading of the recorded answer for `op`.
fn expected(
    op: Op,
    streamed: bool,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Expected, String> {
    use oracle::{anthropic, gemini, ollama, openai, tei, tgi};
    match (op, streamed) {
        (Op::Chat, false) => openai::chat(status, body),
        (Op::Chat, true) => openai::chat_stream(status, body),
        (Op::Completion, false) => openai::completion(status, body),
        (Op::Completion, true) => openai::completion_stream(status, body),
        (Op::Embeddings, _) => openai::embeddings(status, body),
        (Op::Models, _) => openai::models(status, body),
        (Op::Responses, false) => openai::responses(status, body),
        (Op::Responses, true) => openai::responses_stream(status, body),
        (Op::Moderation, _) => openai::moderation(status, body),
        (Op::Images, _) => openai::images(status, body),
        (Op::Speech, _) => openai::speech(status, body),
        (Op::Transcription, _) => openai::transcription(status, body),
        (Op::FileUpload, _) => openai::file(status, body),
        (Op::FileList, _) => openai::files(status, body),
        (Op::AnthropicChat, false) => anthropic::messages(status, body),
        (Op::AnthropicChat, true) => anthropic::messages_stream(status, body),
        (Op::AnthropicModels, _) => anthropic::models(status, body),
        (Op::AnthropicCountTokens, _) => anthropic::count_tokens(status, body),
        (Op::GeminiChat, _) => gemini::generate(status, body),
        (Op::GeminiEmbed, _) => gemini::batch_embed(status, body),
        (Op::GeminiEmbedOne, _) => gemini::embed_one(status, body),
        (Op::GeminiCountTokens, _) => gemini::count_tokens(status, body),
        (Op::GeminiModels, _) => gemini::models(status, body),
        (Op::OllamaChat, _) => ollama::chat(status, body),
        (Op::OllamaGenerate, _) => ollama::generate(status, body),
        (Op::OllamaEmbed, _) => ollama::embed(status, body),
        (Op::OllamaEmbeddingsLegacy, _) => ollama::embeddings_legacy(&[(status, body)]),
        (Op::OllamaTags, _) => ollama::tags(status, body),
        (Op::TgiInferenceApi | Op::TgiGenerate, false) => {
            tgi::generate_headed(status, headers, body)
        }
        (Op::TgiInferenceApi | Op::TgiGenerate, true) => tgi::generate_stream(status, body),
        (Op::TgiInfo, _) => tgi::info(status, body),
        (Op::TgiHealth, _) => tgi::health(status, body),
        (Op::TeiFeatureExtraction | Op::TeiEmbed, _) => tei::embed(status, body),
        (Op::TeiEmbedSparse, _) => tei::embed_sparse(status, body),
        (Op::TeiRerank, _) => tei::rerank(status, body),
        (Op::TeiInfo, _) => tei::info(status, body),
    }
}

fn config(base_url: &str) -> infermux::Result<EndpointConfig> {
    let timeouts = Timeouts::standard()
        .with_first_byte(Duration::from_secs(20))
        .with_total(Some(Duration::from_secs(30)));
    Ok(EndpointConfig::new("conformance", base_url)?.with_timeouts(timeouts))
}

/// What is needed to build a provider for one interaction.
struct Target<'a> {
    provider: &'static str,
    op: Op,
    base_url: String,
    it: &'a Interaction,
    azure_api_version: Option<String>,
    inputs: usize,
}

impl Target<'_> {
    fn query(&self) -> &str {
        split_uri(&self.it.request.uri).2
    }

    fn model_after(&self, marker: &str) -> String {
        self.it
            .request
            .path()
            .split_once(marker)
            .map_or("", |(_, m)| m)
            .to_owned()
    }

    fn gemini(&self) -> infermux::Result<infermux::gemini::Gemini> {
        Ok(infermux::gemini::Gemini::new(config(&self.base_url)?)?
            .with_sse(self.query().split('&').any(|kv| kv == "alt=sse")))
    }

    fn anthropic(&self) -> infermux::Result<infermux::anthropic::Anthropic> {
        // the Anthropic SDK's beta client marks requests with `?beta=true`
        Ok(
            infermux::anthropic::Anthropic::new(config(&self.base_url)?)?
                .with_beta_query(self.query().split('&').any(|kv| kv == "beta=true")),
        )
    }

    fn tei(&self) -> infermux::Result<infermux::hf_tei::HfTei> {
        Ok(infermux::hf_tei::HfTei::new(config(&self.base_url)?)?
            .with_max_client_batch_size(self.inputs.max(1)))
    }

    fn tgi(&self) -> infermux::Result<infermux::hf_tgi::HfTgi> {
        infermux::hf_tgi::HfTgi::new(config(&self.base_url)?)
    }

    fn provider(&self) -> infermux::Result<Arc<dyn Provider>> {
        let cfg = config(&self.base_url)?;
        Ok(match (self.provider, self.op) {
            ("groq", _) => Arc::new(Groq::new(cfg)?),
            ("openai", op) => {
                let client = match &self.azure_api_version {
                    Some(v) => OpenAi::azure(cfg, v)?,
                    None => OpenAi::new(cfg)?,
                };
                Arc::new(client.with_responses_api(op == Op::Responses))
            }
            ("openai-compat", _) => Arc::new(OpenAiCompat::new(cfg)?),
            ("gemini", _) => Arc::new(self.gemini()?),
            ("anthropic", _) => Arc::new(self.anthropic()?),
            ("ollama", _) => Arc::new(infermux::ollama::Ollama::new(cfg)?),
            ("tgi", Op::TgiInferenceApi) => Arc::new(infermux::hf_tgi::HfTgi::inference_api(
                cfg,
                self.model_after("/models/"),
            )?),
            ("tgi", _) => Arc::new(self.tgi()?),
            ("tei", Op::TeiFeatureExtraction) => Arc::new(infermux::hf_tei::HfTei::inference_api(
                cfg,
                self.model_after("/pipeline/feature-extraction/"),
            )?),
            ("tei", _) => Arc::new(self.tei()?),
            (other, _) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("no provider {other}"),
                ));
            }
        })
    }
}

/// A streamed call collected into one response (a completion stream into a completion).
async fn drive(
    provider: &dyn Provider,
    request: &Request,
    streamed: bool,
) -> infermux::Result<Response> {
    let ctx = RequestContext::new();
    if !streamed {
        return provider.call(request, &ctx).await;
    }
    let mut stream = provider.stream(request, &ctx).await?;
    let mut acc = StreamAccumulator::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => acc.push(&ev),
            Err(e) if e.partial_text().is_none() => {
                return Err(e.with_partial_text(acc.text().to_owned()));
            }
            Err(e) => return Err(e),
        }
    }
    if !acc.is_done() {
        return Err(
            Error::new(ErrorKind::Decode, "the stream ended without Done")
                .with_partial_text(acc.text().to_owned()),
        );
    }
    let chat = acc.finish();
    if let Request::Completion(req) = request {
        let mut c = CompletionResponse::new(
            if chat.model.is_empty() {
                req.model.clone()
            } else {
                chat.model.clone()
            },
            chat.text(),
        );
        c.id = chat.id;
        c.finish_reason = chat.finish_reason;
        c.usage = chat.usage;
        return Ok(Response::Completion(c));
    }
    Ok(Response::Chat(chat))
}

/// The operations driven through providers' inherent methods, observed in the oracle's shape.
async fn drive_inherent(t: &Target<'_>) -> infermux::Result<Expected> {
    let ctx = RequestContext::new();
    let it = t.it;
    let body = it.request.json().unwrap_or(Value::Null);
    let s = |k: &str, default: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let mut got = Expected::default();
    match t.op {
        Op::Moderation
        | Op::Images
        | Op::Speech
        | Op::Transcription
        | Op::FileUpload
        | Op::FileList => {
            let p = OpenAi::new(config(&t.base_url)?)?;
            match t.op {
                Op::Moderation => {
                    let inputs = match strings(&body["input"]) {
                        xs if xs.is_empty() => vec![String::new()],
                        xs => xs,
                    };
                    let model = body.get("model").and_then(Value::as_str);
                    let m = p.moderate(model, &inputs, &ctx).await?;
                    got.flagged = Some(
                        m.results
                            .iter()
                            .map(|r| {
                                r.categories
                                    .iter()
                                    .filter(|(_, v)| **v)
                                    .map(|(k, _)| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .collect(),
                    );
                }
                Op::Images => {
                    let mut req = ImageRequest::new(s("model", "dall-e-2"), s("prompt", ""));
                    req.n = u32_at(&body, "/n");
                    let g = p.generate_images(&req, &ctx).await?;
                    if g.data
                        .iter()
                        .any(|i| i.url.is_none() && i.b64_json.is_none())
                    {
                        return Err(Error::new(
                            ErrorKind::Decode,
                            "an image has neither url nor data",
                        ));
                    }
                    got.images = Some(g.data.len());
                }
                Op::Speech => {
                    let req = SpeechRequest::new(
                        s("model", "tts-1"),
                        s("input", ""),
                        s("voice", "alloy"),
                    );
                    let audio = p.speech(&req, &ctx).await?;
                    got.media = Some((audio.len(), oracle::fnv1a(&audio)));
                }
                Op::Transcription => {
                    // uploads send a placeholder file: replay matches method and path only
                    let req = TranscriptionRequest::new("whisper-1", "audio.wav", b"RIFF".to_vec());
                    got.text = Some(p.transcribe(&req, &ctx).await?.text);
                }
                Op::FileUpload => {
                    let f = p
                        .upload_file("upload.jsonl", b"{}\n", "batch", &ctx)
                        .await?;
                    got.ids = Some(vec![f.id]);
                }
                _ => {
                    let files = p.list_files(&ctx).await?;
                    got.ids = Some(files.into_iter().map(|f| f.id).collect());
                }
            }
        }
        Op::AnthropicCountTokens => {
            let req = infermux::anthropic::wire::chat_request_from_json(&body)?;
            got.token_count = Some(t.anthropic()?.count_tokens(&req, &ctx).await?);
        }
        Op::GeminiCountTokens => {
            let model = gemini_model(it.request.path());
            let req = infermux::gemini::wire::chat_request_from_json(model, &body)?;
            got.token_count = Some(t.gemini()?.count_tokens(&req, &ctx).await?);
        }
        Op::GeminiEmbedOne => {
            let text = body["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let mut req =
                EmbeddingRequest::new(gemini_model(it.request.path()), vec![text.clone()]);
            req.dimensions = u32_at(&body, "/outputDimensionality");
            if let Some(tt) = body.get("taskType") {
                req.extra.insert("taskType".to_owned(), tt.clone());
            }
            let v = t.gemini()?.embed_one(&req, &text, &ctx).await?;
            got.vectors = Some((1, v.len()));
            got.embeddings = Some(vec![v]);
        }
        Op::OllamaEmbeddingsLegacy => {
            let req = EmbeddingRequest::new(s("model", ""), vec![s("prompt", "")]);
            let e = infermux::ollama::Ollama::new(config(&t.base_url)?)?
                .embeddings_legacy(&req, &ctx)
                .await?;
            got.vectors = Some((e.embeddings.len(), e.dimension()));
            got.embeddings = Some(e.embeddings);
        }
        Op::TgiInfo => got.ids = Some(vec![t.tgi()?.info(&ctx).await?.model_id]),
        Op::TgiHealth => {
            t.tgi()?.health(&ctx).await?;
            got.healthy = Some(true);
        }
        Op::TeiInfo => got.ids = Some(vec![t.tei()?.info(&ctx).await?.model_id]),
        Op::TeiEmbedSparse => {
            let v = t
                .tei()?
                .embed_sparse(&strings(&body["inputs"]), &ctx)
                .await?;
            got.vectors = Some((v.len(), v.first().map_or(0, Vec::len)));
            got.sparse = Some(
                v.iter()
                    .map(|x| x.iter().map(|e| (e.index, e.value)).collect())
                    .collect(),
            );
        }
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{other:?} is not driven through an inherent method"),
            ));
        }
    }
    Ok(got)
}

/// Replays one interaction and judges it against the oracle.
pub(crate) async fn run_one(runner: &Runner, file: &str, index: usize, it: &Interaction) -> Record {
    let status = it.response.status;
    let plain = oracle::plain_body(&it.response);
    let r = route(
        &it.request.method,
        it.request.host(),
        it.request.path(),
        plain.as_deref().unwrap_or(&[]),
    );
    let mut rec = Record::new(file, Some(index));
    rec.provider = r.provider;
    rec.operation = r.operation.clone();
    rec.status = Some(status);
    let (op, base_path) = match r.target {
        Ok(t) => t,
        Err(reason) => {
            rec.reason = Some(reason);
            return rec;
        }
    };
    let (request, streamed) = match core_request(op, it) {
        Ok(x) => x,
        Err(e) => {
            return rec.fail(
                "error",
                format!("the recorded request could not be read ({}): {e}", e.kind()),
            );
        }
    };
    if streamed {
        rec.operation.push_str("_stream");
    }
    let want = match plain
        .and_then(|body| expected(op, streamed, status, &it.response.headers, &body))
    {
        Ok(w) => w,
        Err(why) => return rec.fail("error", format!("the recording could not be read: {why}")),
    };
    // the request must be the recorded one in what decides the answer (model, messages,
    // inputs, tools, streaming), not only in its method and path
    let server = match ReplayServer::start_with(
        Cassette {
            interactions: vec![it.clone()],
        },
        infermux_testkit::replay::ReplayOptions::default().with_body_check(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return rec.fail("error", format!("replay server did not start: {e}")),
    };
    let azure_api_version = r
        .operation
        .starts_with("azure_")
        .then(|| {
            split_uri(&it.request.uri)
                .2
                .split('&')
                .find_map(|kv| kv.strip_prefix("api-version="))
                .map(str::to_owned)
        })
        .flatten();
    let inputs = match &request {
        Request::Embeddings(e) => e.inputs.len(),
        _ => 1,
    };
    let target = Target {
        provider: r.provider,
        op,
        base_url: format!("{}{base_path}", server.url()),
        it,
        azure_api_version,
        inputs,
    };
    let got: infermux::Result<Expected> = if op.is_inherent() {
        drive_inherent(&target).await
    } else {
        match target.provider() {
            Ok(p) => drive(runner.wrap(p).as_ref(), &request, streamed)
                .await
                .map(|resp| Expected::of_response(&resp)),
            Err(e) => Err(e),
        }
    };
    let served = server.verify();
    let verdict = match &got {
        Ok(obs) => {
            rec.outcome = "ok";
            rec.decoded = obs.clone();
            want.check_replay(status, Ok(obs))
        }
        Err(e) => {
            rec.outcome = "error";
            rec.error_kind = Some(e.kind());
            if let Some(partial) = e.partial_text() {
                rec.decoded.text = Some(partial.to_owned());
            }
            // the kind the recorded status and body mean, and that status itself
            want.check_replay(status, Err(e))
        }
    };
    let verdict = match (verdict, served) {
        (Ok(()), Err(why)) => Err(format!("the request did not match the recording: {why}")),
        (v, _) => v,
    };
    match verdict {
        Ok(()) => rec.verdict = Verdict::Passed,
        Err(why) => {
            rec.verdict = Verdict::Failed;
            rec.reason = Some(why);
        }
    }
    rec
}
