//! [`ProcessLauncher`]: a server as a child process in its own process group, signalled with
//! rustix (no `unsafe`), with a pid file so a run killed with SIGKILL has its orphans killed by
//! the next start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal, kill_process_group, test_kill_process};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::error::{Error, Exit, Result};
use crate::launcher::{Launcher, Server, ServerId, check_port_free};
use crate::logs::LogBuffer;
use crate::spec::ServerSpec;

/// How long a stop waits for a process after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Launches a [`ServerSpec`]'s command line (wrapper, program, args) as a child process
/// leading its own process group, stdout and stderr read into the [`LogBuffer`].
///
/// With a pid directory, each start writes `<dir>/<name>.pid` (the pid and its start time,
/// and its owner's: this process's); the next start of the same name kills the group it
/// names when that process still runs (same pid *and* start time: never another program that
/// reused the pid) and its owner is gone (a live owner's server is not a leftover: that start
/// fails on its port instead).
#[derive(Debug, Clone, Default)]
pub struct ProcessLauncher {
    pid_dir: Option<PathBuf>,
}

impl ProcessLauncher {
    /// A launcher without pid files (a server is still killed when its owner drops it).
    pub fn new() -> Self {
        ProcessLauncher { pid_dir: None }
    }

    /// Pid files in `dir` (created when missing), for the cleanup after a killed run.
    pub fn with_pid_dir(dir: impl Into<PathBuf>) -> Self {
        ProcessLauncher {
            pid_dir: Some(dir.into()),
        }
    }

    fn pid_file(&self, spec: &ServerSpec) -> Option<PathBuf> {
        self.pid_dir
            .as_ref()
            .map(|d| d.join(format!("{}.pid", spec.name)))
    }

    /// Kills the process group a pid file names if it is still the one started then;
    /// returns whether it did. The file is removed.
    pub async fn cleanup_stale(&self, spec: &ServerSpec) -> Result<bool> {
        let Some(file) = self.pid_file(spec) else {
            return Ok(false);
        };
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(false);
        };
        let mut it = text.split_whitespace();
        let parsed = (
            it.next().and_then(|p| p.parse::<i32>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        );
        // the owner that wrote it (files of older versions name none)
        let owner = (
            it.next().and_then(|p| p.parse::<i32>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        );
        if let (Some(o), Some(o_start)) = owner
            && start_time(o) == Some(o_start)
        {
            // another live process's server: not a leftover, and not ours to remove
            return Ok(false);
        }
        let mut killed = false;
        if let (Some(pid), Some(start)) = parsed
            && let Some(p) = Pid::from_raw(pid)
            && start_time(pid) == Some(start)
        {
            let _ = kill_process_group(p, Signal::KILL);
            killed = true;
            // the group leader is a child of a dead process: init reaps it, soon
            for _ in 0..500 {
                if start_time(pid) != Some(start) || is_zombie(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = std::fs::remove_file(&file);
        Ok(killed)
    }
}

/// Removes pid file `f` if it still holds `record` (what its server wrote).
fn remove_if_ours(f: &std::path::Path, record: &str) {
    if std::fs::read_to_string(f).is_ok_and(|t| t == record) {
        let _ = std::fs::remove_file(f);
    }
}

/// A process's start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count after the last `)`
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

/// Whether `program` names an executable (a path, or a name found on `PATH`).
fn find_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(program))))
}

/// The longest line kept whole in the logs: the rest of a longer one is dropped (a progress
/// bar redrawn with `\r` for minutes, or output with no line end at all, would otherwise be
/// held in memory until it ends).
const MAX_LINE: usize = 64 * 1024;

/// Reads a server's output into its logs until the pipe closes: lines end at `\n` or `\r`
/// (empty ones are skipped), are cut at [`MAX_LINE`] bytes, and bytes that are not UTF-8 are
/// shown replaced — the pipe is always drained, so the server never blocks writing to it.
fn pipe_lines(r: impl AsyncRead + Unpin + Send + 'static, logs: LogBuffer) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = BufReader::new(r);
        let mut line: Vec<u8> = Vec::new();
        let flush = |line: &mut Vec<u8>| {
            if !line.is_empty() {
                logs.push(String::from_utf8_lossy(line).into_owned());
                line.clear();
            }
        };
        loop {
            let chunk = match r.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            let n = chunk.len();
            for piece in chunk.split_inclusive(|b| matches!(b, b'\n' | b'\r')) {
                let (body, ends) = match piece.split_last() {
                    Some((b'\n' | b'\r', body)) => (body, true),
                    _ => (piece, false),
                };
                let room = MAX_LINE.saturating_sub(line.len());
                line.extend_from_slice(&body[..body.len().min(room)]);
                if ends {
                    flush(&mut line);
                }
            }
            r.consume(n);
        }
        flush(&mut line);
    })
}

#[async_trait]
impl Launcher for ProcessLauncher {
    async fn start(&self, spec: &ServerSpec, logs: LogBuffer) -> Result<Box<dyn Server>> {
        self.cleanup_stale(spec).await?;
        check_port_free(spec.port)?;
        let cmd = spec.command_line();
        let (program, args) = cmd.split_first().expect("a command line has its program");
        if !find_program(program) {
            return Err(Error::BinaryMissing {
                program: program.clone(),
            });
        }
        let mut c = Command::new(program);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if spec.clear_env {
            c.env_clear();
        } else {
            // this process's keys are not the server's (nor its children's)
            let names: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect();
            for k in spec.env_withheld(names.iter().map(String::as_str)) {
                c.env_remove(k);
            }
        }
        c.envs(spec.process_env());
        let mut child = c.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                Error::BinaryMissing {
                    program: program.clone(),
                }
            }
            _ => Error::Io(e),
        })?;
        let pid = child.id().ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "the child exited before its pid was read",
            ))
        })?;
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(pipe_lines(out, logs.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(pipe_lines(err, logs.clone()));
        }
        // held before the pid file is written: a failure to write it drops the server, which
        // kills its whole group (the leader alone would leave its children running)
        let mut server = ProcessServer {
            child,
            pid,
            logs,
            pid_file: None,
            exit: None,
            readers,
        };
        if let Some(file) = self.pid_file(spec) {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let start = start_time(pid as i32).unwrap_or(0);
            let owner = std::process::id();
            let owner_start = start_time(owner as i32).unwrap_or(0);
            let record = format!("{pid} {start} {owner} {owner_start}\n");
            std::fs::write(&file, &record)?;
            server.pid_file = Some((file, record));
        }
        tracing::debug!(pid, program = %program, "server process started");
        Ok(Box::new(server))
    }
}

/// A running child process (see [`ProcessLauncher`]).
#[derive(Debug)]
struct ProcessServer {
    child: Child,
    pid: u32,
    logs: LogBuffer,
    /// Its pid file and what this server wrote there (removed only while it still says so:
    /// a later start of the same name may have written its own).
    pid_file: Option<(PathBuf, String)>,
    exit: Option<Exit>,
    /// The tasks reading stdout and stderr into the logs.
    readers: Vec<JoinHandle<()>>,
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => Exit::Unknown,
    }
}

impl ProcessServer {
    fn group(&self) -> Option<Pid> {
        Pid::from_raw(self.pid as i32)
    }

    /// Kills whatever is left in the group (the leader gone, its children maybe not).
    fn kill_group(&self) {
        if let Some(g) = self.group() {
            let _ = kill_process_group(g, Signal::KILL);
        }
    }

    fn finished(&mut self, exit: Exit) -> Exit {
        self.exit = Some(exit);
        self.kill_group();
        if let Some((f, record)) = self.pid_file.take() {
            remove_if_ours(&f, &record);
        }
        exit
    }

    /// Waits (briefly) until its last output is in the logs: the group is dead, so its pipes
    /// close.
    async fn drain(&mut self) {
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
        }
    }
}

#[async_trait]
impl Server for ProcessServer {
    fn id(&self) -> ServerId {
        ServerId::Pid(self.pid)
    }

    fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    async fn is_alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.finished(exit_of(status));
                false
            }
            Err(_) => self.group().is_some_and(|p| test_kill_process(p).is_ok()),
        }
    }

    async fn exited(&mut self) -> Exit {
        if let Some(e) = self.exit {
            return e;
        }
        let exit = match self.child.wait().await {
            Ok(status) => exit_of(status),
            Err(_) => Exit::Unknown,
        };
        self.finished(exit);
        self.drain().await;
        exit
    }

    async fn stop(&mut self, grace: Duration) -> Result<Exit> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        if let Some(g) = self.group() {
            let _ = kill_process_group(g, Signal::TERM);
        }
        let exit = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => exit_of(status),
            Ok(Err(e)) => return Err(Error::Io(e)),
            Err(_) => {
                self.kill_group();
                // a process stuck in the kernel (a hung driver or file system read) outlives
                // even SIGKILL: the stop ends, and says so
                match tokio::time::timeout(KILL_WAIT, self.child.wait()).await {
                    Ok(status) => exit_of(status?),
                    Err(_) => {
                        return Err(Error::Io(std::io::Error::other(format!(
                            "the server did not exit within {KILL_WAIT:?} of SIGKILL"
                        ))));
                    }
                }
            }
        };
        self.finished(exit);
        self.drain().await;
        Ok(exit)
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        // a descendant that left the group may hold its pipes open: the readers end here
        for r in &self.readers {
            r.abort();
        }
        if self.exit.is_none() {
            // the whole group, not only the child (kill_on_drop reaps the child)
            self.kill_group();
            if let Some((f, record)) = self.pid_file.take() {
                remove_if_ours(&f, &record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Output that is not UTF-8, a progress bar redrawn with `\r` and a line with no end
    /// are all read, cut at the bound and shown; the pipe is drained to its end, so the
    /// writer never blocks (a 64 KiB pipe buffer left full stalled the server).
    #[tokio::test]
    async fn every_byte_of_output_is_read_and_long_lines_are_cut() {
        let (mut w, r) = tokio::io::duplex(1024);
        let logs = LogBuffer::new(1024);
        let reader = pipe_lines(r, logs.clone());
        let written = async {
            w.write_all(b"start\n\xff\xfe bad bytes\nnext\r\n").await?;
            for i in 0..100 {
                w.write_all(format!("{i}%\r").as_bytes()).await?;
            }
            // 1 MiB in one line, then more lines after it: all through a 1 KiB pipe
            w.write_all(&vec![b'x'; 1024 * 1024]).await?;
            w.write_all(b"\nafter\nlast without end").await?;
            drop(w);
            reader.await.map_err(std::io::Error::other)
        };
        tokio::time::timeout(Duration::from_secs(10), written)
            .await
            .expect("the writer never blocks and the reader ends with the pipe")
            .unwrap();
        let lines = logs.lines();
        assert_eq!(lines[0], "start");
        assert_eq!(lines[1], "\u{fffd}\u{fffd} bad bytes");
        assert_eq!(lines[2], "next");
        let n = lines.len();
        assert_eq!(lines[n - 3].len(), MAX_LINE, "cut at the bound");
        assert_eq!(lines[n - 2], "after");
        assert_eq!(lines[n - 1], "last without end");
        assert!(lines.contains(&"99%".to_owned()));
    }
}
