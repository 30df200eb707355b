//! Feature `unified`: the TEI server launched and supervised by infermux
//! ([`infermux_containers`]) with this crate's client bound to it. A wrapper (such as
//! `chroot`), the environment, GPUs, memory or volumes go on the [`ServerSpec`] given to
//! [`Unified::launch_with`] instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use infermux_containers::{ProcessLauncher, SupervisorConfig};
//! use infermux_hf_tei::unified::{TeiSpec, launch};
//!
//! let spec = TeiSpec::new("BAAI/bge-small-en-v1.5").port(3002);
//! let launcher = Arc::new(ProcessLauncher::new());
//! let unified = launch("tei", &spec, launcher, SupervisorConfig::new()).await?;
//! assert!(unified.supervisor().state().is_ready());
//! unified.stop().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

#[cfg(doc)]
use infermux_containers::ServerSpec;
pub use infermux_containers::TeiSpec;
use infermux_containers::{Launcher, Result, SupervisorConfig, Unified};

use crate::HfTei;

/// Starts `spec` as the server `name` with `launcher` (a process or a container), waits
/// until it is ready and returns the client talking to it with its supervisor: bind it to a
/// pool with [`Unified::bind`]. The errors are [`infermux_containers::Supervisor::start`]'s.
pub async fn launch(
    name: &str,
    spec: &TeiSpec,
    launcher: Arc<dyn Launcher>,
    config: SupervisorConfig,
) -> Result<Unified<HfTei>> {
    Unified::launch_with(spec.server_spec(name)?, "", launcher, config, HfTei::new).await
}
