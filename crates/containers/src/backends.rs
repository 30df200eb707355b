//! Typed specs of the inference servers infermux talks to, with their real command-line flags:
//! [`TgiSpec`], [`TeiSpec`], [`VllmSpec`], [`OvmsSpec`] and [`LlamaCppSpec`]. Each turns into a
//! [`ServerSpec`] (its program, flags, readiness route and default image) to which the
//! environment, GPUs, memory and volumes are added.
//!
//! Only flags the caller set are written, and the listening address: a server launched as a
//! process listens on `127.0.0.1` (TGI's, TEI's, vLLM's and OVMS's defaults are every
//! interface; an inference server has no authentication of its own), one in a container on
//! every interface of the container (its port is published where the probes look: the host's
//! loopback unless another address is asked). The
//! servers' own defaults apply otherwise (the `DEFAULT_*` constants state them, as
//! documented by each project).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::spec::ServerSpec;

fn push_opt(args: &mut Vec<String>, flag: &str, v: Option<impl ToString>) {
    if let Some(v) = v {
        args.push(flag.to_owned());
        args.push(v.to_string());
    }
}

fn not_empty(what: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        Err(Error::Config(format!("{what} is empty")))
    } else {
        Ok(())
    }
}

/// Where a server launched as a process listens: this machine only (an inference server has
/// no authentication of its own).
const LOOPBACK: &str = "127.0.0.1";
/// Where a server in a container listens: every interface of the container (the Docker
/// launcher publishes its port on the spec's host: the host's loopback unless asked).
const EVERY_INTERFACE: &str = "0.0.0.0";
/// TGI's `--quantize` values (unknown ones kept as [`Quantize::Other`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quantize {
    /// `awq`
    Awq,
    /// `eetq`
    Eetq,
    /// `gptq`
    Gptq,
    /// `bitsandbytes`
    Bitsandbytes,
    /// `bitsandbytes-nf4`
    BitsandbytesNf4,
    /// `bitsandbytes-fp4`
    BitsandbytesFp4,
    /// `fp8`
    Fp8,
    /// `marlin`
    Marlin,
    /// Another value, written as is.
    Other(String),
}

impl Quantize {
    /// The flag's value.
    pub fn as_str(&self) -> &str {
        match self {
            Quantize::Awq => "awq",
            Quantize::Eetq => "eetq",
            Quantize::Gptq => "gptq",
            Quantize::Bitsandbytes => "bitsandbytes",
            Quantize::BitsandbytesNf4 => "bitsandbytes-nf4",
            Quantize::BitsandbytesFp4 => "bitsandbytes-fp4",
            Quantize::Fp8 => "fp8",
            Quantize::Marlin => "marlin",
            Quantize::Other(s) => s,
        }
    }
}

/// Hugging Face Text Generation Inference: `text-generation-launcher --model-id M --port P
/// [--max-input-tokens N] [--max-total-tokens N] [--quantize Q]`, ready on `/health`.
///
/// TGI 2 renamed `--max-input-length` to `--max-input-tokens` (the old name is still accepted);
/// [`TgiSpec::max_input_length`] sets the current flag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TgiSpec {
    /// `--model-id`: a Hub id or a local folder.
    pub model_id: String,
    /// `--port` (TGI's default 3000; the image's `PORT` is 80, the flag wins).
    pub port: u16,
    /// `--max-input-tokens`.
    pub max_input_tokens: Option<u32>,
    /// `--max-total-tokens`.
    pub max_total_tokens: Option<u32>,
    /// `--quantize`.
    pub quantize: Option<Quantize>,
    /// Further arguments, appended as given.
    pub extra_args: Vec<String>,
}

impl TgiSpec {
    /// The launcher's program.
    pub const PROGRAM: &'static str = "text-generation-launcher";
    /// TGI's default port.
    pub const DEFAULT_PORT: u16 = 3000;
    /// Ready when this answers 200.
    pub const READINESS: &'static str = "/health";
    /// The default image.
    pub const DEFAULT_IMAGE: &'static str = "ghcr.io/huggingface/text-generation-inference:latest";

    /// `model_id` on the default port.
    pub fn new(model_id: impl Into<String>) -> Self {
        TgiSpec {
            model_id: model_id.into(),
            port: Self::DEFAULT_PORT,
            max_input_tokens: None,
            max_total_tokens: None,
            quantize: None,
            extra_args: Vec::new(),
        }
    }
    /// The port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// `--max-input-tokens` (formerly `--max-input-length`).
    pub fn max_input_length(mut self, n: u32) -> Self {
        self.max_input_tokens = Some(n);
        self
    }
    /// `--max-total-tokens`.
    pub fn max_total_tokens(mut self, n: u32) -> Self {
        self.max_total_tokens = Some(n);
        self
    }
    /// `--quantize`.
    pub fn quantize(mut self, q: Quantize) -> Self {
        self.quantize = Some(q);
        self
    }
    /// The arguments after the program (on the loopback interface: TGI's default,
    /// `0.0.0.0` or `$HOSTNAME`, is every interface or the pod's address).
    pub fn args(&self) -> Vec<String> {
        self.args_on(LOOPBACK)
    }
    /// The image's arguments: every interface of the container, so its port publishes.
    pub fn image_args(&self) -> Vec<String> {
        self.args_on(EVERY_INTERFACE)
    }
    fn args_on(&self, host: &str) -> Vec<String> {
        let mut a = vec![
            "--model-id".to_owned(),
            self.model_id.clone(),
            "--hostname".to_owned(),
            host.to_owned(),
            "--port".to_owned(),
            self.port.to_string(),
        ];
        push_opt(&mut a, "--max-input-tokens", self.max_input_tokens);
        push_opt(&mut a, "--max-total-tokens", self.max_total_tokens);
        push_opt(
            &mut a,
            "--quantize",
            self.quantize.as_ref().map(Quantize::as_str),
        );
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// The server spec named `name` (a [`Error::Config`] for an empty model id or a bad
    /// name/port).
    pub fn server_spec(&self, name: &str) -> Result<ServerSpec> {
        not_empty("the model id", &self.model_id)?;
        if let (Some(i), Some(t)) = (self.max_input_tokens, self.max_total_tokens)
            && i >= t
        {
            return Err(Error::Config(format!(
                "--max-input-tokens {i} must be below --max-total-tokens {t}"
            )));
        }
        Ok(
            ServerSpec::new(name, Self::PROGRAM, self.port, Self::READINESS)?
                .with_args(self.args())
                .with_image(Self::DEFAULT_IMAGE)
                .with_image_args(self.image_args())
                // (`--api-key`'s variable: the key the server then requires, as the user set it)
                .with_env_kept("API_KEY"),
        )
    }
}

/// Hugging Face Text Embeddings Inference: `text-embeddings-router --model-id M --port P
/// [--max-client-batch-size N] [--max-batch-tokens N]`, ready on `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TeiSpec {
    /// `--model-id`.
    pub model_id: String,
    /// `--port` (TEI's default 3000).
    pub port: u16,
    /// `--max-client-batch-size` (TEI's default 32).
    pub max_client_batch_size: Option<u32>,
    /// `--max-batch-tokens` (TEI's default 16384).
    pub max_batch_tokens: Option<u32>,
    /// Further arguments.
    pub extra_args: Vec<String>,
}

impl TeiSpec {
    /// The router's program.
    pub const PROGRAM: &'static str = "text-embeddings-router";
    /// TEI's default port.
    pub const DEFAULT_PORT: u16 = 3000;
    /// TEI's default `--max-client-batch-size`.
    pub const DEFAULT_MAX_CLIENT_BATCH_SIZE: u32 = 32;
    /// TEI's default `--max-batch-tokens`.
    pub const DEFAULT_MAX_BATCH_TOKENS: u32 = 16384;
    /// Ready when this answers 200.
    pub const READINESS: &'static str = "/health";
    /// The default image (CPU build).
    pub const DEFAULT_IMAGE: &'static str =
        "ghcr.io/huggingface/text-embeddings-inference:cpu-latest";

    /// `model_id` on the default port.
    pub fn new(model_id: impl Into<String>) -> Self {
        TeiSpec {
            model_id: model_id.into(),
            port: Self::DEFAULT_PORT,
            max_client_batch_size: None,
            max_batch_tokens: None,
            extra_args: Vec::new(),
        }
    }
    /// The port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// `--max-client-batch-size`.
    pub fn max_client_batch_size(mut self, n: u32) -> Self {
        self.max_client_batch_size = Some(n);
        self
    }
    /// `--max-batch-tokens`.
    pub fn max_batch_tokens(mut self, n: u32) -> Self {
        self.max_batch_tokens = Some(n);
        self
    }
    /// The arguments after the program (on the loopback interface: TEI's default,
    /// `0.0.0.0` or `$HOSTNAME`, is every interface or the pod's address).
    pub fn args(&self) -> Vec<String> {
        self.args_on(LOOPBACK)
    }
    /// The image's arguments: every interface of the container, so its port publishes.
    pub fn image_args(&self) -> Vec<String> {
        self.args_on(EVERY_INTERFACE)
    }
    fn args_on(&self, host: &str) -> Vec<String> {
        let mut a = vec![
            "--model-id".to_owned(),
            self.model_id.clone(),
            "--hostname".to_owned(),
            host.to_owned(),
            "--port".to_owned(),
            self.port.to_string(),
        ];
        push_opt(
            &mut a,
            "--max-client-batch-size",
            self.max_client_batch_size,
        );
        push_opt(&mut a, "--max-batch-tokens", self.max_batch_tokens);
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// The server spec named `name`.
    pub fn server_spec(&self, name: &str) -> Result<ServerSpec> {
        not_empty("the model id", &self.model_id)?;
        if self.max_client_batch_size == Some(0) || self.max_batch_tokens == Some(0) {
            return Err(Error::Config("a TEI batch limit is 0".into()));
        }
        Ok(
            ServerSpec::new(name, Self::PROGRAM, self.port, Self::READINESS)?
                .with_args(self.args())
                .with_image(Self::DEFAULT_IMAGE)
                .with_image_args(self.image_args())
                // (`--api-key`'s variable: the key the server then requires, as the user set it)
                .with_env_kept("API_KEY"),
        )
    }
}

/// vLLM's OpenAI-compatible server: `vllm serve MODEL --port P [--enable-lora --lora-modules
/// name=path …]`, ready on `/health`. In a container (the `vllm/vllm-openai` image) the model
/// is given as `--model MODEL`, which both its entrypoints accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VllmSpec {
    /// The model (a Hub id or a folder).
    pub model: String,
    /// `--port` (vLLM's default 8000).
    pub port: u16,
    /// `--enable-lora` (set by any LoRA module too).
    pub enable_lora: bool,
    /// `--lora-modules name=path …`.
    pub lora_modules: Vec<(String, String)>,
    /// Further arguments.
    pub extra_args: Vec<String>,
}

impl VllmSpec {
    /// The program (`vllm serve`).
    pub const PROGRAM: &'static str = "vllm";
    /// The variable vLLM reads its API key from (then required of every `/v1` call).
    pub const API_KEY_ENV: &'static str = "VLLM_API_KEY";
    /// vLLM's default port.
    pub const DEFAULT_PORT: u16 = 8000;
    /// Ready when this answers 200.
    pub const READINESS: &'static str = "/health";
    /// The default image.
    pub const DEFAULT_IMAGE: &'static str = "vllm/vllm-openai:latest";

    /// `model` on the default port.
    pub fn new(model: impl Into<String>) -> Self {
        VllmSpec {
            model: model.into(),
            port: Self::DEFAULT_PORT,
            enable_lora: false,
            lora_modules: Vec::new(),
            extra_args: Vec::new(),
        }
    }
    /// The port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// `--enable-lora`.
    pub fn enable_lora(mut self) -> Self {
        self.enable_lora = true;
        self
    }
    /// A LoRA adapter served from the start (`--lora-modules name=path`; enables LoRA).
    pub fn lora_module(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        self.enable_lora = true;
        self.lora_modules.push((name.into(), path.into()));
        self
    }
    fn flags(&self, host: &str) -> Vec<String> {
        let mut a = vec![
            "--host".to_owned(),
            host.to_owned(),
            "--port".to_owned(),
            self.port.to_string(),
        ];
        if self.enable_lora || !self.lora_modules.is_empty() {
            a.push("--enable-lora".to_owned());
        }
        if !self.lora_modules.is_empty() {
            a.push("--lora-modules".to_owned());
            a.extend(self.lora_modules.iter().map(|(n, p)| format!("{n}={p}")));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// The arguments after `vllm`: `serve MODEL --host 127.0.0.1 --port P …` (vLLM's
    /// default is every interface).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["serve".to_owned(), self.model.clone()];
        a.extend(self.flags(LOOPBACK));
        a
    }
    /// The image's arguments: `--model MODEL --host 0.0.0.0 --port P …` (every interface of
    /// the container, so its port publishes).
    pub fn image_args(&self) -> Vec<String> {
        let mut a = vec!["--model".to_owned(), self.model.clone()];
        a.extend(self.flags(EVERY_INTERFACE));
        a
    }
    /// The server spec named `name`.
    pub fn server_spec(&self, name: &str) -> Result<ServerSpec> {
        not_empty("the model", &self.model)?;
        for (n, p) in &self.lora_modules {
            if n.is_empty() || p.is_empty() || n.contains('=') {
                return Err(Error::Config(format!(
                    "a LoRA module is `name=path` with neither empty, not `{n}={p}`"
                )));
            }
        }
        Ok(
            ServerSpec::new(name, Self::PROGRAM, self.port, Self::READINESS)?
                .with_args(self.args())
                .with_image(Self::DEFAULT_IMAGE)
                .with_image_args(self.image_args())
                // the key vLLM then requires of callers (the client bound to it sends it)
                .with_env_kept(Self::API_KEY_ENV),
        )
    }
}

/// What an OpenVINO Model Server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OvmsModels {
    /// `--config_path FILE`: any number of models and pipelines.
    Config(PathBuf),
    /// `--model_path PATH --model_name NAME`: one model.
    Model {
        /// `--model_path`.
        path: String,
        /// `--model_name`.
        name: String,
    },
}

/// OpenVINO Model Server: `ovms --rest_port P [--port G] (--config_path F | --model_path P
/// --model_name N)`, ready on `/v2/health/ready` (KServe v2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OvmsSpec {
    /// The models.
    pub models: OvmsModels,
    /// `--rest_port`.
    pub rest_port: u16,
    /// `--port` (gRPC), when wanted.
    pub grpc_port: Option<u16>,
    /// Further arguments.
    pub extra_args: Vec<String>,
}

impl OvmsSpec {
    /// The program.
    pub const PROGRAM: &'static str = "ovms";
    /// The REST port used when none is given (the documentation's examples).
    pub const DEFAULT_REST_PORT: u16 = 8000;
    /// Ready when this answers 200.
    pub const READINESS: &'static str = "/v2/health/ready";
    /// The default image.
    pub const DEFAULT_IMAGE: &'static str = "openvino/model_server:latest";

    /// Serves the models of a config file.
    pub fn config(path: impl Into<PathBuf>) -> Self {
        Self::with(OvmsModels::Config(path.into()))
    }
    /// Serves one model.
    pub fn model(path: impl Into<String>, name: impl Into<String>) -> Self {
        Self::with(OvmsModels::Model {
            path: path.into(),
            name: name.into(),
        })
    }
    fn with(models: OvmsModels) -> Self {
        OvmsSpec {
            models,
            rest_port: Self::DEFAULT_REST_PORT,
            grpc_port: None,
            extra_args: Vec::new(),
        }
    }
    /// `--rest_port`.
    pub fn rest_port(mut self, port: u16) -> Self {
        self.rest_port = port;
        self
    }
    /// `--port` (gRPC).
    pub fn grpc_port(mut self, port: u16) -> Self {
        self.grpc_port = Some(port);
        self
    }
    /// The arguments after the program (REST on the loopback interface: OVMS's default is
    /// every interface).
    pub fn args(&self) -> Vec<String> {
        self.args_on(LOOPBACK)
    }
    /// The image's arguments: every interface of the container, so its port publishes.
    pub fn image_args(&self) -> Vec<String> {
        self.args_on(EVERY_INTERFACE)
    }
    fn args_on(&self, host: &str) -> Vec<String> {
        let mut a = vec![
            "--rest_bind_address".to_owned(),
            host.to_owned(),
            "--rest_port".to_owned(),
            self.rest_port.to_string(),
        ];
        push_opt(&mut a, "--port", self.grpc_port);
        match &self.models {
            OvmsModels::Config(p) => {
                a.push("--config_path".to_owned());
                a.push(p.display().to_string());
            }
            OvmsModels::Model { path, name } => {
                a.extend([
                    "--model_path".to_owned(),
                    path.clone(),
                    "--model_name".to_owned(),
                    name.clone(),
                ]);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// The server spec named `name`.
    pub fn server_spec(&self, name: &str) -> Result<ServerSpec> {
        match &self.models {
            OvmsModels::Config(p) => not_empty("the config path", &p.display().to_string())?,
            OvmsModels::Model { path, name } => {
                not_empty("the model path", path)?;
                not_empty("the model name", name)?;
            }
        }
        if self.grpc_port == Some(self.rest_port) {
            return Err(Error::Config("the gRPC and REST ports are the same".into()));
        }
        Ok(
            ServerSpec::new(name, Self::PROGRAM, self.rest_port, Self::READINESS)?
                .with_args(self.args())
                .with_image(Self::DEFAULT_IMAGE)
                .with_image_args(self.image_args()),
        )
    }
}

/// llama.cpp's server: `llama-server -m MODEL --host H --port P [--embeddings] [--ctx-size N]
/// [--alias A]`, ready on `/health` (503 while the model loads, 200 once it serves).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlamaCppSpec {
    /// `-m`: the GGUF file (as the server sees it).
    pub model: String,
    /// `--host` (llama-server's default 127.0.0.1).
    pub host: String,
    /// `--port` (llama-server's default 8080).
    pub port: u16,
    /// `--embeddings`.
    pub embeddings: bool,
    /// `--ctx-size` (default: the model's).
    pub ctx_size: Option<u32>,
    /// `--alias`: the model id the server reports.
    pub alias: Option<String>,
    /// Further arguments.
    pub extra_args: Vec<String>,
}

impl LlamaCppSpec {
    /// The program.
    pub const PROGRAM: &'static str = "llama-server";
    /// llama-server's default port.
    pub const DEFAULT_PORT: u16 = 8080;
    /// Ready when this answers 200.
    pub const READINESS: &'static str = "/health";
    /// The default image.
    pub const DEFAULT_IMAGE: &'static str = "ghcr.io/ggml-org/llama.cpp:server";

    /// `model` on 127.0.0.1 and the default port.
    pub fn new(model: impl Into<String>) -> Self {
        LlamaCppSpec {
            model: model.into(),
            host: "127.0.0.1".into(),
            port: Self::DEFAULT_PORT,
            embeddings: false,
            ctx_size: None,
            alias: None,
            extra_args: Vec::new(),
        }
    }
    /// The port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// `--host`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }
    /// `--embeddings`.
    pub fn embeddings(mut self) -> Self {
        self.embeddings = true;
        self
    }
    /// `--ctx-size`.
    pub fn ctx_size(mut self, n: u32) -> Self {
        self.ctx_size = Some(n);
        self
    }
    /// `--alias`.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }
    /// Appends further arguments.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
    /// The arguments after the program.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-m".to_owned(),
            self.model.clone(),
            "--host".to_owned(),
            self.host.clone(),
            "--port".to_owned(),
            self.port.to_string(),
        ];
        if self.embeddings {
            a.push("--embeddings".to_owned());
        }
        push_opt(&mut a, "--ctx-size", self.ctx_size);
        push_opt(&mut a, "--alias", self.alias.as_ref());
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// The server spec named `name` (its probes connect to the host, or to `127.0.0.1` / `::1`
    /// when it is `0.0.0.0` / `::`; in a container it listens on `0.0.0.0`).
    pub fn server_spec(&self, name: &str) -> Result<ServerSpec> {
        not_empty("the model", &self.model)?;
        not_empty("the host", &self.host)?;
        // every interface: probed on the loopback of its family
        let probe = match self.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" | "[::]" => "::1",
            host => host,
        };
        // in a container the server must listen on every interface for its port to publish
        let in_container = LlamaCppSpec {
            host: "0.0.0.0".into(),
            ..self.clone()
        };
        Ok(
            ServerSpec::new(name, Self::PROGRAM, self.port, Self::READINESS)?
                .with_args(self.args())
                .with_host(probe)
                .with_image(Self::DEFAULT_IMAGE)
                .with_image_args(in_container.args()),
        )
    }
}
