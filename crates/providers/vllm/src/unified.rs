//! Feature `unified`: the vLLM server launched and supervised by infermux
//! ([`infermux_containers`]) with this crate's client bound to it. A wrapper (such as
//! `chroot`), the environment, GPUs, memory or volumes go on the [`ServerSpec`] given to
//! [`Unified::launch_with`] instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use infermux_containers::{ProcessLauncher, SupervisorConfig};
//! use infermux_vllm::unified::{VllmSpec, launch};
//!
//! let spec = VllmSpec::new("Qwen/Qwen2.5-0.5B-Instruct").port(8001);
//! let launcher = Arc::new(ProcessLauncher::new());
//! let unified = launch("vllm", &spec, launcher, SupervisorConfig::new()).await?;
//! assert!(unified.supervisor().state().is_ready());
//! unified.stop().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

#[cfg(doc)]
use infermux_containers::ServerSpec;
pub use infermux_containers::VllmSpec;
use infermux_containers::{Launcher, Result, SupervisorConfig, Unified};

use crate::Vllm;

/// Starts `spec` as the server `name` with `launcher` (a process or a container), waits
/// until it is ready and returns the client talking to it with its supervisor: bind it to a
/// pool with [`Unified::bind`]. The errors are [`infermux_containers::Supervisor::start`]'s.
pub async fn launch(
    name: &str,
    spec: &VllmSpec,
    launcher: Arc<dyn Launcher>,
    config: SupervisorConfig,
) -> Result<Unified<Vllm>> {
    // the server requires the key it reads (`VLLM_API_KEY`, passed on to it) of every call:
    // the client bound to it sends it too
    Unified::launch_with(spec.server_spec(name)?, "", launcher, config, |c| {
        Vllm::new(c.with_optional_api_key_from_env(&[crate::API_KEY_ENV]))
    })
    .await
}
