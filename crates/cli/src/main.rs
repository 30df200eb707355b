//! The `infermux` command line: `demo` (the fault-injection demo: no keys, no network), `chat`
//! (an answer from a server of any provider, streamed or not, with its finish reason),
//! `models`, `embed` (texts embedded through the client's batcher) and `cache eval` (the
//! semantic tier's precision and recall on labelled pairs); with the feature `s3`, `s3` (model
//! storage: put, get, ls, rm, presign, sync, fetch). Errors print with their cause chain,
//! in red on a terminal unless `NO_COLOR`.
//!
//! `serve` runs an inference server in the foreground, launched and supervised by
//! `infermux-containers`.

/// `println!` that never panics on a closed stdout: `infermux s3 ls … | head -1` ends quietly
/// when the reader is gone, with the status a shell gives a program SIGPIPE ended (141), as
/// `ls | head -1` does; any other write error ends it with the error and status 1 (see
/// `checked_out`).
macro_rules! outln {
    () => {
        $crate::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics on a closed stdout (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

mod cache_eval;
mod conformance;
mod demo;
mod demo_cache;
#[cfg(feature = "s3")]
mod s3cmd;
mod serve;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, LazyLock};

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use infermux::config::{Parts, ProviderKind};
use infermux::{
    ChatRequest, Client, EndpointConfig, Error, ErrorKind, FinishReason, Message, Operation,
    Provider, StreamEvent, Usage,
};

#[derive(Parser)]
#[command(
    name = "infermux",
    version,
    about = "One resilient client for inference backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: a few hundred chat requests through the client against local simulators
    /// that inject faults, then a per-endpoint report. Needs no keys and no network.
    Demo(demo::DemoArgs),
    /// The response cache: `eval` measures the semantic tier on labelled pairs.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Replay a folder of recorded cassettes through the providers and report per interaction.
    Conformance(conformance::ConformanceArgs),
    /// Run an inference server in the foreground (TGI, TEI, vLLM, OVMS, llama.cpp or any
    /// command): its logs, a spinner until it is ready, restarts when it dies, Ctrl-C stops it.
    Serve(Box<serve::ServeArgs>),
    /// Ask a server for an answer (streamed unless `--no-stream`); the finish reason and token
    /// counts follow on stderr.
    Chat {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Model name (with `--config`: a model group).
        #[arg(long, default_value = "default")]
        model: String,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Output token limit.
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// Ask for the whole answer at once instead of a stream.
        #[arg(long)]
        no_stream: bool,
        /// The prompt.
        prompt: String,
    },
    /// Embed texts (the arguments, else one per line of stdin): every text is its own call, all
    /// at once, and the client's batcher sends them as a few requests; one JSON vector per line
    /// on stdout, the batch counts on stderr.
    Embed {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Model name (with `--config`: a model group).
        #[arg(long, default_value = "default")]
        model: String,
        /// Most texts in one request [default: 64; with `--config`, its `[batching]`'s].
        #[arg(long)]
        max_batch: Option<usize>,
        /// Longest wait for more texts before a batch goes, in milliseconds [default: 5; with
        /// `--config`, its `[batching]`'s].
        #[arg(long)]
        max_wait_ms: Option<u64>,
        /// The texts; without them, stdin's lines.
        texts: Vec<String>,
    },
    /// List the models of a server (with `--config`: each model group and its deployments).
    Models {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// S3-compatible model storage (built with the feature `s3`): put, get, ls, rm, presign,
    /// sync a model folder up, fetch one down.
    #[cfg(feature = "s3")]
    S3(s3cmd::S3Args),
}

/// `infermux cache …`.
#[derive(Subcommand)]
enum CacheCommand {
    /// Run the semantic tier as the cache does (local all-MiniLM-L6-v2, candidate floor,
    /// default verifier) over labelled pairs: precision, recall, the threshold and the counts.
    Eval(cache_eval::EvalArgs),
}

/// Where and how to reach the server.
#[derive(Args)]
struct EndpointArgs {
    /// An infermux.toml (see docs/config.md): its endpoints, keys, groups and fallbacks, with
    /// `--model` naming a group. Replaces --base-url, --provider and --api-key-env.
    #[arg(long, conflicts_with_all = ["base_url", "provider", "api_key_env"])]
    config: Option<std::path::PathBuf>,
    /// Base URL, e.g. http://127.0.0.1:8080/v1. Without it: $INFERMUX_BASE_URL (whose server
    /// gets $INFERMUX_API_KEY, never the provider's own key), then the provider's own
    /// variable (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, OLLAMA_HOST…), then the provider's
    /// default URL when it has one.
    #[arg(long)]
    base_url: Option<String>,
    /// The provider (the protocol the server speaks).
    #[arg(long, value_enum, default_value = "openai-compat")]
    provider: ProviderArg,
    /// Environment variable holding the API key. Without it, the provider's own variable is
    /// read (required for hosted APIs, optional for local servers); see --help for each
    /// provider's variable and header.
    #[arg(long, long_help = api_key_env_help())]
    api_key_env: Option<String>,
}

/// `--provider`: a [`ProviderKind`], with clap's value list and typo suggestions.
#[derive(Clone, Copy)]
struct ProviderArg(ProviderKind);

static PROVIDERS: LazyLock<Vec<ProviderArg>> =
    LazyLock::new(|| ProviderKind::ALL.iter().copied().map(ProviderArg).collect());

impl ValueEnum for ProviderArg {
    fn value_variants<'a>() -> &'a [Self] {
        &PROVIDERS
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

/// The long help of `--api-key-env`: each provider's default variable and the header its key
/// goes in.
fn api_key_env_help() -> String {
    let mut help = String::from(
        "Environment variable holding the API key. Without this flag, the provider's own \
         variable is read: required for hosted APIs (openai, groq, anthropic, gemini), optional \
         for local servers. A server named by INFERMUX_BASE_URL gets INFERMUX_API_KEY instead \
         (required where the provider's own key is). The key is sent only to the base URL's \
         origin.\n",
    );
    for p in ProviderKind::ALL {
        let vars = match p.api_key_envs() {
            [] => "none".to_owned(),
            vars => vars.join(" or "),
        };
        let required = if p.requires_key() { ", required" } else { "" };
        help.push_str(&format!(
            "\n  {:<14} {} (sent as {}{required})",
            p.as_str(),
            vars,
            p.key_header()
        ));
    }
    help
}

/// The base URL: the flag, `INFERMUX_BASE_URL`, the provider's own variable, the provider's
/// default; an error naming them when there is none. Whether it came from
/// `INFERMUX_BASE_URL`: a server that variable names gets `INFERMUX_API_KEY`, never the
/// provider's own key (`ANTHROPIC_API_KEY` is for Anthropic, not for whatever server a
/// variable left set in the shell names).
fn base_url(provider: ProviderKind, flag: Option<String>) -> infermux::Result<(String, bool)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(url) = flag {
        return Ok((url, false));
    }
    if let Some(url) = var("INFERMUX_BASE_URL") {
        return Ok((url, true));
    }
    if let Some(name) = provider.base_url_env()
        && let Some(url) = var(name)
    {
        let url = match provider {
            // OLLAMA_HOST is a host[:port] as often as a URL
            ProviderKind::Ollama => infermux::ollama::normalize_host(&url),
            // ANTHROPIC_BASE_URL follows the SDKs: without `/v1`
            ProviderKind::Anthropic => infermux::anthropic::base_url_from_env_value(&url),
            _ => url,
        };
        return Ok((url, false));
    }
    if let Some(url) = provider.default_base_url() {
        return Ok((url.to_owned(), false));
    }
    let mut vars = vec!["INFERMUX_BASE_URL"];
    vars.extend(provider.base_url_env());
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "no base URL for provider {provider}: pass --base-url or set {}",
            vars.join(" or ")
        ),
    ))
}

fn client(args: EndpointArgs) -> infermux::Result<Client> {
    client_batching(args, |_| Ok(None))
}

/// The client `args` describe, batching embedding calls as `batching` says, given the config
/// file's `[batching]` (`None` without a file or the section).
fn client_batching(
    args: EndpointArgs,
    batching: impl FnOnce(
        Option<infermux::batching::BatchConfig>,
    ) -> infermux::Result<Option<infermux::batching::BatchConfig>>,
) -> infermux::Result<Client> {
    if let Some(path) = &args.config {
        let mut config = infermux::config::Config::from_path_for(path, Parts::Inference)?;
        config.batching = batching(config.batching.take())?;
        return Client::from_config(&config);
    }
    let batching = batching(None)?;
    let provider = args.provider.0;
    let (url, generic) = base_url(provider, args.base_url)?;
    let mut cfg = EndpointConfig::new("cli", url)?;
    cfg = match args.api_key_env.as_deref() {
        Some(var) => cfg.with_api_key_from_env(var)?,
        None if provider.requires_key() && generic => {
            cfg.with_api_key_from_env("INFERMUX_API_KEY").map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "provider {provider} at INFERMUX_BASE_URL needs a key: {} (its own \
                         variables go only to its own URL); or pass --api-key-env VAR",
                        e.message()
                    ),
                )
            })?
        }
        None if generic => cfg.with_optional_api_key_from_env(&["INFERMUX_API_KEY"]),
        None if provider.requires_key() => cfg
            .with_api_key_from_any_env(provider.api_key_envs())
            .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "provider {provider} needs a key: {}; or pass --api-key-env VAR",
                    e.message()
                ),
            )
        })?,
        None => {
            let envs = provider.api_key_envs_for(&cfg.base_url);
            cfg.with_optional_api_key_from_env(envs)
        }
    };
    let provider: Arc<dyn Provider> = provider.provider(cfg)?;
    let mut builder = Client::builder().shared_provider(provider);
    if let Some(b) = batching {
        builder = builder.batch_embeddings(b);
    }
    builder.build()
}

/// `infermux embed`: every text its own call, batched by the client.
async fn embed(
    endpoint: EndpointArgs,
    model: String,
    max_batch: Option<usize>,
    max_wait_ms: Option<u64>,
    mut texts: Vec<String>,
) -> infermux::Result<()> {
    if texts.is_empty() {
        texts = std::io::stdin()
            .lines()
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, "reading stdin").with_source(e))?;
        // vector N answers line N: a blank line cannot be skipped without shifting the rest
        if let Some(n) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "stdin line {} is blank: every line is one text, and output line N is the \
                     vector of input line N",
                    n + 1
                ),
            ));
        }
    }
    if texts.is_empty() {
        return Err(Error::new(ErrorKind::InvalidRequest, "no text to embed"));
    }
    let n = texts.len();
    // the flags win over the file's `[batching]`, which wins over the defaults; every text is
    // queued at once, so the queue holds them all
    let client = client_batching(endpoint, |from_file| {
        let mut b = from_file.unwrap_or_default();
        if let Some(m) = max_batch {
            b = b.with_max_items(m)?;
        }
        if let Some(ms) = max_wait_ms {
            b = b.with_max_wait(std::time::Duration::from_millis(ms))?;
        }
        let room = b.queue_capacity().max(n);
        b.with_queue_capacity(room).map(Some)
    })?;
    let calls = texts
        .iter()
        .map(|t| client.embed(infermux::EmbeddingRequest::new(&model, [t.as_str()])));
    let answers = futures_util::future::join_all(calls).await;
    let mut out = std::io::stdout().lock();
    let mut dim = 0;
    for a in answers {
        let a = a?;
        let v = a.embeddings.into_iter().next().unwrap_or_default();
        dim = v.len();
        checked_out(writeln!(
            out,
            "{}",
            serde_json::to_string(&v).unwrap_or_default()
        ));
    }
    checked_out(out.flush());
    match client.batch_stats() {
        Some(s) => eprintln!(
            "[{} texts, dimension {dim}: {} requests, {} batched inputs, {} duplicates sent once]",
            texts.len(),
            s.batches,
            s.items,
            s.dedup_hits
        ),
        None => eprintln!("[{} texts, dimension {dim}]", texts.len()),
    }
    Ok(())
}

/// `[finish: stop, 12 tokens in, 34 out]`, for stderr after the answer.
fn finish_line(reason: Option<&FinishReason>, usage: Option<&Usage>) -> String {
    let mut line = format!("[finish: {}", reason.map_or("unknown", |r| r.as_str()));
    if let Some(u) = usage {
        line.push_str(&format!(
            ", {} tokens in, {} out",
            u.input_tokens, u.output_tokens
        ));
    }
    line.push(']');
    line
}

async fn chat(
    endpoint: EndpointArgs,
    model: String,
    system: Option<String>,
    max_tokens: u32,
    no_stream: bool,
    prompt: String,
) -> infermux::Result<()> {
    let client = client(endpoint)?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(prompt));
    let request = ChatRequest::new(model, messages).with_max_tokens(max_tokens);
    // a protocol without streaming (LLVM) answers in one piece too; with several endpoints
    // (`--config`) the group's own may not stream, which its `Unsupported` says
    let streamed = if no_stream || !client.capabilities().supports(Operation::ChatStream) {
        None
    } else {
        match client
            .open_stream(
                &infermux::Request::Chat(request.clone()),
                infermux::RequestContext::new(),
            )
            .await
        {
            Err(e) if e.kind() == ErrorKind::Unsupported => None,
            other => Some(other?),
        }
    };
    let Some(opened) = streamed else {
        let answer = client.chat(request).await?;
        outln!("{}", answer.text());
        eprintln!(
            "{}",
            finish_line(answer.finish_reason.as_ref(), answer.usage.as_ref())
        );
        if let Some(s) = &answer.served {
            eprintln!("[served by {s}]");
        }
        if let Some(hit) = &answer.cache {
            eprintln!("[{hit}]");
        }
        return Ok(());
    };
    let (mut stream, served, cache) = (opened.events, opened.served, opened.cache);
    let mut out = std::io::stdout().lock();
    let (mut reason, mut usage) = (None, None);
    while let Some(ev) = stream.next().await {
        match ev? {
            StreamEvent::TextDelta { text } | StreamEvent::RefusalDelta { text } => {
                checked_out(write!(out, "{text}"));
                checked_out(out.flush());
            }
            StreamEvent::ToolCallDelta {
                name: Some(name), ..
            } => {
                checked_out(write!(out, "\n[tool call: {name}]"));
            }
            StreamEvent::Usage(u) => usage = Some(u),
            StreamEvent::Done { finish_reason } => reason = finish_reason,
            _ => {}
        }
    }
    checked_out(writeln!(out));
    checked_out(out.flush());
    eprintln!("{}", finish_line(reason.as_ref(), usage.as_ref()));
    if let Some(s) = &served {
        eprintln!("[served by {s}]");
    }
    if let Some(hit) = &cache {
        eprintln!("[{hit}]");
    }
    Ok(())
}

/// `models --config`: each group with its deployments (endpoint/model); without groups, the
/// one implicit group that takes every model on every endpoint.
fn list_groups(path: &std::path::Path) -> infermux::Result<()> {
    let config = infermux::config::Config::from_path_for(path, Parts::Inference)?;
    config.check_has_endpoints()?;
    if config.groups.is_empty() {
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| format!("{}/*", e.name))
            .collect();
        outln!(
            "(no [[group]]: every model goes to) {}",
            endpoints.join(", ")
        );
    }
    for g in &config.groups {
        let deployments: Vec<String> = g
            .deployments
            .iter()
            .map(|d| format!("{}/{}", d.endpoint, d.model))
            .collect();
        outln!("{}: {}", g.name, deployments.join(", "));
    }
    Ok(())
}

/// Writes to stdout; a reader that went away (`BrokenPipe`) ends the program quietly with
/// status 141 (128 + SIGPIPE): what a shell reports for `ls | head`, so a pipeline with
/// `pipefail` still sees that the program did not finish.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    checked_out(out.write_fmt(args));
}

/// Ends the program when writing its output failed: quietly with status 141 when the reader
/// went away (see [`write_out`]), with the error and status 1 otherwise (a full disk, a closed
/// file): output lost is never a success.
pub(crate) fn checked_out(r: std::io::Result<()>) {
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// `error: …` and one `caused by: …` line per source, `error` in red when stderr is a
/// terminal and `NO_COLOR` is not set.
fn report(e: &(dyn std::error::Error + 'static), color: bool) -> String {
    let mut text = if color {
        format!("\x1b[1;31merror\x1b[0m: {e}")
    } else {
        format!("error: {e}")
    };
    let mut said = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        // a message that ends with its cause's words (`cannot read f: No such file…`) has
        // said it: not printed twice
        if !said.ends_with(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        said = cause;
        source = s.source();
    }
    text
}

/// Colour on stderr: only on a terminal, and never when `NO_COLOR` is set to anything.
fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Conformance(args) => conformance::run(args).await,
        Command::Cache(CacheCommand::Eval(args)) => {
            tokio::task::spawn_blocking(move || cache_eval::run(args))
                .await
                .unwrap_or_else(|e| Err(Error::new(ErrorKind::Unavailable, e.to_string())))
        }
        Command::Chat {
            endpoint,
            model,
            system,
            max_tokens,
            no_stream,
            prompt,
        } => chat(endpoint, model, system, max_tokens, no_stream, prompt).await,
        Command::Embed {
            endpoint,
            model,
            max_batch,
            max_wait_ms,
            texts,
        } => embed(endpoint, model, max_batch, max_wait_ms, texts).await,
        #[cfg(feature = "s3")]
        Command::S3(args) => s3cmd::run(args).await,
        Command::Models { endpoint } => {
            async {
                if let Some(path) = &endpoint.config {
                    return list_groups(path);
                }
                for m in client(endpoint)?.models().await?.models {
                    outln!("{}", m.id);
                }
                Ok(())
            }
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e, stderr_color()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_walks_the_cause_chain_and_colours_only_when_asked() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let e = Error::new(ErrorKind::Connect, "connect to x").with_source(io);
        assert_eq!(
            report(&e, false),
            "error: connect: connect to x\n  caused by: refused by peer"
        );
        assert_eq!(
            report(&e, true),
            "\x1b[1;31merror\x1b[0m: connect: connect to x\n  caused by: refused by peer"
        );
        // a message that already ends with its cause's words is not followed by them again
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = Error::new(ErrorKind::Config, "cannot read f.toml: No such file").with_source(io);
        assert_eq!(
            report(&e, false),
            "error: config: cannot read f.toml: No such file"
        );
    }

    #[test]
    fn finish_line_names_the_reason_and_the_tokens() {
        let mut usage = Usage::default();
        usage.input_tokens = 12;
        usage.output_tokens = 34;
        assert_eq!(
            finish_line(Some(&FinishReason::Stop), Some(&usage)),
            "[finish: stop, 12 tokens in, 34 out]"
        );
        assert_eq!(finish_line(None, None), "[finish: unknown]");
    }
}
