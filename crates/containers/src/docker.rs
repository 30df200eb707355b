//! [`DockerLauncher`] (feature `docker`): a server as a container, through the Docker Engine
//! API on its Unix socket with bollard's typed client — never a shell string. Containers carry
//! the labels `infermux.managed=true`, `infermux.owner=<owner>` and `infermux.process` (the
//! process that created it), so what a killed run left is found and removed by the next start,
//! and what another running process started is left alone.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::error::{Error, Exit, Result};
use crate::launcher::{BIND_FAILURES, Launcher, Server, ServerId, check_port_free};
use crate::logs::LogBuffer;
use crate::spec::{Gpus, ServerSpec};

/// The label every container this crate creates carries.
pub const MANAGED_LABEL: &str = "infermux.managed";
/// The label naming the launcher's owner id.
pub const OWNER_LABEL: &str = "infermux.owner";
/// The label naming the spec.
pub const NAME_LABEL: &str = "infermux.name";
/// The label naming the process that created the container:
/// `<boot id>:<pid namespace>:<pid>:<start time>` ([`DockerLauncher::process_label`]). A start
/// removes a container of its owner id and spec name left behind (its creator gone, or of
/// another boot), never one whose creator still runs on this machine, nor one made from
/// another pid namespace of this boot (a launcher in another container with the engine's
/// socket: its pids are not this one's to judge). Launchers on other machines sharing one
/// engine are not told apart (another boot: taken for a leftover).
pub const PROCESS_LABEL: &str = "infermux.process";

/// Launches a [`ServerSpec`]'s image as a container: its entrypoint arguments, environment,
/// the port published on the same host port, binds, GPU device requests, a memory limit and
/// the infermux labels. Images are not pulled: a missing image is [`Error::UnknownImage`].
///
/// The environment (a `HF_TOKEN`, say) goes to the engine in the create body, and bollard
/// logs that body through the `log` crate at debug level (target `bollard::docker`): a program
/// that logs at debug with secrets in a spec's environment filters that target out
/// (`RUST_LOG=debug,bollard=info`). infermux's own logs and errors never show the values.
#[derive(Debug, Clone)]
pub struct DockerLauncher {
    docker: Docker,
    owner: String,
}

fn docker_err(e: bollard::errors::Error) -> Error {
    Error::Docker(e.to_string())
}

fn status_of(e: &bollard::errors::Error) -> Option<(u16, &str)> {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => Some((*status_code, message.as_str())),
        _ => None,
    }
}

impl DockerLauncher {
    /// A launcher on the engine's Unix socket at `socket` (a path or `unix://…`), labelling its
    /// containers with `owner` (letters, digits, `-`, `_`, `.`).
    pub fn connect_unix(socket: &str, owner: impl Into<String>) -> Result<Self> {
        let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(docker_err)?;
        Self::with_client(docker, owner)
    }

    /// A launcher on `DOCKER_HOST` (a `unix://` socket) or the default socket.
    pub fn from_env(owner: impl Into<String>) -> Result<Self> {
        let docker = Docker::connect_with_unix_defaults().map_err(docker_err)?;
        Self::with_client(docker, owner)
    }

    /// A launcher around a bollard client.
    pub fn with_client(docker: Docker, owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        if owner.is_empty()
            || !owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::Config(format!(
                "an owner id is letters, digits, `-`, `_` and `.`, not `{owner}`"
            )));
        }
        Ok(DockerLauncher { docker, owner })
    }

    /// The owner id its containers are labelled with.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The [`PROCESS_LABEL`] of the process `pid` as this process sees it: `<boot id>:<pid
    /// namespace>:<pid>:<start time>` (the kernel's boot id, the inode of this process's pid
    /// namespace, the start in clock ticks after boot, as `/proc` says), `None` when `/proc`
    /// does not tell.
    pub fn process_label(pid: u32) -> Option<String> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let ns = pid_namespace()?;
        let start = crate::process::start_time(i32::try_from(pid).ok()?)?;
        Some(format!("{}:{ns}:{pid}:{start}", boot.trim()))
    }

    /// Whether a container labelled `label` ([`PROCESS_LABEL`]) is left alone by a start: made
    /// by another process that still runs (this boot, this pid namespace, that pid with that
    /// start), or from another pid namespace of this boot (not ours to judge). One of this
    /// process, of a process gone, of another boot, or in another form (not four fields, a
    /// namespace or pid not a number) is a leftover.
    fn not_a_leftover(label: &str, ours: Option<&str>) -> bool {
        let Some(ours) = ours else { return false };
        if label == ours {
            return false;
        }
        let fields: Vec<&str> = label.split(':').collect();
        let [boot, ns, pid, _start] = fields[..] else {
            return false;
        };
        if ns.parse::<u64>().is_err() {
            return false;
        }
        let (boot, ns, pid) = (Some(boot), Some(ns), Some(pid));
        let mut mine = ours.splitn(4, ':');
        if boot != mine.next() {
            return false;
        }
        if ns != mine.next() {
            return true;
        }
        // the label the process of that pid has now: equal when that very process still runs
        let pid = pid.and_then(|p| p.parse::<u32>().ok());
        pid.and_then(Self::process_label).as_deref() == Some(label)
    }

    /// The container name of `spec`: `infermux-<owner>-<name>`.
    pub fn container_name(&self, spec: &ServerSpec) -> String {
        format!("infermux-{}-{}", self.owner, spec.name)
    }

    /// Removes (forcibly) every container labelled as this owner's but those another running
    /// process made (see [`PROCESS_LABEL`]); returns how many.
    pub async fn cleanup(&self) -> Result<usize> {
        self.cleanup_labelled(None).await
    }

    /// Removes this owner's containers, only those of the spec `name` when given (a start
    /// removes what a previous run left of the same spec, not the owner's other servers).
    async fn cleanup_labelled(&self, name: Option<&str>) -> Result<usize> {
        let mut labels = vec![
            format!("{MANAGED_LABEL}=true"),
            format!("{OWNER_LABEL}={}", self.owner),
        ];
        if let Some(n) = name {
            labels.push(format!("{NAME_LABEL}={n}"));
        }
        let filters = HashMap::from([("label".to_owned(), labels)]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(docker_err)?;
        let mut removed = 0;
        let ours = Self::process_label(std::process::id());
        for c in list {
            let Some(id) = c.id else { continue };
            // another live process's server of this owner id and name: not a leftover (a
            // second `infermux serve` of one name removed the first one's container, and the
            // first's supervisor then the second's)
            if let Some(label) = c.labels.as_ref().and_then(|l| l.get(PROCESS_LABEL))
                && Self::not_a_leftover(label, ours.as_deref())
            {
                tracing::debug!(container = %id, owner = %label, "a live process's container: left");
                continue;
            }
            match self.docker.remove_container(&id, Some(force())).await {
                Ok(()) => removed += 1,
                Err(e) if status_of(&e).is_some_and(|(s, _)| s == 404) => {}
                // 409 "removal … already in progress" (a dropped server's own): wait for it,
                // within a bound; any other conflict is an error
                Err(e)
                    if status_of(&e).is_some_and(|(s, m)| {
                        s == 409 && m.to_ascii_lowercase().contains("already in progress")
                    }) =>
                {
                    if self.wait_removed(&id).await {
                        removed += 1;
                    } else {
                        return Err(docker_err(e));
                    }
                }
                Err(e) => return Err(docker_err(e)),
            }
        }
        Ok(removed)
    }

    /// The create body for `spec` (exposed for tests and inspection). It holds the spec's
    /// environment values, and its `Debug` shows them: never log it.
    pub fn create_body(&self, spec: &ServerSpec) -> Result<ContainerCreateBody> {
        let image = spec
            .image
            .clone()
            .ok_or_else(|| Error::Config(format!("the spec `{}` names no image", spec.name)))?;
        let port = format!("{}/tcp", spec.port);
        let mut labels = HashMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (OWNER_LABEL.to_owned(), self.owner.clone()),
            (NAME_LABEL.to_owned(), spec.name.clone()),
        ]);
        if let Some(me) = Self::process_label(std::process::id()) {
            labels.insert(PROCESS_LABEL.to_owned(), me);
        }
        let device_requests = match &spec.gpus {
            Gpus::None => None,
            Gpus::All => Some(vec![gpu_request(Some(-1), None)]),
            Gpus::Count(n) => Some(vec![gpu_request(Some(i64::from(*n)), None)]),
            Gpus::Devices(ids) => Some(vec![gpu_request(None, Some(ids.clone()))]),
        };
        let memory = spec
            .memory_bytes
            .map(|m| {
                i64::try_from(m).map_err(|_| Error::Config(format!("a memory limit of {m} bytes")))
            })
            .transpose()?;
        let host_config = HostConfig {
            port_bindings: Some(HashMap::from([(
                port.clone(),
                Some(vec![PortBinding {
                    // where the probes look: the spec's host (127.0.0.1 unless asked)
                    host_ip: Some(publish_ip(&spec.host)?),
                    host_port: Some(spec.port.to_string()),
                }]),
            )])),
            binds: (!spec.volumes.is_empty())
                .then(|| spec.volumes.iter().map(|v| v.bind()).collect()),
            device_requests,
            memory,
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(image),
            cmd: Some(spec.entrypoint_args().to_vec()),
            env: (!spec.env.is_empty())
                .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(HashMap::from([(port, HashMap::new())])),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    /// Until the container `id` is gone, within [`REMOVAL_WAIT`]: whether it is (the engine
    /// answers the wait when the removal under way ends, or 404: gone already).
    async fn wait_removed(&self, id: &str) -> bool {
        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "removed".to_owned(),
            }),
        );
        match tokio::time::timeout(REMOVAL_WAIT, wait.next()).await {
            // the wait answered (bollard reports a nonzero exit code as an error)
            Ok(Some(Ok(_)) | None) => true,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { .. }))) => true,
            Ok(Some(Err(e))) => status_of(&e).is_some_and(|(s, _)| s == 404),
            Err(_) => false,
        }
    }

    async fn remove(&self, id: &str) {
        let _ = self.docker.remove_container(id, Some(force())).await;
    }
}

/// The address a container's port is published on: the spec's host, where the probes look
/// (an IP address; `localhost` is 127.0.0.1: the engine takes no host names).
fn publish_ip(host: &str) -> Result<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok("127.0.0.1".to_owned());
    }
    bare.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            Error::Config(format!(
                "a container's port is published on an IP address, not on the host `{host}`"
            ))
        })
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads `pid:[4026531836]`).
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let inode = link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?;
    Some(inode.to_owned())
}

/// How long a removal already under way may take.
const REMOVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        ..Default::default()
    }
}

fn gpu_request(count: Option<i64>, ids: Option<Vec<String>>) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".to_owned()),
        count,
        device_ids: ids,
        capabilities: Some(vec![vec!["gpu".to_owned()]]),
        options: None,
    }
}

#[async_trait]
impl Launcher for DockerLauncher {
    async fn remove_leftovers(&self, spec: &ServerSpec) -> Result<usize> {
        self.cleanup_labelled(Some(&spec.name)).await
    }

    async fn start(&self, spec: &ServerSpec, logs: LogBuffer) -> Result<Box<dyn Server>> {
        let body = self.create_body(spec)?;
        let image = body.image.clone().unwrap_or_default();
        self.cleanup_labelled(Some(&spec.name)).await?;
        check_port_free(spec.port)?;
        let name = self.container_name(spec);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| match status_of(&e) {
                Some((404, _)) => Error::UnknownImage {
                    image: image.clone(),
                },
                // the name is another live process's server's (left running above)
                Some((409, _)) => Error::Config(format!(
                    "the container name `{}` is taken by a server another running process \
                     started: give this one another name",
                    self.container_name(spec)
                )),
                _ => docker_err(e),
            })?;
        let id = created.id;
        if let Err(e) = self
            .docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            self.remove(&id).await;
            return Err(match status_of(&e) {
                Some((_, m))
                    if BIND_FAILURES
                        .iter()
                        .any(|b| m.to_ascii_lowercase().contains(b)) =>
                {
                    Error::PortInUse { port: spec.port }
                }
                _ => docker_err(e),
            });
        }
        let follow = self.docker.clone();
        let (log_id, log_sink) = (id.clone(), logs.clone());
        let log_task = tokio::spawn(async move {
            let mut stream = follow.logs(
                &log_id,
                Some(LogsOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            );
            while let Some(Ok(out)) = stream.next().await {
                let bytes = out.into_bytes();
                for line in String::from_utf8_lossy(&bytes).lines() {
                    log_sink.push(line);
                }
            }
        });
        tracing::debug!(container = %id, "server container started");
        Ok(Box::new(ContainerServer {
            launcher: self.clone(),
            id,
            logs,
            exit: None,
            log_task,
        }))
    }
}

/// A running container (see [`DockerLauncher`]).
#[derive(Debug)]
struct ContainerServer {
    launcher: DockerLauncher,
    id: String,
    logs: LogBuffer,
    exit: Option<Exit>,
    log_task: tokio::task::JoinHandle<()>,
}

impl ContainerServer {
    async fn inspect_exit(&self) -> Option<Exit> {
        let info = self
            .launcher
            .docker
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let state = info.state?;
        if state.running == Some(true) {
            return None;
        }
        Some(
            state
                .exit_code
                .and_then(|c| i32::try_from(c).ok())
                .map_or(Exit::Unknown, Exit::Code),
        )
    }

    async fn finish(&mut self, exit: Exit) -> Exit {
        self.exit = Some(exit);
        self.launcher.remove(&self.id).await;
        self.log_task.abort();
        exit
    }
}

#[async_trait]
impl Server for ContainerServer {
    fn id(&self) -> ServerId {
        ServerId::Container(self.id.clone())
    }

    fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    async fn is_alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.inspect_exit().await {
            None => true,
            Some(e) => {
                self.finish(e).await;
                false
            }
        }
    }

    async fn exited(&mut self) -> Exit {
        if let Some(e) = self.exit {
            return e;
        }
        let mut wait = self.launcher.docker.wait_container(
            &self.id,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        let exit = match wait.next().await {
            Some(Ok(r)) => i32::try_from(r.status_code).map_or(Exit::Unknown, Exit::Code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                i32::try_from(code).map_or(Exit::Unknown, Exit::Code)
            }
            _ => Exit::Unknown,
        };
        self.finish(exit).await
    }

    async fn stop(&mut self, grace: Duration) -> Result<Exit> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        let t = i32::try_from(grace.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
        match self
            .launcher
            .docker
            .stop_container(
                &self.id,
                Some(StopContainerOptions {
                    t: Some(t),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => {}
            // 304: already stopped; 404: already gone
            Err(e) if status_of(&e).is_some_and(|(s, _)| s == 304 || s == 404) => {}
            Err(e) => {
                let _ = self.finish(Exit::Unknown).await;
                return Err(docker_err(e));
            }
        }
        let exit = self.inspect_exit().await.unwrap_or(Exit::Unknown);
        Ok(self.finish(exit).await)
    }
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        self.log_task.abort();
        if self.exit.is_none()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (launcher, id) = (self.launcher.clone(), self.id.clone());
            rt.spawn(async move { launcher.remove(&id).await });
        }
    }
}
