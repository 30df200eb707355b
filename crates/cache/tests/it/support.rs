//! Shared helpers: requests, answers, a deterministic embedder and verifiers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use infermux_cache::{Cache, CacheConfig, Embedder, SemanticConfig, Verifier};
use infermux_core::{
    ChatRequest, ChatResponse, Error, ErrorKind, EventStream, Message, Request, Response, Result,
    StreamEvent,
};

pub(crate) fn chat(model: &str, messages: Vec<Message>) -> Request {
    Request::Chat(ChatRequest::new(model, messages))
}

pub(crate) fn ask(text: &str) -> Request {
    chat("m", vec![Message::system("Be brief."), Message::user(text)])
}

pub(crate) fn answer(text: &str) -> Response {
    Response::Chat(ChatResponse::new("m", Message::assistant(text)))
}

pub(crate) fn text_of(r: &Response) -> String {
    match r {
        Response::Chat(c) => c.text(),
        other => panic!("not a chat: {other:?}"),
    }
}

pub(crate) fn events(parts: &[&str]) -> Vec<StreamEvent> {
    let mut v = vec![StreamEvent::Start {
        id: Some("r1".into()),
        model: Some("m".into()),
    }];
    v.extend(parts.iter().map(|t| StreamEvent::TextDelta {
        text: (*t).to_owned(),
    }));
    v.push(StreamEvent::Done {
        finish_reason: None,
    });
    v
}

pub(crate) fn live(items: Vec<Result<StreamEvent>>) -> EventStream {
    Box::pin(futures_util::stream::iter(items))
}

/// Bag of words hashed into 64 dimensions: texts with the same words embed the same, one
/// extra word moves the vector a little, different words a lot. Counts its calls.
#[derive(Debug, Default)]
pub(crate) struct WordsEmbedder {
    pub(crate) calls: AtomicUsize,
    pub(crate) fail: bool,
}

pub(crate) fn word_vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; 64];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let w = w.to_lowercase();
        let h = xxhash_rust::xxh3::xxh3_64(w.as_bytes());
        v[(h % 64) as usize] += 1.0;
    }
    v
}

#[async_trait]
impl Embedder for WordsEmbedder {
    fn model_id(&self) -> &str {
        "words-64"
    }
    async fn embed(
        &self,
        texts: &[String],
        _ctx: &infermux_core::RequestContext,
    ) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(Error::new(ErrorKind::Connect, "embedder down"));
        }
        Ok(texts.iter().map(|t| word_vector(t)).collect())
    }
}

/// Accepts a candidate whose cosine is at least its threshold (score = cosine).
#[derive(Debug)]
pub(crate) struct CosineVerifier(pub f32);

#[async_trait]
impl Verifier for CosineVerifier {
    async fn score(&self, _q: &str, _c: &str, cosine: f32) -> Result<f32> {
        Ok(cosine)
    }
    fn threshold(&self) -> f32 {
        self.0
    }
    fn estimated_false_hit_rate(&self) -> Option<f64> {
        Some(0.02)
    }
}

/// Turns every candidate down.
#[derive(Debug)]
pub(crate) struct NoVerifier;

#[async_trait]
impl Verifier for NoVerifier {
    async fn score(&self, _q: &str, _c: &str, _cosine: f32) -> Result<f32> {
        Ok(0.0)
    }
    fn threshold(&self) -> f32 {
        0.5
    }
}

pub(crate) fn semantic_cache(verifier: Arc<dyn Verifier>) -> (Cache, Arc<WordsEmbedder>) {
    let emb = Arc::new(WordsEmbedder::default());
    (semantic_cache_on(emb.clone(), verifier), emb)
}

/// A cache with a semantic tier on `embedder` (similarity floor 0.7).
pub(crate) fn semantic_cache_on(embedder: Arc<dyn Embedder>, verifier: Arc<dyn Verifier>) -> Cache {
    Cache::new(CacheConfig::default()).unwrap().with_semantic(
        embedder,
        verifier,
        SemanticConfig::default().with_min_similarity(0.7).unwrap(),
    )
}
