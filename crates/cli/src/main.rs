//! The `infermux` command line: `demo` (the fault-injection demo: no keys, no network), `chat`
//! (stream an answer from any OpenAI-compatible server) and `models`.

mod conformance;
mod demo;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use infermux::openai_compat::OpenAiCompat;
use infermux::{ChatRequest, Client, EndpointConfig, Message, Operation, Provider, StreamEvent};
use std::sync::Arc;

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
    /// Replay a folder of recorded cassettes through the providers and report per interaction.
    Conformance(conformance::ConformanceArgs),
    /// Stream an answer from a server (OpenAI-compatible unless `--provider` says otherwise).
    Chat {
        /// Base URL, e.g. http://127.0.0.1:8080/v1 (see `--provider` for what each expects).
        #[arg(long)]
        base_url: String,
        /// The provider: openai-compat, openai, groq, vllm, opea, anthropic, gemini, ollama,
        /// hf-tgi, hf-tei, ovms or llvm.
        #[arg(long, default_value = "openai-compat")]
        provider: String,
        /// Model name.
        #[arg(long, default_value = "default")]
        model: String,
        /// Environment variable holding the API key (sent as a Bearer token).
        #[arg(long)]
        api_key_env: Option<String>,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Output token limit.
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// The prompt.
        prompt: String,
    },
    /// List the models of a server.
    Models {
        /// Base URL including the version prefix.
        #[arg(long)]
        base_url: String,
        /// The provider (as for `chat`).
        #[arg(long, default_value = "openai-compat")]
        provider: String,
        /// Environment variable holding the API key.
        #[arg(long)]
        api_key_env: Option<String>,
    },
}

/// The provider named `name` for `cfg` (each sends the key the way its API wants).
fn provider_for(name: &str, cfg: EndpointConfig) -> infermux::Result<Arc<dyn Provider>> {
    Ok(match name {
        "openai-compat" => Arc::new(OpenAiCompat::new(cfg)?),
        "openai" => Arc::new(infermux::openai::OpenAi::new(cfg)?),
        "groq" => Arc::new(infermux::groq::Groq::new(cfg)?),
        "vllm" => Arc::new(infermux::vllm::Vllm::new(cfg)?),
        "opea" => Arc::new(infermux::opea::Opea::new(cfg)?),
        "anthropic" => Arc::new(infermux::anthropic::Anthropic::new(cfg)?),
        "gemini" => Arc::new(infermux::gemini::Gemini::new(cfg)?),
        "ollama" => Arc::new(infermux::ollama::Ollama::new(cfg)?),
        "hf-tgi" => Arc::new(infermux::hf_tgi::HfTgi::new(cfg)?),
        "hf-tei" => Arc::new(infermux::hf_tei::HfTei::new(cfg)?),
        "ovms" => Arc::new(infermux::ovms::Ovms::new(cfg)?),
        "llvm" => Arc::new(infermux::llvm::Llvm::new(cfg)?),
        other => {
            return Err(infermux::Error::new(
                infermux::ErrorKind::Config,
                format!("unknown provider {other:?}"),
            ));
        }
    })
}

fn client(provider: &str, base_url: &str, api_key_env: Option<&str>) -> infermux::Result<Client> {
    let mut cfg = EndpointConfig::new("cli", base_url)?;
    if let Some(var) = api_key_env {
        cfg = cfg.with_api_key_from_env(var)?;
    }
    Client::builder()
        .shared_provider(provider_for(provider, cfg)?)
        .build()
}

async fn chat(
    provider: &str,
    base_url: &str,
    model: String,
    key: Option<&str>,
    system: Option<String>,
    max_tokens: u32,
    prompt: String,
) -> infermux::Result<()> {
    let client = client(provider, base_url, key)?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::system(s));
    }
    if !client
        .stack()
        .capabilities()
        .supports(Operation::ChatStream)
    {
        // a protocol without streaming (LLVM): one plain answer
        let answer = client
            .chat(
                ChatRequest::new(model, {
                    messages.push(Message::user(prompt));
                    messages
                })
                .with_max_tokens(max_tokens),
            )
            .await?;
        println!("{}", answer.text());
        return Ok(());
    }
    messages.push(Message::user(prompt));
    let mut stream = client
        .stream_chat(ChatRequest::new(model, messages).with_max_tokens(max_tokens))
        .await?;
    let mut out = std::io::stdout().lock();
    while let Some(ev) = stream.next().await {
        match ev? {
            StreamEvent::TextDelta { text } | StreamEvent::RefusalDelta { text } => {
                let _ = write!(out, "{text}");
                let _ = out.flush();
            }
            StreamEvent::ToolCallDelta {
                name: Some(name), ..
            } => {
                let _ = write!(out, "\n[tool call: {name}]");
            }
            StreamEvent::Usage(u) => {
                eprintln!("\n[{} tokens in, {} out]", u.input_tokens, u.output_tokens);
            }
            _ => {}
        }
    }
    let _ = writeln!(out);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Conformance(args) => conformance::run(args).await,
        Command::Chat {
            base_url,
            provider,
            model,
            api_key_env,
            system,
            max_tokens,
            prompt,
        } => {
            chat(
                &provider,
                &base_url,
                model,
                api_key_env.as_deref(),
                system,
                max_tokens,
                prompt,
            )
            .await
        }
        Command::Models {
            base_url,
            provider,
            api_key_env,
        } => {
            async {
                for m in client(&provider, &base_url, api_key_env.as_deref())?
                    .models()
                    .await?
                    .models
                {
                    println!("{}", m.id);
                }
                Ok(())
            }
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
