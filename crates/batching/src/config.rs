//! [`BatchConfig`]: when a batch is flushed and how many callers may wait, with presets for the
//! embedding providers' documented request limits.

use std::time::Duration;

use infermux_core::{Error, ErrorKind, Result};

/// The longest [`BatchConfig::max_wait`] accepted (a longer wait is a configuration mistake,
/// and keeps deadline arithmetic far from overflow).
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// When a batch is flushed and how many items may wait.
///
/// A batch is sent as soon as it holds [`max_items`](Self::max_items) distinct items, as soon as
/// the next item would take it over [`max_tokens`](Self::max_tokens) (the batch goes, the item
/// starts the next one), or [`max_wait`](Self::max_wait) after its first item arrived,
/// whichever comes first. `max_wait` is a maximum: the timer aims up to 1.5 ms (at most three
/// quarters of `max_wait`) early, since a timer's wake-up is late rather than early. An item that alone weighs more than `max_tokens` is sent alone at
/// once (the provider decides whether it fits). At most
/// [`queue_capacity`](Self::queue_capacity) items wait, summed over every open batch; past
/// that a submit fails at once with [`ErrorKind::QueueFull`].
///
/// Defaults ([`BatchConfig::default`]): 64 items, 300 000 tokens, 5 ms, 4096 queued items.
/// The presets carry each embedding provider's limit on one request.
///
/// ```
/// use std::time::Duration;
/// use infermux_batching::BatchConfig;
///
/// let cfg = BatchConfig::openai_embeddings().with_max_wait(Duration::from_millis(2))?;
/// assert_eq!(cfg.max_items(), 2048);
/// assert_eq!(cfg.max_tokens(), 300_000);
/// assert!(BatchConfig::new(0, 1000, Duration::from_millis(5)).is_err()); // no room for an item
/// # Ok::<(), infermux_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    max_items: usize,
    max_tokens: u64,
    max_wait: Duration,
    queue_capacity: usize,
}

fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_items: 64,
            max_tokens: 300_000,
            max_wait: Duration::from_millis(5),
            queue_capacity: 4096,
        }
    }
}

impl BatchConfig {
    /// A batch of at most `max_items` distinct items and `max_tokens` estimated tokens, sent at
    /// the latest `max_wait` after its first item; the default queue capacity (4096).
    ///
    /// Errors ([`ErrorKind::Config`]): `max_items` or `max_tokens` zero, `max_wait` over
    /// [`MAX_WAIT_LIMIT`].
    pub fn new(max_items: usize, max_tokens: u64, max_wait: Duration) -> Result<Self> {
        BatchConfig::default()
            .with_max_items(max_items)?
            .with_max_tokens(max_tokens)?
            .with_max_wait(max_wait)
    }

    /// With at most `n` distinct items a batch (`n ≥ 1`).
    pub fn with_max_items(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(config_error("batch max_items must be at least 1".into()));
        }
        self.max_items = n;
        Ok(self)
    }

    /// With at most `n` estimated tokens a batch (`n ≥ 1`); an item heavier than this alone
    /// is sent alone.
    pub fn with_max_tokens(mut self, n: u64) -> Result<Self> {
        if n == 0 {
            return Err(config_error("batch max_tokens must be at least 1".into()));
        }
        self.max_tokens = n;
        Ok(self)
    }

    /// With a batch sent at the latest `wait` after its first item (zero: as soon as the
    /// batcher has taken in what is already queued). At most [`MAX_WAIT_LIMIT`].
    pub fn with_max_wait(mut self, wait: Duration) -> Result<Self> {
        if wait > MAX_WAIT_LIMIT {
            return Err(config_error(format!(
                "batch max_wait {wait:?} is over the limit of {MAX_WAIT_LIMIT:?}"
            )));
        }
        self.max_wait = wait;
        Ok(self)
    }

    /// With at most `n` items waiting over all open batches (`n ≥ 1`); a submit that would
    /// take the queue past it fails with [`ErrorKind::QueueFull`].
    pub fn with_queue_capacity(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(config_error(
                "batch queue_capacity must be at least 1".into(),
            ));
        }
        self.queue_capacity = n;
        Ok(self)
    }

    /// Distinct items a batch holds at most.
    pub fn max_items(&self) -> usize {
        self.max_items
    }
    /// Estimated tokens a batch holds at most.
    pub fn max_tokens(&self) -> u64 {
        self.max_tokens
    }
    /// The longest a batch waits after its first item.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
    /// Items that may wait, over every open batch.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    fn preset(max_items: usize, max_tokens: u64) -> Self {
        BatchConfig {
            max_items,
            max_tokens,
            ..BatchConfig::default()
        }
    }

    /// OpenAI `/v1/embeddings`: at most 2048 inputs and 300 000 tokens a request (OpenAI's
    /// documented limits).
    pub fn openai_embeddings() -> Self {
        Self::preset(2048, 300_000)
    }

    /// Hugging Face TEI `/embed`: at most `max_client_batch_size` inputs a request, the value
    /// the server reports on `/info` (`HfTei::info` in `infermux-hf-tei`; TEI's default is
    /// 32). TEI splits tokens into its own batches, so no token bound beyond OpenAI's; a zero
    /// size is taken as 1.
    pub fn tei(max_client_batch_size: usize) -> Self {
        Self::preset(max_client_batch_size.max(1), 300_000)
    }

    /// Ollama `/api/embed` (an array `input`): Ollama documents no bound on inputs; 512
    /// inputs and 131 072 tokens a request is this crate's choice, well inside what a local
    /// server answers before a client's timeout.
    pub fn ollama_embed() -> Self {
        Self::preset(512, 131_072)
    }

    /// Gemini `batchEmbedContents`: at most 100 requests in one batch (the API refuses more),
    /// each input at most 2048 tokens, so 204 800 tokens a batch.
    pub fn gemini_batch_embed() -> Self {
        Self::preset(100, 204_800)
    }

    /// The llama.cpp server's `/v1/embeddings` (or `/embedding`) with an array input: no bound
    /// on inputs, each input must fit the server's `--ubatch-size` (512 tokens by default);
    /// 256 inputs and 65 536 tokens a request is this crate's choice.
    pub fn llama_cpp_embeddings() -> Self {
        Self::preset(256, 65_536)
    }

    /// LLVM `POST /models/{id}/batch_infer {inputs}`: the protocol states no bound; 256 inputs
    /// and 300 000 tokens a request is this crate's choice.
    pub fn llvm_batch_infer() -> Self {
        Self::preset(256, 300_000)
    }
}
