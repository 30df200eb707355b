//! `infermux serve tgi|tei|vllm|ovms|llama|cmd …`: launches one inference server in the
//! foreground (a child process, or with `--docker` a container), follows its logs, shows a
//! spinner until its readiness route answers, restarts it when it dies, and stops it cleanly
//! on Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use infermux::{Error, ErrorKind};
use infermux_containers::{
    Gpus, Launcher, LlamaCppSpec, LogBuffer, OvmsSpec, ProcessLauncher, Quantize, ServerSpec,
    State, Supervisor, SupervisorConfig, TeiSpec, TgiSpec, VllmSpec, Volume,
};
use tokio::sync::broadcast::error::RecvError;

/// `infermux serve` options shared by every backend (they come before the backend's name).
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The server's name (pid file, container name).
    #[arg(long)]
    name: Option<String>,
    /// Run the program through this command (split on spaces), e.g. `chroot
    /// --userspec=65534:65534 /srv/root`.
    #[arg(long)]
    wrapper: Option<String>,
    /// The program to run instead of the backend's own (a path, say).
    #[arg(long)]
    program: Option<String>,
    /// An environment variable for the server: `KEY=VALUE`, or `KEY` alone to pass this
    /// shell's value on (a token stays out of the command line, as with `docker -e KEY`)
    /// (repeatable). A process inherits this shell's environment except its secrets (names
    /// with the word KEY, SECRET, TOKEN or PASSWORD, AWS and S3 secrets, Redis URLs; the Hub's
    /// tokens go on), passed on only when named here.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// A folder `HOST:CONTAINER[:ro]` (repeatable; containers).
    #[arg(long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volumes: Vec<String>,
    /// GPUs: `all`, a count (1 or more), or device ids (`0,3` or `device=0,3`).
    #[arg(long)]
    gpus: Option<String>,
    /// A memory limit in bytes (containers).
    #[arg(long)]
    memory: Option<u64>,
    /// Seconds the server has to become ready.
    #[arg(long, default_value_t = 300)]
    ready_timeout: u64,
    /// Restarts before giving up.
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// Keep a pid file here, so the next start kills what a killed run left (default
    /// `$XDG_RUNTIME_DIR/infermux` when that folder is this user's alone).
    #[arg(long)]
    pid_dir: Option<PathBuf>,
    /// Run the backend's image with the Docker engine (`DOCKER_HOST` or the default socket).
    #[cfg(feature = "docker")]
    #[arg(long)]
    docker: bool,
    /// Another image than the backend's default.
    #[cfg(feature = "docker")]
    #[arg(long)]
    image: Option<String>,
    /// Fetch this model folder from S3 (`s3://bucket/prefix`) into `--fetch-dir` before the
    /// server starts, moving only what changed (one endpoint from $INFERMUX_S3_URL, else AWS
    /// in $AWS_REGION; keys from the AWS environment variables).
    #[cfg(feature = "s3")]
    #[arg(long, requires = "fetch_dir")]
    fetch: Option<String>,
    /// The local folder `--fetch` fills (point the backend's model flag into it).
    #[cfg(feature = "s3")]
    #[arg(long, requires = "fetch")]
    fetch_dir: Option<PathBuf>,
    /// The backend.
    #[command(subcommand)]
    backend: Backend,
}

/// `--fetch`: the model folder from S3 before anything starts; a failure stops here.
#[cfg(feature = "s3")]
async fn fetch_model(args: &ServeArgs) -> Result<(), Error> {
    use infermux::s3::{S3Config, S3Credentials, S3EndpointConfig, S3Kit};
    let (Some(url), Some(dir)) = (&args.fetch, &args.fetch_dir) else {
        return Ok(());
    };
    let (bucket, prefix) = crate::s3cmd::parse_url(url)?;
    let endpoint = match std::env::var("INFERMUX_S3_URL") {
        Ok(u) if !u.is_empty() => S3EndpointConfig::new("s3", u),
        _ => S3EndpointConfig::aws(
            "s3",
            std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "us-east-1".into()),
        ),
    }
    .with_credentials(S3Credentials::aws_env());
    let kit = S3Kit::new(S3Config::new(vec![endpoint])).map_err(crate::s3cmd::s3_error)?;
    let r = kit
        .fetch(&bucket, &prefix, dir, None)
        .await
        .map_err(crate::s3cmd::s3_error)?;
    eprintln!(
        "fetched {url} into {}: {} file(s) ({} bytes), {} unchanged",
        dir.display(),
        r.transferred.len(),
        r.bytes,
        r.unchanged.len()
    );
    Ok(())
}

/// The server to run.
#[derive(Subcommand)]
enum Backend {
    /// Hugging Face TGI: `text-generation-launcher` (ready on `/health`).
    Tgi {
        /// `--model-id`.
        #[arg(long)]
        model_id: String,
        /// `--port`.
        #[arg(long, default_value_t = TgiSpec::DEFAULT_PORT)]
        port: u16,
        /// `--max-input-tokens` (formerly `--max-input-length`).
        #[arg(long, alias = "max-input-length")]
        max_input_tokens: Option<u32>,
        /// `--max-total-tokens`.
        #[arg(long)]
        max_total_tokens: Option<u32>,
        /// `--quantize` (awq, eetq, gptq, bitsandbytes, bitsandbytes-nf4, fp8, …).
        #[arg(long)]
        quantize: Option<String>,
        /// Further arguments for the server (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Hugging Face TEI: `text-embeddings-router` (ready on `/health`).
    Tei {
        /// `--model-id`.
        #[arg(long)]
        model_id: String,
        /// `--port`.
        #[arg(long, default_value_t = TeiSpec::DEFAULT_PORT)]
        port: u16,
        /// `--max-client-batch-size`.
        #[arg(long)]
        max_client_batch_size: Option<u32>,
        /// `--max-batch-tokens`.
        #[arg(long)]
        max_batch_tokens: Option<u32>,
        /// Further arguments for the server (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// vLLM: `vllm serve MODEL` (ready on `/health`).
    Vllm {
        /// The model.
        model: String,
        /// `--port`.
        #[arg(long, default_value_t = VllmSpec::DEFAULT_PORT)]
        port: u16,
        /// `--enable-lora`.
        #[arg(long)]
        enable_lora: bool,
        /// `--lora-modules name=path` (repeatable).
        #[arg(long = "lora-modules", value_name = "NAME=PATH")]
        lora_modules: Vec<String>,
        /// Further arguments for the server (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// OpenVINO Model Server: `ovms` (ready on `/v2/health/ready`).
    Ovms {
        /// `--config_path`.
        #[arg(long, conflicts_with_all = ["model_path", "model_name"])]
        config_path: Option<PathBuf>,
        /// `--model_path`.
        #[arg(long, requires = "model_name")]
        model_path: Option<String>,
        /// `--model_name`.
        #[arg(long, requires = "model_path")]
        model_name: Option<String>,
        /// `--rest_port`.
        #[arg(long, default_value_t = OvmsSpec::DEFAULT_REST_PORT)]
        rest_port: u16,
        /// `--port` (gRPC).
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Further arguments for the server (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// llama.cpp: `llama-server -m MODEL` (ready on `/health`).
    Llama {
        /// `-m`: the GGUF file.
        #[arg(short = 'm', long)]
        model: String,
        /// `--host`.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// `--port`.
        #[arg(long, default_value_t = LlamaCppSpec::DEFAULT_PORT)]
        port: u16,
        /// `--embeddings`.
        #[arg(long)]
        embeddings: bool,
        /// `--ctx-size`.
        #[arg(long)]
        ctx_size: Option<u32>,
        /// `--alias`.
        #[arg(long)]
        alias: Option<String>,
        /// Further arguments for the server (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Any command listening on `--port`, ready when `--ready` answers 200.
    Cmd {
        /// The port it listens on.
        #[arg(long)]
        port: u16,
        /// Its readiness route.
        #[arg(long, default_value = "/health")]
        ready: String,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, msg.into())
}

fn launch_error(e: infermux_containers::Error) -> Error {
    let kind = match e {
        infermux_containers::Error::Config(_) => ErrorKind::Config,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, e.to_string())
}

impl Backend {
    fn spec(self, name: Option<&str>) -> infermux_containers::Result<ServerSpec> {
        Ok(match self {
            Backend::Tgi {
                model_id,
                port,
                max_input_tokens,
                max_total_tokens,
                quantize,
                extra,
            } => {
                let mut s = TgiSpec::new(model_id).port(port);
                s.max_input_tokens = max_input_tokens;
                s.max_total_tokens = max_total_tokens;
                s.quantize = quantize.map(|q| match q.as_str() {
                    "awq" => Quantize::Awq,
                    "eetq" => Quantize::Eetq,
                    "gptq" => Quantize::Gptq,
                    "bitsandbytes" => Quantize::Bitsandbytes,
                    "bitsandbytes-nf4" => Quantize::BitsandbytesNf4,
                    "bitsandbytes-fp4" => Quantize::BitsandbytesFp4,
                    "fp8" => Quantize::Fp8,
                    "marlin" => Quantize::Marlin,
                    _ => Quantize::Other(q),
                });
                s.extra_args = extra;
                s.server_spec(name.unwrap_or("tgi"))?
            }
            Backend::Tei {
                model_id,
                port,
                max_client_batch_size,
                max_batch_tokens,
                extra,
            } => {
                let mut s = TeiSpec::new(model_id).port(port);
                s.max_client_batch_size = max_client_batch_size;
                s.max_batch_tokens = max_batch_tokens;
                s.extra_args = extra;
                s.server_spec(name.unwrap_or("tei"))?
            }
            Backend::Vllm {
                model,
                port,
                enable_lora,
                lora_modules,
                extra,
            } => {
                let mut s = VllmSpec::new(model).port(port);
                if enable_lora {
                    s = s.enable_lora();
                }
                for m in lora_modules {
                    let (n, p) = m.split_once('=').ok_or_else(|| {
                        infermux_containers::Error::Config(format!(
                            "--lora-modules takes NAME=PATH, not `{m}`"
                        ))
                    })?;
                    s = s.lora_module(n, p);
                }
                s.extra_args = extra;
                s.server_spec(name.unwrap_or("vllm"))?
            }
            Backend::Ovms {
                config_path,
                model_path,
                model_name,
                rest_port,
                grpc_port,
                extra,
            } => {
                let mut s = match (config_path, model_path, model_name) {
                    (Some(c), _, _) => OvmsSpec::config(c),
                    (None, Some(p), Some(n)) => OvmsSpec::model(p, n),
                    _ => {
                        return Err(infermux_containers::Error::Config(
                            "ovms needs --config-path, or --model-path and --model-name".into(),
                        ));
                    }
                }
                .rest_port(rest_port);
                if let Some(g) = grpc_port {
                    s = s.grpc_port(g);
                }
                s.extra_args = extra;
                s.server_spec(name.unwrap_or("ovms"))?
            }
            Backend::Llama {
                model,
                host,
                port,
                embeddings,
                ctx_size,
                alias,
                extra,
            } => {
                let mut s = LlamaCppSpec::new(model)
                    .host(host)
                    .port(port)
                    .extra_args(extra);
                if embeddings {
                    s = s.embeddings();
                }
                s.ctx_size = ctx_size;
                s.alias = alias;
                s.server_spec(name.unwrap_or("llama"))?
            }
            Backend::Cmd {
                port,
                ready,
                command,
            } => {
                let (program, args) = command.split_first().ok_or_else(|| {
                    infermux_containers::Error::Config("no command after `--`".into())
                })?;
                ServerSpec::new(name.unwrap_or("cmd"), program.as_str(), port, ready)?
                    .with_args(args.iter().cloned())
            }
        })
    }
}

fn parse_volume(v: &str) -> Result<Volume, Error> {
    let mut parts = v.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), None, None) if !h.is_empty() && !c.is_empty() => Ok(Volume::new(h, c)),
        (Some(h), Some(c), Some("ro"), None) if !h.is_empty() && !c.is_empty() => {
            Ok(Volume::new(h, c).read_only())
        }
        _ => Err(config_error(format!(
            "--volume takes HOST:CONTAINER[:ro], not `{v}`"
        ))),
    }
}

/// The largest GPU count `--gpus` takes (a count becomes a device list, `0,1,…,n-1`).
const MAX_GPUS: u32 = 1024;

fn parse_gpus(g: &str) -> Result<Gpus, Error> {
    let bad = |why: &str| Error::new(ErrorKind::Config, format!("--gpus {g}: {why}"));
    let g = g.trim();
    if g == "all" {
        return Ok(Gpus::All);
    }
    // Docker's own spelling of device ids (`--gpus device=0,1`), quoted or not
    let devices = g
        .trim_matches('"')
        .strip_prefix("device=")
        .map(|d| d.trim_matches('"'));
    if devices.is_none()
        && let Ok(n) = g.parse::<u32>()
    {
        return match n {
            0 => Err(bad(
                "a count of no GPU; leave the flag out, or name device 0 as device=0",
            )),
            n if n > MAX_GPUS => Err(bad(&format!(
                "more GPUs than any machine has (at most {MAX_GPUS})"
            ))),
            n => Ok(Gpus::Count(n)),
        };
    }
    let ids: Vec<String> = devices
        .unwrap_or(g)
        .split(',')
        .map(|d| d.trim().to_owned())
        .collect();
    if ids.iter().any(String::is_empty) {
        return Err(bad("an empty device id"));
    }
    Ok(Gpus::Devices(ids))
}

/// One `--env` flag: `KEY=VALUE`, or `KEY` with its value from `lookup` (this shell's
/// environment). The value is never shown in an error.
fn env_pair(kv: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<(String, String), Error> {
    if let Some((k, v)) = kv.split_once('=') {
        if k.is_empty() {
            return Err(config_error(
                "--env takes KEY=VALUE or KEY; the name is missing".to_owned(),
            ));
        }
        return Ok((k.to_owned(), v.to_owned()));
    }
    let plain = !kv.is_empty()
        && kv.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !kv.as_bytes()[0].is_ascii_digit();
    if !plain {
        // maybe a value given without its name: never echoed
        return Err(config_error(
            "--env takes KEY=VALUE or the name of a variable set in this shell".to_owned(),
        ));
    }
    match lookup(kv) {
        Some(v) => Ok((kv.to_owned(), v)),
        // a name in capitals is shown; anything else may be a token (`hf_…`) typed alone
        None if kv.bytes().all(|b| !b.is_ascii_lowercase())
            && infermux::shown_var_name(kv) == kv =>
        {
            Err(config_error(format!(
                "--env {kv}: the variable is not set in this shell"
            )))
        }
        None => Err(config_error(
            "--env: a variable named there is not set in this shell (a value needs its name: \
             KEY=VALUE)"
                .to_owned(),
        )),
    }
}

/// Builds the spec from the command line (everything but the launcher).
fn server_spec(args: &mut ServeArgs, backend: Backend) -> Result<ServerSpec, Error> {
    let mut spec = backend.spec(args.name.as_deref()).map_err(launch_error)?;
    if let Some(p) = args.program.take() {
        spec.program = p;
    }
    if let Some(w) = &args.wrapper {
        spec = spec.with_wrapper(w.split_whitespace());
    }
    for kv in &args.env {
        let (k, v) = env_pair(kv, |name| std::env::var(name).ok())?;
        spec = spec.with_env(k, v);
    }
    // (this shell's secrets are not the server's: the launcher withholds them unless named
    // with --env or kept by the backend's spec, as vLLM's keeps `VLLM_API_KEY`)
    for v in &args.volumes {
        spec = spec.with_volume(parse_volume(v)?);
    }
    if let Some(g) = &args.gpus {
        spec = spec.with_gpus(parse_gpus(g)?);
    }
    if let Some(m) = args.memory {
        spec = spec.with_memory_bytes(m);
    }
    #[cfg(feature = "docker")]
    if let Some(image) = args.image.take() {
        spec = spec.with_image(image);
    }
    Ok(spec)
}

fn launcher(args: &ServeArgs) -> Result<Arc<dyn Launcher>, Error> {
    #[cfg(feature = "docker")]
    if args.docker {
        let d = infermux_containers::DockerLauncher::from_env("cli").map_err(launch_error)?;
        return Ok(Arc::new(d));
    }
    Ok(Arc::new(
        match pid_dir(args.pid_dir.as_deref(), |k| std::env::var_os(k)) {
            Some(d) => ProcessLauncher::with_pid_dir(d),
            None => ProcessLauncher::new(),
        },
    ))
}

/// Where the pid files go: `--pid-dir`, else `$XDG_RUNTIME_DIR/infermux` when that folder is
/// this process's own and no one else's (owned by its effective user, mode 0700: under `su`
/// or `sudo -E` it is another user's, who could plant a pid file naming any process), so the
/// next start kills what a SIGKILLed or OOM-killed run left running; else none (nor a shared
/// temporary folder, for the same reason).
fn pid_dir(
    flag: Option<&std::path::Path>,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    flag.map(PathBuf::from).or_else(|| {
        var("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && only_ours(d))
            .map(|d| d.join("infermux"))
    })
}

/// Whether the folder `d` belongs to this process's effective user (the owner of
/// `/proc/self`) and no one else may write to or read it (mode 0700).
fn only_ours(d: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(dir), Ok(me)) = (std::fs::metadata(d), std::fs::metadata("/proc/self")) else {
        return false;
    };
    dir.is_dir() && dir.uid() == me.uid() && dir.mode() & 0o077 == 0
}

/// Prints every log line on stderr (above the spinner).
fn follow_logs(logs: &LogBuffer, bar: indicatif::ProgressBar) -> tokio::task::JoinHandle<()> {
    let mut rx = logs.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(line) => bar.suspend(|| eprintln!("{line}")),
                Err(RecvError::Lagged(n)) => bar.suspend(|| eprintln!("[{n} log lines skipped]")),
                Err(RecvError::Closed) => return,
            }
        }
    })
}

/// Flags only one launcher reads, refused with the other instead of silently ignored.
fn check_launcher_flags(args: &ServeArgs) -> Result<(), Error> {
    #[cfg(feature = "docker")]
    let docker = args.docker;
    #[cfg(not(feature = "docker"))]
    let docker = false;
    let mut wrong = Vec::new();
    if docker {
        for (given, flag) in [
            (args.wrapper.is_some(), "--wrapper"),
            (args.program.is_some(), "--program"),
            (args.pid_dir.is_some(), "--pid-dir"),
        ] {
            if given {
                wrong.push(flag);
            }
        }
        if !wrong.is_empty() {
            return Err(config_error(format!(
                "{} run a local process; with --docker the image's own command runs",
                wrong.join(", ")
            )));
        }
    } else {
        for (given, flag) in [
            (!args.volumes.is_empty(), "--volume"),
            (args.memory.is_some(), "--memory"),
        ] {
            if given {
                wrong.push(flag);
            }
        }
        #[cfg(feature = "docker")]
        if args.image.is_some() {
            wrong.push("--image");
        }
        if !wrong.is_empty() {
            let how = if cfg!(feature = "docker") {
                "--docker"
            } else {
                "--docker, in a binary built with the feature `docker`"
            };
            return Err(config_error(format!(
                "{} apply to containers only ({how}); a local process would run without them",
                wrong.join(", ")
            )));
        }
    }
    Ok(())
}

/// How long an interrupted start may take to remove what it left (a container).
const LEFTOVERS_TIMEOUT: Duration = Duration::from_secs(30);

/// `infermux serve …`.
pub(crate) async fn run(mut args: ServeArgs) -> Result<(), Error> {
    check_launcher_flags(&args)?;
    #[cfg(feature = "s3")]
    fetch_model(&args).await?;
    let backend = std::mem::replace(
        &mut args.backend,
        Backend::Cmd {
            port: 1,
            ready: "/".into(),
            command: Vec::new(),
        },
    );
    let spec = server_spec(&mut args, backend)?;
    let launcher = launcher(&args)?;
    let config = SupervisorConfig::new()
        .with_ready_timeout(Duration::from_secs(args.ready_timeout.max(1)))
        .with_max_restarts(args.max_restarts);
    let logs = LogBuffer::new(config.log_lines);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!(
        "starting {} on {} (ready on {})",
        spec.name,
        spec.base_url(),
        spec.readiness
    ));
    let printer = follow_logs(&logs, bar.clone());
    let name = spec.name.clone();
    let url = spec.base_url();
    let mut interrupt = Interrupt::new()?;
    let (owner, started_spec) = (launcher.clone(), spec.clone());
    let started = tokio::select! {
        s = Supervisor::start_with_logs(launcher, spec, config, logs) => s,
        _ = interrupt.wait() => {
            // dropping the start kills a process at once; a container's removal would run on
            // this runtime, which ends with the program, so it is awaited here
            bar.finish_and_clear();
            printer.abort();
            let removed = tokio::select! {
                r = tokio::time::timeout(LEFTOVERS_TIMEOUT, owner.remove_leftovers(&started_spec)) => r,
                // a second Ctrl-C: leave now, saying what may be left
                _ = interrupt.wait() => {
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        format!("interrupted again while removing {name}: a container of it may be left (label infermux.name={name})"),
                    ));
                }
            };
            return match removed {
                Ok(Ok(_)) => {
                    eprintln!("interrupted before {name} was ready; stopped");
                    Ok(())
                }
                Ok(Err(e)) => Err(launch_error(e)),
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("interrupted before {name} was ready; removing it took over {}s", LEFTOVERS_TIMEOUT.as_secs()),
                )),
            };
        }
    };
    let sup = match started {
        Ok(s) => s,
        Err(e) => {
            bar.finish_and_clear();
            printer.abort();
            return Err(launch_error(e));
        }
    };
    bar.finish_and_clear();
    eprintln!(
        "{name} ready on {url} ({}); Ctrl-C stops it",
        sup.server_id()
            .map_or_else(String::new, |id| id.to_string())
    );
    let mut states = sup.subscribe();
    let outcome = loop {
        tokio::select! {
            _ = interrupt.wait() => break Ok(()),
            changed = states.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let state = states.borrow_and_update().clone();
                match state {
                    State::Ready => eprintln!("{name} ready again ({})",
                        sup.server_id().map_or_else(String::new, |id| id.to_string())),
                    State::Restarting { restarts, reason } => {
                        eprintln!("{name} {reason}: restart {restarts}");
                    }
                    State::Failed(e) => break Err(Error::new(ErrorKind::Unavailable, e.to_string())),
                    _ => {}
                }
            }
        }
    };
    // (a closed terminal makes writes to it fail: `eprintln!` would panic before the stop)
    let say = |line: String| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    say(format!("stopping {name}"));
    // a second signal while the stop waits out its grace period: leave now — a process's
    // group is killed as the runtime drops it; a container's removal is awaited (it would
    // run on this runtime, which ends with the program)
    tokio::select! {
        () = sup.stop() => {}
        () = interrupt.wait() => {
            say(format!("stopping {name} now"));
            let removed =
                tokio::time::timeout(LEFTOVERS_TIMEOUT, owner.remove_leftovers(&started_spec))
                    .await;
            if !matches!(removed, Ok(Ok(_))) {
                printer.abort();
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    format!(
                        "interrupted again while stopping {name}: a container of it may be left \
                         (label infermux.name={name})"
                    ),
                ));
            }
        }
    }
    printer.abort();
    outcome
}

/// Ctrl-C (SIGINT), SIGTERM (`kill`, `timeout`, a service manager) and SIGHUP (the terminal
/// closed), listened for from before the server starts to its stop: the server leads a
/// process group of its own, so no signal sent to the CLI reaches it, and any of these left
/// to its default action would end the CLI without stopping the server. One registration
/// each, so a signal that arrives between two waits (say, right after "ready on" is printed)
/// is kept for the next wait instead of lost — a fresh future per wait would miss it.
struct Interrupt {
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 3],
}

impl Interrupt {
    fn new() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, what: &str| {
                signal(kind).map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("cannot listen for {what}: {e}"),
                    )
                })
            };
            Ok(Interrupt {
                signals: [
                    listen(SignalKind::interrupt(), "Ctrl-C")?,
                    listen(SignalKind::terminate(), "SIGTERM")?,
                    listen(SignalKind::hangup(), "SIGHUP")?,
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupt {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            let [int, term, hup] = &mut self.signals;
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--pid-dir` first, then `$XDG_RUNTIME_DIR/infermux` when that folder is absolute,
    /// this user's and mode 0700, else none.
    #[test]
    fn the_pid_dir_is_the_flag_or_the_users_own_runtime_folder() {
        use std::os::unix::fs::PermissionsExt;
        let ours = std::env::temp_dir().join(format!("infermux-xdg-unit-{}", std::process::id()));
        std::fs::create_dir_all(&ours).unwrap();
        let set = |mode| std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(mode));
        set(0o700).unwrap();
        let xdg =
            |v: std::ffi::OsString| move |k: &str| (k == "XDG_RUNTIME_DIR").then(|| v.clone());
        let flag = std::path::Path::new("/srv/pids");
        assert_eq!(
            pid_dir(Some(flag), xdg(ours.clone().into())),
            Some(flag.into())
        );
        assert_eq!(
            pid_dir(None, xdg(ours.clone().into())),
            Some(ours.join("infermux"))
        );
        // others may write there (or read it): not ours alone
        set(0o777).unwrap();
        assert_eq!(pid_dir(None, xdg(ours.clone().into())), None);
        set(0o700).unwrap();
        assert_eq!(pid_dir(None, xdg("".into())), None);
        assert_eq!(pid_dir(None, xdg("relative".into())), None);
        assert_eq!(pid_dir(None, xdg("/nonexistent/run".into())), None);
        assert_eq!(pid_dir(None, |_: &str| None), None);
        let _ = std::fs::remove_dir_all(&ours);
    }

    #[test]
    fn env_flags_take_a_pair_or_a_name_from_the_shell_and_never_echo_a_value() {
        let shell = |name: &str| (name == "HF_TOKEN").then(|| "hf_from_the_shell".to_owned());
        assert_eq!(
            env_pair("A=b=c", shell).unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert_eq!(
            env_pair("HF_TOKEN", shell).unwrap(),
            ("HF_TOKEN".to_owned(), "hf_from_the_shell".to_owned())
        );
        let e = env_pair("NOT_SET", shell).unwrap_err();
        assert!(e.to_string().contains("NOT_SET"), "{e}");
        // a value typed without its name is refused without being shown
        for bad in [
            "hf_secret-123456",
            "hf_AbCdEf0123456789",
            "sk-abc.def",
            "=value",
            "",
            // a token in capitals (`openssl rand -hex 16 | tr a-f A-F`)
            "A3F29C0B5E7D41C8B2A6F0E9D8C7B6A5",
        ] {
            let e = env_pair(bad, shell).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn volumes_and_gpus_parse_and_bad_ones_are_config_errors() {
        assert_eq!(parse_volume("/a:/b:ro").unwrap().bind(), "/a:/b:ro");
        assert_eq!(parse_volume("/a:/b").unwrap().bind(), "/a:/b");
        assert_eq!(parse_volume("/a").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(parse_gpus("all").unwrap(), Gpus::All);
        assert_eq!(parse_gpus("2").unwrap(), Gpus::Count(2));
        let zero_and_three = Gpus::Devices(vec!["0".into(), "3".into()]);
        assert_eq!(parse_gpus("0,3").unwrap(), zero_and_three);
        assert_eq!(parse_gpus("device=0,3").unwrap(), zero_and_three);
        assert_eq!(parse_gpus("\"device=0,3\"").unwrap(), zero_and_three);
        assert_eq!(
            parse_gpus("device=0").unwrap(),
            Gpus::Devices(vec!["0".into()])
        );
        // a count of zero asks for nothing, and an empty id names nothing
        assert_eq!(parse_gpus("0").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(parse_gpus("0,").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(parse_gpus("device=").unwrap_err().kind(), ErrorKind::Config);
        // a count past any machine: refused (it became a device list of billions of ids)
        assert_eq!(
            parse_gpus("4000000000").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(parse_gpus("1024").unwrap(), Gpus::Count(1024));
    }
}
