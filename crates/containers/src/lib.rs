//! Launch and supervise local inference servers — TGI, TEI, vLLM, OVMS, llama.cpp or any
//! command — as a child process or a Docker container, and keep them in a pool while they
//! serve.
//!
//! - [`Launcher`]: starts a server from a [`ServerSpec`] and hands back a [`Server`] (its pid
//!   or container id, liveness, exit, graceful stop, a [`LogBuffer`] of its output).
//!   [`ProcessLauncher`] runs the command line (through a wrapper such as `chroot` if given)
//!   in its own process group, killed as a group when dropped, with a pid file so the next
//!   start kills what a SIGKILLed run left. `DockerLauncher` (feature `docker`) speaks the
//!   Docker Engine API with bollard: labelled containers, removed by the next start too.
//! - Typed specs with the servers' real flags: [`TgiSpec`], [`TeiSpec`], [`VllmSpec`],
//!   [`OvmsSpec`], [`LlamaCppSpec`]; each knows its readiness route and default image.
//! - [`Supervisor`]: readiness by the server's own route (never a call that spends tokens)
//!   within a deadline, periodic health checks, restarts with a capped, jittered backoff up to
//!   a limit ([`Error::CrashLoop`] then), a watchable [`State`], graceful stop.
//! - [`Unified`]: a provider plus its supervised server, bound to a
//!   [`MultiPool`](infermux_multiplex::MultiPool): out of service while the server (re)starts,
//!   back when ready; calls wait in the pool's queue within their deadline. The provider
//!   crates' feature `unified` (TGI, TEI, vLLM, OVMS) and this crate's feature `llama`
//!   (llama.cpp with the OpenAI-compatible client, `llama::launch`) build one in a call.
//!
//! Every failure is a typed [`Error`] returned within its deadline with nothing left running:
//! [`Error::BinaryMissing`], [`Error::PortInUse`], [`Error::UnknownImage`],
//! [`Error::NeverReady`], [`Error::CrashLoop`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backends;
#[cfg(feature = "docker")]
mod docker;
mod error;
mod launcher;
#[cfg(feature = "llama")]
pub mod llama;
mod logs;
mod process;
mod spec;
mod supervisor;
mod unified;

pub use backends::{LlamaCppSpec, OvmsModels, OvmsSpec, Quantize, TeiSpec, TgiSpec, VllmSpec};
/// The `bollard` (Docker Engine API client) whose types [`DockerLauncher::with_client`] and
/// [`DockerLauncher::create_body`] take and return: the same version through this path.
#[cfg(feature = "docker")]
pub use bollard;
#[cfg(feature = "docker")]
pub use docker::{DockerLauncher, MANAGED_LABEL, NAME_LABEL, OWNER_LABEL, PROCESS_LABEL};
pub use error::{Error, Exit, Result};
pub use launcher::{Launcher, Server, ServerId, check_port_free};
pub use logs::LogBuffer;
pub use process::ProcessLauncher;
pub use spec::{Gpus, ServerSpec, Volume, is_secret_name};
pub use supervisor::{State, Supervisor, SupervisorConfig};
pub use unified::{PoolBinding, Unified};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
