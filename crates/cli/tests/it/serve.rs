//! `infermux serve`: a server started in the foreground, ready, then stopped by Ctrl-C (SIGINT),
//! SIGTERM or SIGHUP with nothing left running; a missing binary is a clear failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| !s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

fn python() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("python3").is_file()));
    if !found {
        infermux_testkit::skip::skip(
            infermux_testkit::skip::Need::Server,
            "python3 (the test HTTP server) is not on PATH",
        );
    }
    found
}

/// `infermux ARGS` started with its stderr read line by line on a thread of its own.
fn spawn_cli(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut cli = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(args)
        // (pid files only where a test puts them, never the developer's runtime folder)
        .env_remove("XDG_RUNTIME_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = cli.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (cli, rx)
}

/// The first line of `rx` that contains `what`, within a minute.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("`{what}` within a minute"));
        if line.contains(what) {
            return line;
        }
    }
}

/// The server's pid in a `ready on … (pid N)` line.
fn pid_in(ready: &str) -> u32 {
    ready
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a pid in `{ready}`"))
}

#[test]
fn serve_runs_a_command_until_ready_and_ctrl_c_stops_it_and_its_server() {
    serve_until(&["-INT"]);
}

/// `kill`, `timeout` and service managers send SIGTERM; a closed terminal SIGHUP. Before, the
/// CLI died of either and its server (a process group of its own) served on, unowned.
#[test]
fn sigterm_and_sighup_stop_the_server_too() {
    serve_until(&["-TERM"]);
    serve_until(&["-HUP"]);
}

/// Serves `python3 -m http.server` until `kill SIGNAL` reaches the CLI.
fn serve_until(signal: &[&str]) {
    if !python() {
        return;
    }
    let port = free_port().to_string();
    let (mut cli, rx) = spawn_cli(
        &[
            "serve",
            "cmd",
            "--port",
            &port,
            "--ready",
            "/",
            "--",
            "python3",
            "-m",
            "http.server",
            &port,
            "--bind",
            "127.0.0.1",
        ],
        &[],
    );
    let ready = wait_for(&rx, "ready on");
    assert!(
        ready.contains(&format!("http://127.0.0.1:{port}")),
        "{ready}"
    );
    let pid = pid_in(&ready);
    assert!(running(pid));
    let sent = Command::new("kill")
        .args(signal)
        .arg(cli.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let status = cli.wait().unwrap();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("stopping cmd")),
        "{rest:?}"
    );
    assert!(!running(pid), "the server {pid} was stopped with the CLI");
}

/// The server does not inherit the keys infermux reads (a provider's API key, the AWS
/// secrets `--fetch` uses) unless named with `--env`; other variables it does. Before, every
/// key in the shell went to the third-party server and everything it spawns.
#[test]
fn serve_keeps_this_shells_keys_from_the_server_unless_named() {
    if !python() {
        return;
    }
    let port = free_port().to_string();
    let script = format!(
        "import os, http.server, socketserver\n\
         ok = os.environ.get('OPENAI_API_KEY') is None \
              and os.environ.get('AWS_SECRET_ACCESS_KEY') is None \
              and os.environ.get('PLAIN_SETTING') == 'kept' \
              and os.environ.get('GROQ_API_KEY') == 'named'\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(200 if ok else 500); self.end_headers()\n\
         socketserver.TCPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let (mut cli, rx) = spawn_cli(
        &[
            "serve",
            "--env",
            "GROQ_API_KEY",
            "--ready-timeout",
            "15",
            "cmd",
            "--port",
            &port,
            "--ready",
            "/",
            "--",
            "python3",
            "-c",
            &script,
        ],
        &[
            ("OPENAI_API_KEY", "sk-kept-from-the-server"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("GROQ_API_KEY", "named"),
            ("PLAIN_SETTING", "kept"),
        ],
    );
    // ready only when the server answers 200: when its environment is as it should be
    let mut ready = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if line.contains("ready on") {
            ready = true;
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &cli.id().to_string()])
        .status();
    let _ = cli.wait();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(ready, "the server saw keys it should not have: {rest:?}");
}

#[test]
fn serve_fails_clearly_when_the_server_binary_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["serve", "--program", "/nonexistent/llama-server", "llama"])
        .args(["-m", "/models/m.gguf", "--port", &free_port().to_string()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("binary `/nonexistent/llama-server` not found"),
        "{stderr}"
    );
}

#[test]
fn container_flags_without_docker_are_refused_not_ignored() {
    let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["serve", "--memory", "8000000000", "--volume", "/a:/b"])
        .args(["--program", "/nonexistent/llama-server", "llama"])
        .args(["-m", "/models/m.gguf", "--port", &free_port().to_string()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--volume, --memory apply to containers only"),
        "{stderr}"
    );
}

/// A second Ctrl-C while the stop waits out its grace period (a server that ignores SIGTERM)
/// ends the CLI at once, its server killed with it. Before, the signal handlers stayed
/// installed and did nothing: the CLI sat through the whole grace period.
#[test]
fn a_second_ctrl_c_during_the_stop_leaves_at_once() {
    if !python() {
        return;
    }
    let port = free_port().to_string();
    let script = format!("trap '' TERM; exec python3 -m http.server {port} --bind 127.0.0.1");
    let (mut cli, rx) = spawn_cli(
        &[
            "serve", "cmd", "--port", &port, "--ready", "/", "--", "sh", "-c", &script,
        ],
        &[],
    );
    let pid = pid_in(&wait_for(&rx, "ready on"));
    let int = || {
        Command::new("kill")
            .args(["-INT", &cli.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(int().success());
    wait_for(&rx, "stopping cmd");
    let asked = std::time::Instant::now();
    assert!(int().success());
    let status = cli.wait().unwrap();
    // the grace period is 10 s: well before it
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(status.success(), "{status}");
    // the SIGKILL went out as the CLI ended; the kernel ends the process (no longer our
    // child: nothing to wait on) on its own schedule, looked at every 20 ms for 5 s at most
    let gone = (0..250).any(|_| {
        let out = !running(pid);
        if !out {
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    });
    assert!(gone, "the server {pid} outlived the CLI");
}

/// A CLI killed with SIGKILL (or by the OOM killer) leaves its server running, a process
/// group of its own; with `$XDG_RUNTIME_DIR` set, its pid file there lets the next `serve` of
/// that name kill it and serve on the same port. Before, without `--pid-dir`, nothing was
/// recorded: the orphan kept the port and every later start failed with "port in use".
#[test]
fn a_sigkilled_clis_server_is_killed_by_the_next_serve() {
    if !python() {
        return;
    }
    let runtime = std::env::temp_dir().join(format!("infermux-xdg-{}", std::process::id()));
    std::fs::create_dir_all(&runtime).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let owner_only = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(&runtime, owner_only).unwrap();
    }
    let port = free_port().to_string();
    let args = [
        "serve",
        "cmd",
        "--port",
        &port,
        "--ready",
        "/",
        "--",
        "python3",
        "-m",
        "http.server",
        &port,
        "--bind",
        "127.0.0.1",
    ];
    let xdg = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let (mut first, rx) = spawn_cli(&args, &xdg);
    let orphan = pid_in(&wait_for(&rx, "ready on"));
    first.kill().unwrap(); // SIGKILL: no cleanup runs
    first.wait().unwrap();
    assert!(running(orphan), "the server outlived its CLI");
    let (mut second, rx) = spawn_cli(&args, &xdg);
    let ready = wait_for(&rx, "ready on");
    let server = pid_in(&ready);
    assert_ne!(server, orphan);
    assert!(
        !running(orphan),
        "the orphan {orphan} was killed by the next start"
    );
    let sent = Command::new("kill")
        .arg("-INT")
        .arg(second.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(second.wait().unwrap().success());
    assert!(!running(server));
    let _ = std::fs::remove_dir_all(&runtime);
}
