//! [`ServerSpec`]: what to launch (a command, or an image with its arguments), where it
//! listens, how to tell it is ready, and its environment, GPUs, memory and volumes.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// A host folder mounted into a container (for a process the path is used as is).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Volume {
    /// The folder on the host.
    pub host: PathBuf,
    /// Where the container sees it.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// `host` mounted at `container`, read-write.
    pub fn new(host: impl Into<PathBuf>, container: impl Into<String>) -> Self {
        Volume {
            host: host.into(),
            container: container.into(),
            read_only: false,
        }
    }

    /// Read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Docker's bind string `host:container[:ro]`.
    pub fn bind(&self) -> String {
        format!(
            "{}:{}{}",
            self.host.display(),
            self.container,
            if self.read_only { ":ro" } else { "" }
        )
    }
}

/// Which GPUs the server gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Gpus {
    /// None (the default).
    #[default]
    None,
    /// Every GPU (Docker: a device request with count -1; a process: no restriction).
    All,
    /// This many (Docker: a device request with this count; a process: the first ones, by
    /// `CUDA_VISIBLE_DEVICES`).
    Count(u32),
    /// These device ids (Docker: device ids; a process: `CUDA_VISIBLE_DEVICES`).
    Devices(Vec<String>),
}

/// What to launch and how to tell it is ready.
///
/// For [`ProcessLauncher`](crate::ProcessLauncher): `wrapper` (maybe empty, e.g. `chroot
/// --userspec=65534:65534 ROOT /usr/bin/env -i PATH=/usr/bin`), then `program` and `args`. For
/// `DockerLauncher` (feature `docker`): `image` with `image_args` (default: `args`) given to
/// its entrypoint, the container port `port` published on the same host port.
///
/// Its `Debug` shows the environment's names, never their values (tokens such as `HF_TOKEN`
/// go there).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSpec {
    /// A short name: the pid file's and the container's (`infermux-<name>`).
    pub name: String,
    /// A command the program runs through (empty: none).
    pub wrapper: Vec<String>,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The Docker image (none: only a process can run it).
    pub image: Option<String>,
    /// The arguments given to the image's entrypoint (`None`: [`ServerSpec::args`]).
    pub image_args: Option<Vec<String>>,
    /// The host the readiness and health probes connect to (default `127.0.0.1`).
    pub host: String,
    /// The port the server listens on.
    pub port: u16,
    /// The readiness route: ready when it answers 200 (never a route that spends tokens).
    pub readiness: String,
    /// Environment variables set for the server.
    pub env: Vec<(String, String)>,
    /// Start the process with an empty environment (plus [`ServerSpec::env`]).
    pub clear_env: bool,
    /// Variables of the launching process not passed on to the server (its own keys).
    pub env_removed: Vec<String>,
    /// Variables of the launching process named like secrets ([`is_secret_name`]) that the
    /// server reads itself and a launched process gets (vLLM's `VLLM_API_KEY`, which it then
    /// requires of callers). Every other one is kept from it. (A container inherits nothing
    /// of the launching process: it gets [`ServerSpec::env`] only.)
    pub env_kept: Vec<String>,
    /// Host folders it sees (model caches).
    pub volumes: Vec<Volume>,
    /// GPUs.
    pub gpus: Gpus,
    /// A memory limit in bytes (enforced by Docker; a process is not limited).
    pub memory_bytes: Option<u64>,
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, _)| format!("{k}=<redacted>"))
            .collect();
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("wrapper", &self.wrapper)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("image", &self.image)
            .field("image_args", &self.image_args)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("readiness", &self.readiness)
            .field("env", &env)
            .field("clear_env", &self.clear_env)
            .field("env_removed", &self.env_removed)
            .field("env_kept", &self.env_kept)
            .field("volumes", &self.volumes)
            .field("gpus", &self.gpus)
            .field("memory_bytes", &self.memory_bytes)
            .finish()
    }
}

impl ServerSpec {
    /// `program` listening on `port`, ready when `readiness` (a path such as `/health`)
    /// answers 200. A [`Error::Config`] when the name or program is empty or holds a `/` in
    /// the name, the port is 0 or the route does not start with `/`.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<String>,
        port: u16,
        readiness: impl Into<String>,
    ) -> Result<Self> {
        let (name, program, readiness) = (name.into(), program.into(), readiness.into());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::Config(format!(
                "a server name is letters, digits, `-`, `_` and `.`, not `{name}`"
            )));
        }
        if program.is_empty() {
            return Err(Error::Config("the program is empty".into()));
        }
        if port == 0 {
            return Err(Error::Config("the port is 0".into()));
        }
        if !readiness.starts_with('/') {
            return Err(Error::Config(format!(
                "the readiness route `{readiness}` does not start with `/`"
            )));
        }
        Ok(ServerSpec {
            name,
            wrapper: Vec::new(),
            program,
            args: Vec::new(),
            image: None,
            image_args: None,
            host: "127.0.0.1".into(),
            port,
            readiness,
            env: Vec::new(),
            clear_env: false,
            env_removed: Vec::new(),
            env_kept: Vec::new(),
            volumes: Vec::new(),
            gpus: Gpus::None,
            memory_bytes: None,
        })
    }

    /// Appends arguments.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the program through `wrapper` (e.g. `chroot --userspec=65534:65534 ROOT`).
    pub fn with_wrapper<I, S>(mut self, wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// The Docker image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// The arguments given to the image's entrypoint (when they differ from the process's).
    pub fn with_image_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.image_args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The host the probes connect to.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Does not pass the launching process's variable `key` on to the server (a key of its
    /// own the server has no use for); a value set with [`ServerSpec::with_env`] still goes.
    pub fn without_env(mut self, key: impl Into<String>) -> Self {
        self.env_removed.push(key.into());
        self
    }

    /// Passes the launching process's variable `key` on to the server though it is named
    /// like a secret ([`is_secret_name`]): the server reads it itself.
    pub fn with_env_kept(mut self, key: impl Into<String>) -> Self {
        self.env_kept.push(key.into());
        self
    }

    /// The variables of `environment` (the launching process's names) a launched process
    /// does not get: those removed with [`ServerSpec::without_env`], and those named like
    /// secrets ([`is_secret_name`]: a provider's API key, AWS and S3 secrets, a Redis URL)
    /// unless kept ([`ServerSpec::with_env_kept`]) or set on the spec ([`ServerSpec::with_env`]).
    ///
    /// ```
    /// use infermux_containers::ServerSpec;
    /// let spec = ServerSpec::new("s", "server", 8080, "/health").unwrap()
    ///     .with_env_kept("VLLM_API_KEY");
    /// let env = ["PATH", "OPENAI_API_KEY", "VLLM_API_KEY", "HOME"];
    /// assert_eq!(spec.env_withheld(env), ["OPENAI_API_KEY"]);
    /// ```
    pub fn env_withheld<'a>(&self, environment: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = self.env_removed.clone();
        for k in environment {
            if is_secret_name(k)
                && !self.env_kept.iter().any(|e| e == k)
                && !self.env.iter().any(|(e, _)| e == k)
                && !out.iter().any(|e| e == k)
            {
                out.push(k.to_owned());
            }
        }
        out
    }

    /// Starts the process with an empty environment (plus [`ServerSpec::env`]).
    pub fn with_clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Mounts a host folder.
    pub fn with_volume(mut self, volume: Volume) -> Self {
        self.volumes.push(volume);
        self
    }

    /// The GPUs it gets.
    pub fn with_gpus(mut self, gpus: Gpus) -> Self {
        self.gpus = gpus;
        self
    }

    /// A memory limit (Docker).
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    /// The base URL the server answers on: `http://host:port` (an IPv6 address in brackets:
    /// `http://[::1]:port`).
    ///
    /// ```
    /// use infermux_containers::ServerSpec;
    /// let spec = ServerSpec::new("s", "server", 8080, "/health").unwrap();
    /// assert_eq!(spec.clone().with_host("::1").base_url(), "http://[::1]:8080");
    /// assert_eq!(spec.with_host("127.0.0.1").base_url(), "http://127.0.0.1:8080");
    /// ```
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// The whole command line of the process: wrapper, program, args.
    pub fn command_line(&self) -> Vec<String> {
        let mut cmd = self.wrapper.clone();
        cmd.push(self.program.clone());
        cmd.extend(self.args.iter().cloned());
        cmd
    }

    /// The arguments the image's entrypoint gets.
    pub fn entrypoint_args(&self) -> &[String] {
        self.image_args.as_deref().unwrap_or(&self.args)
    }

    /// The environment, with `CUDA_VISIBLE_DEVICES` for [`Gpus::Count`] and [`Gpus::Devices`]
    /// when the spec does not set it itself (what a process sees).
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        let visible = match &self.gpus {
            Gpus::Count(n) => Some((0..*n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")),
            Gpus::Devices(ids) => Some(ids.join(",")),
            Gpus::None | Gpus::All => None,
        };
        if let Some(v) = visible
            && !env.iter().any(|(k, _)| k == "CUDA_VISIBLE_DEVICES")
        {
            env.push(("CUDA_VISIBLE_DEVICES".into(), v));
        }
        env
    }
}

/// Whether an environment variable's name is that of a secret a launched server is not given
/// unless asked ([`ServerSpec::env_withheld`]): one of its `_`-separated words (any case) is
/// `KEY`, `SECRET`, `TOKEN`, `PASSWORD` or `PASSWD` (`OPENAI_API_KEY`, `OPENAI_KEY_1`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `S3_SECRET`), or it ends in `_ACCESS`
/// (`S3_ACCESS`), `_REDIS_URL` (which may carry a password) or `_CONNECTION_STRING`. The
/// Hugging Face Hub's go on — `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, `HF_API_TOKEN`,
/// `HF_TOKEN_PATH`, `HF_HUB_DISABLE_IMPLICIT_TOKEN` —: servers download gated models with them.
/// (Paths to credential files, `GOOGLE_APPLICATION_CREDENTIALS`, go on too: a server loading
/// from a bucket reads them.)
///
/// ```
/// use infermux_containers::is_secret_name;
/// for name in ["ANTHROPIC_API_KEY", "OPENAI_KEY_1", "AWS_SECRET_ACCESS_KEY", "S3_ACCESS",
///              "github_token", "DB_PASSWORD", "INFERMUX_REDIS_URL",
///              "AZURE_STORAGE_CONNECTION_STRING"] {
///     assert!(is_secret_name(name), "{name}");
/// }
/// for name in ["PATH", "HF_TOKEN", "HF_API_TOKEN", "MAX_BATCH_TOKENS", "TOKENIZERS_PARALLELISM",
///              "GOOGLE_APPLICATION_CREDENTIALS", "CUDA_VISIBLE_DEVICES"] {
///     assert!(!is_secret_name(name), "{name}");
/// }
/// ```
pub fn is_secret_name(name: &str) -> bool {
    const HUB: [&str; 5] = [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_API_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    ];
    let n = name.to_ascii_uppercase();
    if HUB.contains(&n.as_str()) {
        return false;
    }
    n.split('_')
        .any(|w| matches!(w, "KEY" | "SECRET" | "TOKEN" | "PASSWORD" | "PASSWD"))
        || n.ends_with("_ACCESS")
        || n.ends_with("_REDIS_URL")
        || n.ends_with("_CONNECTION_STRING")
}

#[cfg(test)]
mod env_tests {
    use super::*;

    /// A launched process gets none of the launching process's secrets (a provider's key, AWS
    /// and S3 secrets, a Redis URL) unless the spec sets or keeps it; other variables go on.
    #[test]
    fn secrets_are_withheld_unless_set_or_kept() {
        let spec = ServerSpec::new("s", "server", 8080, "/health")
            .unwrap()
            .with_env("ANTHROPIC_API_KEY", "given")
            .with_env_kept("VLLM_API_KEY")
            .without_env("SOME_FLAG");
        let env = [
            "PATH",
            "HF_TOKEN",
            "OPENAI_API_KEY",
            "openai_api_key",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "S3_SECRET_KEY",
            "INFERMUX_REDIS_URL",
            "ANTHROPIC_API_KEY",
            "VLLM_API_KEY",
        ];
        assert_eq!(
            spec.env_withheld(env),
            [
                "SOME_FLAG",
                "OPENAI_API_KEY",
                "openai_api_key",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID",
                "AWS_SESSION_TOKEN",
                "S3_SECRET_KEY",
                "INFERMUX_REDIS_URL",
            ]
        );
        let vllm = crate::VllmSpec::new("m").server_spec("v").unwrap();
        assert!(vllm.env_withheld(["VLLM_API_KEY"]).is_empty());
    }
}
