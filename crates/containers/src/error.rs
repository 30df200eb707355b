//! [`Error`]: why a server could not be launched, became ready or kept running.

use std::time::Duration;

/// What went wrong launching or supervising a server. Every variant is returned within its
/// deadline with nothing left running (the launcher stops what it started before answering).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program (or the command a wrapper such as `chroot` runs) does not exist or is not
    /// executable.
    #[error("binary `{program}` not found or not executable")]
    BinaryMissing {
        /// The program named by the spec (or the wrapper's exit code 127 says the command it
        /// runs is missing).
        program: String,
    },
    /// The server's port is taken: found before starting it, or the server said so when it
    /// failed to bind.
    #[error("port {port} is already in use")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// The Docker engine does not know the image (a 404 on create; images are not pulled).
    #[error("unknown image `{image}` (pull it first)")]
    UnknownImage {
        /// The image reference.
        image: String,
    },
    /// The server did not answer its readiness route within the deadline; it was stopped.
    #[error("server not ready within {deadline:?} (readiness route `{route}`)")]
    NeverReady {
        /// The readiness deadline.
        deadline: Duration,
        /// The route probed.
        route: String,
    },
    /// The server exited before becoming ready (and was not restarted).
    #[error("server exited before becoming ready ({exit})")]
    Exited {
        /// How it exited.
        exit: Exit,
    },
    /// The server kept exiting or failing its health checks: restarted `restarts` times, then
    /// given up.
    #[error("crash loop: restarted {restarts} times, last: {last}")]
    CrashLoop {
        /// Restarts made before giving up.
        restarts: u32,
        /// The last failure.
        last: String,
    },
    /// A spec or configuration was refused before anything started.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Docker engine refused or failed a request.
    #[error("docker engine: {0}")]
    Docker(String),
    /// An operating-system error (spawning, signals, pid files).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The supervisor was stopped.
    #[error("stopped")]
    Stopped,
}

/// A [`std::result::Result`] with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Unknown (a container whose status the engine did not give, or a lost process).
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => f.write_str("exit status unknown"),
        }
    }
}
