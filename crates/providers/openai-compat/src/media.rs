//! OpenAI-protocol operations outside the provider-neutral [`infermux_core::Request`]:
//! moderation, image generation, audio speech and transcription (multipart upload), and files
//! (multipart upload, list, delete, content), for any server that offers them (OpenAI, Azure,
//! LocalAI, vLLM's transcription, ...). [`MediaClient`] holds the methods, with small types of
//! their own; unknown fields of the answers are ignored.
//!
//! Uploads (transcription, files) are not idempotent: a retry layer must only repeat them when
//! the error says the request never reached the server.

use std::collections::BTreeMap;

use infermux_core::{Error, ErrorKind, RequestContext, Result};
use infermux_http::{HttpEndpoint, HttpRequest, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::lenient::{self, Fields, Object};

/// The result of moderating one input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ModerationResult {
    /// Whether any category was flagged.
    pub flagged: bool,
    /// Category → flagged (a category the model does not judge, `null` on the wire —
    /// `illicit` with the legacy text models — is left out).
    #[serde(default, deserialize_with = "without_nulls")]
    pub categories: BTreeMap<String, bool>,
    /// Category → score between 0 and 1 (`null` scores left out).
    #[serde(default, deserialize_with = "without_nulls")]
    pub category_scores: BTreeMap<String, f64>,
}

/// A map whose `null` values are left out.
fn without_nulls<'de, D, T>(d: D) -> std::result::Result<BTreeMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let m: BTreeMap<String, Option<T>> = Deserialize::deserialize(d)?;
    Ok(m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// The answer of `POST /moderations`: one result per input, in input order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Moderation {
    /// The provider's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that judged.
    #[serde(default)]
    pub model: Option<String>,
    /// One result per input.
    pub results: Vec<ModerationResult>,
}

/// One generated image: a URL or base64 data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct GeneratedImage {
    /// A URL to fetch it from (valid for a while).
    #[serde(default)]
    pub url: Option<String>,
    /// The image as base64 (`response_format: b64_json`, and always for `gpt-image-1`).
    #[serde(default)]
    pub b64_json: Option<String>,
    /// The prompt the model actually used.
    #[serde(default)]
    pub revised_prompt: Option<String>,
}

/// The answer of `POST /images/generations`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ImageGeneration {
    /// Creation time, seconds since the epoch.
    #[serde(default)]
    pub created: Option<i64>,
    /// The images.
    pub data: Vec<GeneratedImage>,
}

/// A request for `POST /images/generations`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ImageRequest {
    /// Model (`dall-e-3`, `gpt-image-1`).
    pub model: String,
    /// What to draw.
    pub prompt: String,
    /// How many images.
    pub n: Option<u32>,
    /// Size such as `1024x1024`.
    pub size: Option<String>,
    /// `url` or `b64_json` (DALL·E only).
    pub response_format: Option<String>,
}

impl ImageRequest {
    /// A request for one image of `prompt`.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        ImageRequest {
            model: model.into(),
            prompt: prompt.into(),
            n: None,
            size: None,
            response_format: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        serde_json::to_value(ImageBody::of(self)).unwrap_or(Value::Null)
    }
}

/// The body of `POST /images/generations`, borrowed from an [`ImageRequest`].
#[derive(Serialize)]
struct ImageBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'a str>,
}

impl<'a> ImageBody<'a> {
    fn of(r: &'a ImageRequest) -> Self {
        ImageBody {
            model: &r.model,
            n: r.n,
            prompt: &r.prompt,
            response_format: r.response_format.as_deref(),
            size: r.size.as_deref(),
        }
    }
}

/// A request for `POST /audio/speech`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpeechRequest {
    /// Model (`tts-1`, `gpt-4o-mini-tts`).
    pub model: String,
    /// The text to speak.
    pub input: String,
    /// The voice (`alloy`, ...).
    pub voice: String,
    /// `mp3` (default), `opus`, `aac`, `flac`, `wav`, `pcm`.
    pub response_format: Option<String>,
}

impl SpeechRequest {
    /// Speaks `input` with `voice`.
    pub fn new(
        model: impl Into<String>,
        input: impl Into<String>,
        voice: impl Into<String>,
    ) -> Self {
        SpeechRequest {
            model: model.into(),
            input: input.into(),
            voice: voice.into(),
            response_format: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        serde_json::to_value(SpeechBody::of(self)).unwrap_or(Value::Null)
    }
}

/// The body of `POST /audio/speech`, borrowed from a [`SpeechRequest`].
#[derive(Serialize)]
struct SpeechBody<'a> {
    input: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a str>,
    voice: &'a str,
}

impl<'a> SpeechBody<'a> {
    fn of(r: &'a SpeechRequest) -> Self {
        SpeechBody {
            input: &r.input,
            model: &r.model,
            response_format: r.response_format.as_deref(),
            voice: &r.voice,
        }
    }
}

/// The body of `POST /moderations`.
#[derive(Serialize)]
struct ModerationBody<'a> {
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
}

/// The answer of `DELETE /files/{id}`: whether `deleted` is `true` (anything else reads as
/// not deleted).
#[derive(Debug, Default)]
struct Deletion {
    deleted: lenient::Bool,
}

impl<'de> Fields<'de> for Deletion {
    fn field<A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "deleted" => self.deleted = map.next_value()?,
            _ => lenient::skip_value(map)?,
        }
        Ok(())
    }
}

/// A request for `POST /audio/transcriptions` (multipart).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TranscriptionRequest {
    /// Model (`whisper-1`, `gpt-4o-transcribe`).
    pub model: String,
    /// The audio file's name (its extension tells the format).
    pub filename: String,
    /// The audio bytes.
    pub audio: Vec<u8>,
    /// The spoken language (ISO-639-1), when known.
    pub language: Option<String>,
    /// `json` (default), `text`, `srt`, `verbose_json`, `vtt`.
    pub response_format: Option<String>,
}

impl TranscriptionRequest {
    /// Transcribes `audio` stored as `filename`.
    pub fn new(model: impl Into<String>, filename: impl Into<String>, audio: Vec<u8>) -> Self {
        TranscriptionRequest {
            model: model.into(),
            filename: filename.into(),
            audio,
            language: None,
            response_format: None,
        }
    }
}

/// A transcription: the text, and the language and duration when reported.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Transcription {
    /// The text.
    pub text: String,
    /// The detected language (`verbose_json`).
    #[serde(default)]
    pub language: Option<String>,
    /// The audio's duration in seconds (`verbose_json`).
    #[serde(default)]
    pub duration: Option<f64>,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct FileObject {
    /// Its id (`file-...`).
    pub id: String,
    /// Size in bytes.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Upload time, seconds since the epoch.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// The name it was uploaded with.
    #[serde(default)]
    pub filename: Option<String>,
    /// What it is for (`batch`, `fine-tune`, `assistants`, `user_data`, ...).
    #[serde(default)]
    pub purpose: Option<String>,
}

/// A `multipart/form-data` body: text fields and one file.
#[derive(Debug, Clone)]
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    /// An empty form whose boundary is derived from `seed` (the request id is a good one).
    pub fn new(seed: &str) -> Self {
        Multipart {
            boundary: format!("infermux-{seed}"),
            body: Vec::new(),
        }
    }

    fn quoted(s: &str) -> String {
        s.replace(['"', '\r', '\n'], "_")
    }

    /// Adds a text field.
    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                self.boundary,
                Self::quoted(name)
            )
            .as_bytes(),
        );
        self
    }

    /// Adds a file field.
    pub fn file(mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                self.boundary,
                Self::quoted(name),
                Self::quoted(filename)
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header value and the body bytes.
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// A file id safe to put in a path.
fn file_id(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(Error::new(
            ErrorKind::InvalidRequest,
            "a file id holds only letters, digits, `-` and `_`",
        ))
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    infermux_http::json::from_body(body)
        .map_err(|e| Error::new(ErrorKind::Decode, format!("{what} answer: {e}")))
}

/// Parses a transcription answer: JSON (`json`, `verbose_json`) or plain text (`text`, `srt`,
/// `vtt`).
pub fn parse_transcription(body: &[u8]) -> Result<Transcription> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        return decode("transcription", body);
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("transcription is not UTF-8: {e}"),
        )
    })?;
    Ok(Transcription {
        text: text.trim_end().to_owned(),
        language: None,
        duration: None,
    })
}

/// Parses a moderation answer.
pub fn parse_moderation(body: &[u8]) -> Result<Moderation> {
    decode("moderation", body)
}

/// Parses an image-generation answer.
pub fn parse_images(body: &[u8]) -> Result<ImageGeneration> {
    decode("image generation", body)
}

/// Parses a file object.
pub fn parse_file(body: &[u8]) -> Result<FileObject> {
    decode("file", body)
}

/// Parses a file list (`{"data": [...]}`).
pub fn parse_file_list(body: &[u8]) -> Result<Vec<FileObject>> {
    #[derive(Deserialize)]
    struct List {
        data: Vec<FileObject>,
    }
    decode::<List>("file list", body).map(|l| l.data)
}

/// The media and files operations of one endpoint: get one from
/// [`crate::OpenAiCompat::media`] (or `infermux_openai::OpenAi::media`, which adds Azure's
/// `api-version`).
#[derive(Debug, Clone, Copy)]
pub struct MediaClient<'a> {
    http: &'a HttpEndpoint,
    api_version: Option<&'a str>,
}

impl<'a> MediaClient<'a> {
    /// The operations of `http`; `api_version`, when given, goes in every request's query
    /// (Azure).
    pub fn new(http: &'a HttpEndpoint, api_version: Option<&'a str>) -> Self {
        MediaClient { http, api_version }
    }

    fn request(&self, method: Method, path: &str) -> HttpRequest<'a> {
        let r = self.http.request(method, path);
        match self.api_version {
            Some(v) => r.query("api-version", v),
            None => r,
        }
    }

    fn post(&self, path: &str) -> HttpRequest<'a> {
        self.request(Method::POST, path)
    }

    fn get(&self, path: &str) -> HttpRequest<'a> {
        self.request(Method::GET, path)
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + 'a {
        let (id, name, ep) = (ctx.request_id(), self.http.provider(), self.http);
        move |e| e.in_context(id, name, ep.id())
    }

    /// `POST /moderations`: one result per input.
    pub async fn moderate(
        &self,
        model: Option<&str>,
        inputs: &[String],
        ctx: &RequestContext,
    ) -> Result<Moderation> {
        let bytes = self
            .post("/moderations")
            .json(&ModerationBody {
                input: inputs,
                model,
            })
            .send(ctx)
            .await?
            .bytes()
            .await?;
        let m = parse_moderation(&bytes).map_err(self.ctx_err(ctx))?;
        if m.results.len() != inputs.len() {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                format!(
                    "{} moderation results for {} inputs",
                    m.results.len(),
                    inputs.len()
                ),
            )));
        }
        Ok(m)
    }

    /// `POST /images/generations`.
    pub async fn generate_images(
        &self,
        req: &ImageRequest,
        ctx: &RequestContext,
    ) -> Result<ImageGeneration> {
        let bytes = self
            .post("/images/generations")
            .json(&ImageBody::of(req))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        parse_images(&bytes).map_err(self.ctx_err(ctx))
    }

    /// `POST /audio/speech`: the audio bytes.
    pub async fn speech(&self, req: &SpeechRequest, ctx: &RequestContext) -> Result<Vec<u8>> {
        let bytes = self
            .post("/audio/speech")
            .json(&SpeechBody::of(req))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        Ok(bytes.to_vec())
    }

    /// `POST /audio/transcriptions` (multipart).
    pub async fn transcribe(
        &self,
        req: &TranscriptionRequest,
        ctx: &RequestContext,
    ) -> Result<Transcription> {
        let mut form = Multipart::new(&ctx.request_id().to_string()).text("model", &req.model);
        if let Some(l) = &req.language {
            form = form.text("language", l);
        }
        if let Some(f) = &req.response_format {
            form = form.text("response_format", f);
        }
        let (content_type, body) = form
            .file(
                "file",
                &req.filename,
                "application/octet-stream",
                &req.audio,
            )
            .finish();
        let bytes = self
            .post("/audio/transcriptions")
            .body(body, &content_type)
            .send(ctx)
            .await?
            .bytes()
            .await?;
        parse_transcription(&bytes).map_err(self.ctx_err(ctx))
    }

    /// `POST /files` (multipart): uploads `bytes` as `filename` for `purpose`.
    pub async fn upload_file(
        &self,
        filename: &str,
        bytes: &[u8],
        purpose: &str,
        ctx: &RequestContext,
    ) -> Result<FileObject> {
        let (content_type, body) = Multipart::new(&ctx.request_id().to_string())
            .text("purpose", purpose)
            .file("file", filename, "application/octet-stream", bytes)
            .finish();
        let answer = self
            .post("/files")
            .body(body, &content_type)
            .send(ctx)
            .await?
            .bytes()
            .await?;
        parse_file(&answer).map_err(self.ctx_err(ctx))
    }

    /// `GET /files`.
    pub async fn list_files(&self, ctx: &RequestContext) -> Result<Vec<FileObject>> {
        let body = self.get("/files").send(ctx).await?.bytes().await?;
        parse_file_list(&body).map_err(self.ctx_err(ctx))
    }

    /// `GET /files/{id}/content`: the file's bytes.
    pub async fn file_content(&self, id: &str, ctx: &RequestContext) -> Result<Vec<u8>> {
        let id = file_id(id).map_err(self.ctx_err(ctx))?;
        let body = self
            .get(&format!("/files/{id}/content"))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        Ok(body.to_vec())
    }

    /// `DELETE /files/{id}`: whether the file was deleted.
    pub async fn delete_file(&self, id: &str, ctx: &RequestContext) -> Result<bool> {
        let id = file_id(id).map_err(self.ctx_err(ctx))?;
        let body = self
            .request(Method::DELETE, &format!("/files/{id}"))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        let v: Object<Deletion> = decode("file deletion", &body).map_err(self.ctx_err(ctx))?;
        Ok(v.into_inner().deleted.0.unwrap_or(false))
    }
}
