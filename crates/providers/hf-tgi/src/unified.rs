//! Feature `unified`: the TGI server launched and supervised by infermux
//! ([`infermux_containers`]) with this crate's client bound to it. A wrapper (such as
//! `chroot`), the environment, GPUs, memory or volumes go on the [`ServerSpec`] given to
//! [`Unified::launch_with`] instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use infermux_containers::{ProcessLauncher, SupervisorConfig};
//! use infermux_hf_tgi::unified::{TgiSpec, launch};
//!
//! let spec = TgiSpec::new("HuggingFaceTB/SmolLM2-135M-Instruct").port(3001);
//! let launcher = Arc::new(ProcessLauncher::new());
//! let unified = launch("tgi", &spec, launcher, SupervisorConfig::new()).await?;
//! assert!(unified.supervisor().state().is_ready());
//! unified.stop().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

#[cfg(doc)]
use infermux_containers::ServerSpec;
pub use infermux_containers::TgiSpec;
use infermux_containers::{Launcher, Result, SupervisorConfig, Unified};

use crate::HfTgi;

/// Starts `spec` as the server `name` with `launcher` (a process or a container), waits
/// until it is ready and returns the client talking to it with its supervisor: bind it to a
/// pool with [`Unified::bind`]. The errors are [`infermux_containers::Supervisor::start`]'s.
pub async fn launch(
    name: &str,
    spec: &TgiSpec,
    launcher: Arc<dyn Launcher>,
    config: SupervisorConfig,
) -> Result<Unified<HfTgi>> {
    Unified::launch_with(spec.server_spec(name)?, "", launcher, config, HfTgi::new).await
}
