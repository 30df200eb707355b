//! The [`Launcher`] seam (start a server from a [`ServerSpec`]) and the [`Server`] it hands
//! back (its id, liveness, exit, graceful stop, logs).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Exit, Result};
use crate::logs::LogBuffer;
use crate::spec::ServerSpec;

/// Who a launched server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerId {
    /// A process (the leader of its own process group).
    Pid(u32),
    /// A container id.
    Container(String),
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerId::Pid(p) => write!(f, "pid {p}"),
            // the short id: the first 12 characters (an id is the daemon's word: cut on a
            // character, not a byte)
            ServerId::Container(c) => {
                let end = c.char_indices().nth(12).map_or(c.len(), |(i, _)| i);
                write!(f, "container {}", &c[..end])
            }
        }
    }
}

/// Starts servers: a child process ([`ProcessLauncher`](crate::ProcessLauncher)) or a
/// container (`DockerLauncher`, feature `docker`).
#[async_trait]
pub trait Launcher: Send + Sync + fmt::Debug {
    /// Starts the server `spec` describes, its output going to `logs`. Fails at once with
    /// [`Error::PortInUse`] when its port is taken, [`Error::BinaryMissing`] or
    /// [`Error::UnknownImage`]; what a previous run of this launcher left behind for the same
    /// spec (a stale process group, labelled containers) is removed first. The server is not
    /// ready yet: see [`Supervisor`](crate::Supervisor).
    async fn start(&self, spec: &ServerSpec, logs: LogBuffer) -> Result<Box<dyn Server>>;

    /// Removes what a start of `spec` left behind, and waits until it is gone: for a start
    /// cancelled before it handed over its server (a container created but not yet owned),
    /// or a server dropped just before its runtime shuts down (a dropped container's removal
    /// runs on the runtime, so a program that exits next should await this first). Returns
    /// how many it removed. A process launcher has nothing to do: a dropped process group is
    /// killed at once.
    async fn remove_leftovers(&self, spec: &ServerSpec) -> Result<usize> {
        let _ = spec;
        Ok(0)
    }
}

/// A launched server. Dropping it kills it (a process group) or removes it (a container),
/// so nothing outlives its owner.
#[async_trait]
pub trait Server: Send + Sync + fmt::Debug {
    /// Its pid or container id.
    fn id(&self) -> ServerId;
    /// Its output.
    fn logs(&self) -> &LogBuffer;
    /// Whether it still runs.
    async fn is_alive(&mut self) -> bool;
    /// Resolves when it exits, with how (cancel-safe: may be polled again).
    async fn exited(&mut self) -> Exit;
    /// Stops it: SIGTERM (a container's stop), then SIGKILL after `grace`; resolves once it
    /// is gone.
    async fn stop(&mut self, grace: Duration) -> Result<Exit>;
}

/// [`Error::PortInUse`] when `port` cannot be bound on every interface now.
pub fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::PortInUse { port }),
        Err(e) => Err(Error::Io(e)),
    }
}

/// What servers print when their port is taken.
pub(crate) const BIND_FAILURES: &[&str] = &[
    "address already in use",
    "address in use",
    "couldn't bind",
    "could not bind",
    "port is already allocated",
];

#[cfg(test)]
mod tests {
    use super::ServerId;

    #[test]
    fn a_container_id_is_shown_by_its_first_twelve_characters() {
        let id = ServerId::Container("e90e34656806aa11bb22".into());
        assert_eq!(id.to_string(), "container e90e34656806");
        assert_eq!(
            ServerId::Container("abc".into()).to_string(),
            "container abc"
        );
        // a character across byte 12 (the daemon's word, or a caller's) is not cut in two
        let odd = ServerId::Container("abcdefghijkéxyz".into());
        assert_eq!(odd.to_string(), "container abcdefghijké");
    }
}
