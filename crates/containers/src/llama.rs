//! Feature `llama`: llama.cpp's server launched and supervised, with the OpenAI-compatible
//! client ([`infermux_openai_compat::OpenAiCompat`], on its `/v1` routes) bound to it. A
//! wrapper (such as `chroot`), the environment or volumes go on the [`ServerSpec`] given to
//! [`Unified::launch_with`] instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use infermux_containers::{LlamaCppSpec, ProcessLauncher, SupervisorConfig, llama};
//!
//! let spec = LlamaCppSpec::new("/models/model.gguf").port(8081);
//! let launcher = Arc::new(ProcessLauncher::new());
//! let unified = llama::launch("llama", &spec, launcher, SupervisorConfig::new()).await?;
//! assert!(unified.supervisor().state().is_ready());
//! unified.stop().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use infermux_openai_compat::OpenAiCompat;

#[cfg(doc)]
use crate::ServerSpec;
use crate::{Launcher, LlamaCppSpec, Result, SupervisorConfig, Unified};

/// Starts `spec` as the server `name` with `launcher`, waits until it is ready and returns
/// the OpenAI-compatible client talking to it with its supervisor: bind it to a pool with
/// [`Unified::bind`]. The errors are [`Supervisor::start`](crate::Supervisor::start)'s.
pub async fn launch(
    name: &str,
    spec: &LlamaCppSpec,
    launcher: Arc<dyn Launcher>,
    config: SupervisorConfig,
) -> Result<Unified<OpenAiCompat>> {
    Unified::launch_with(
        spec.server_spec(name)?,
        "/v1",
        launcher,
        config,
        OpenAiCompat::new,
    )
    .await
}
