//! `cargo xtask bench peers [--quick] [--peers LIST] [--repeats N] [--secs S] [--docs]`: the
//! side-by-side peer benchmark.
//!
//! This module only orchestrates, with `std`: it builds the `peers` binary of
//! `infermux-benches` (release), installs the Python and Node peers outside the clone (once,
//! pinned; install time is not part of the run), starts the mock upstream, runs every point of
//! the matrix as a fresh process (the Rust driver, the Python driver `benches/peers/driver.py`,
//! or the Portkey gateway forced onto loopback plus the Rust driver), collects the JSON result
//! lines and hands them to `peers report`, which writes `<target>/bench-report/peers.md`,
//! `peers.png` and `peers-targets.md` (the issue's targets, pass or fail, printed last). With
//! `--docs` the report also replaces the "Peers" block of `docs/benchmarks.md`.
//!
//! The peers live in `$INFERMUX_CI_HOME/peers` (default `/var/cache/infermux-ci/peers`):
//! `venv/` (PyPI `tensorzero`, `litellm`) and `node/` (npm `@portkey-ai/gateway`). The matrix
//! is [`matrix`]; adding a peer is a line in [`RUST_PEERS`] (after its arm in the driver).
//! Not part of `cargo xtask ci`: it needs the registries and minutes of a quiet machine.

use std::{
    env, fs,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Result, cargo, display, read_to_string, run as run_cmd, target_dir};

/// The peers the Rust driver runs in process (names as `peers drive --peer` takes them).
pub(crate) const RUST_PEERS: &[&str] = &[
    "reqwest",
    "infermux-disabled",
    "infermux-standard",
    "infermux-pool",
    "async-openai",
];
/// The gateways, each with the runtime label of its results.
pub(crate) const GATEWAYS: &[&str] = &["tensorzero", "portkey", "litellm"];

/// The pinned PyPI packages of the Python peers.
pub(crate) const PIP_PACKAGES: &[&str] = &["tensorzero==2026.6.0", "litellm==1.110.2"];
/// The pinned npm package of the Portkey gateway.
pub(crate) const NPM_PACKAGE: &str = "@portkey-ai/gateway@1.15.2";
/// The gateway's entry point inside `node/node_modules`.
const PORTKEY_ENTRY: &str = "@portkey-ai/gateway/build/start-server.js";

/// Why the matrix has no streamed Portkey point.
const PORTKEY_STREAM_NOTE: &str = "Portkey's streamed answers are not measured: Portkey 1.15.2 on \
    this machine's Node 20 answers every streamed chat completion with a 500 (`TypeError: \
    immutable` in its `updateHeaders`, the bug class of Portkey-AI/gateway issues 1389 and 1550).";

/// Cap on requests in flight in an open loop.
const OPEN_LOOP_CAP: u32 = 1024;

/// `bench peers` options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    /// Fewer points, shorter windows, one repeat.
    pub(crate) quick: bool,
    /// Only these peers (reqwest is always added: it is the baseline).
    pub(crate) peers: Option<Vec<String>>,
    /// Repeats of the whole matrix (default 1 quick, 3 full).
    pub(crate) repeats: Option<u32>,
    /// Seconds per point (default 1 quick, 2 full).
    pub(crate) secs: Option<f64>,
    /// Write the figures into docs/benchmarks.md.
    pub(crate) docs: bool,
}

/// One point of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub(crate) peer: &'static str,
    /// `current` or `multi` for the Rust peers; ignored by the gateways.
    pub(crate) runtime: &'static str,
    pub(crate) open: bool,
    pub(crate) stream: bool,
    pub(crate) concurrency: u32,
    pub(crate) rate: u32,
}

fn closed(peer: &'static str, runtime: &'static str, stream: bool, c: u32) -> Spec {
    Spec {
        peer,
        runtime,
        open: false,
        stream,
        concurrency: c,
        rate: 0,
    }
}

fn open(peer: &'static str, runtime: &'static str, rate: u32) -> Spec {
    Spec {
        peer,
        runtime,
        open: true,
        stream: false,
        concurrency: OPEN_LOOP_CAP,
        rate,
    }
}

/// The points of one repeat, peers interleaved point by point so a burst of noise from the
/// shared machine hits them all alike.
pub(crate) fn matrix(quick: bool, peers: &[&'static str]) -> Vec<Spec> {
    let mut out = Vec::new();
    let rust: Vec<&'static str> = peers
        .iter()
        .copied()
        .filter(|p| RUST_PEERS.contains(p))
        .collect();
    let gateways: Vec<&'static str> = peers
        .iter()
        .copied()
        .filter(|p| GATEWAYS.contains(p))
        .collect();
    let (runtimes, concurrencies, rates): (&[&str], &[u32], &[u32]) = if quick {
        (&["current"], &[16, 64], &[1000])
    } else {
        (&["current", "multi"], &[1, 16, 64, 256], &[1000, 5000])
    };
    for runtime in runtimes {
        for stream in [false, true] {
            for &c in concurrencies {
                if quick && stream && c != 16 {
                    continue;
                }
                out.extend(rust.iter().map(|p| closed(p, runtime, stream, c)));
            }
        }
        for &rate in rates {
            out.extend(rust.iter().map(|p| open(p, runtime, rate)));
        }
    }
    if quick {
        // The 2-worker runtime at the two points the issue sets targets for.
        for c in [16, 64] {
            out.extend(rust.iter().map(|p| closed(p, "multi", false, c)));
        }
    }
    for stream in [false, true] {
        for &c in concurrencies {
            if quick && c != 16 {
                continue;
            }
            out.extend(
                gateways
                    .iter()
                    .filter(|p| !(stream && **p == "portkey"))
                    .map(|p| closed(p, "current", stream, c)),
            );
        }
    }
    if !quick {
        // Gateways at the lower rate only: they saturate long before 5k/s.
        out.extend(gateways.iter().map(|p| open(p, "current", 1000)));
    }
    out
}

/// Builds the `peers` driver (release); its path and the report folder (created).
pub(crate) fn build_driver(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let target = target_dir(root);
    let out_dir = target.join("bench-report");
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    run_cmd(cargo(root).args([
        "build",
        "--release",
        "-p",
        "infermux-benches",
        "--bin",
        "peers",
    ]))?;
    Ok((target.join("release/peers"), out_dir))
}

/// `bench peers`.
pub(crate) fn run(root: &Path, opts: &Options) -> Result<()> {
    let started = Instant::now();
    let peers = selected(opts)?;
    let repeats = opts.repeats.unwrap_or(if opts.quick { 1 } else { 3 });
    let secs = opts.secs.unwrap_or(if opts.quick { 1.0 } else { 2.0 });
    let warmup = if opts.quick { 0.3 } else { 0.5 };
    let (bin, out_dir) = build_driver(root)?;
    let home = peers_home();
    let (python, node_modules) = prepare(&home, &peers)?;
    let prepared = Instant::now();

    let (mut upstream, upstream_url) = start_upstream(&bin)?;

    let specs = matrix(opts.quick, &peers);
    let total = specs.len() * repeats as usize;
    let results = out_dir.join("peers.jsonl");
    let mut lines = String::new();
    let mut saturated: Vec<String> = Vec::new();
    let mut n = 0;
    let mut record = |spec: &Spec, line: String| -> Result<()> {
        n += 1;
        eprintln!(
            "[{n}/{total}] {} {}: {}",
            spec.peer,
            label(spec),
            brief(&line)
        );
        lines.push_str(&line);
        lines.push('\n');
        fs::write(&results, &lines).map_err(|e| format!("{}: {e}", results.display()))
    };
    let gateway_warmup = if opts.quick { 1.0 } else { 2.0 };
    for repeat in 0..repeats {
        // The Rust peers: a fresh process per point, peers interleaved.
        for spec in specs.iter().filter(|s| RUST_PEERS.contains(&s.peer)) {
            let mut cmd = Command::new(&bin);
            cmd.args(["drive", "--peer", spec.peer, "--runtime", spec.runtime])
                .args(driver_args(&upstream_url, spec, repeat, warmup, secs));
            record(spec, output_lines(&mut cmd, 1)?.remove(0))?;
        }
        // The gateways: one gateway process per repeat serves all its points.
        for gateway in GATEWAYS {
            let points: Vec<&Spec> = specs.iter().filter(|s| s.peer == *gateway).collect();
            if points.is_empty() {
                continue;
            }
            if *gateway == "portkey" {
                let port = free_port()?;
                let mut node = Spawned::start(
                    Command::new("node")
                        .arg("--require")
                        .arg(root.join("benches/peers/loopback.cjs"))
                        .arg(node_modules.join(PORTKEY_ENTRY))
                        .arg(format!("--port={port}"))
                        .arg("--headless")
                        .env("NODE_ENV", "production")
                        .stdout(Stdio::null()),
                    "the Portkey gateway",
                )?;
                wait_listening(port, Duration::from_secs(30))?;
                verify_loopback_only(node.pid(), port)?;
                for spec in points {
                    let mut cmd = Command::new(&bin);
                    cmd.args(["drive", "--peer", "portkey", "--gateway"])
                        .arg(format!("http://127.0.0.1:{port}"))
                        .args(["--gateway-pid", &node.pid().to_string()])
                        .args(driver_args(
                            &upstream_url,
                            spec,
                            repeat,
                            gateway_warmup,
                            secs,
                        ));
                    record(spec, output_lines(&mut cmd, 1)?.remove(0))?;
                }
                node.stop();
            } else {
                let mut cmd = Command::new(&python);
                cmd.arg(root.join("benches/peers/driver.py"))
                    .args(["--peer", gateway, "--upstream", &upstream_url])
                    .args(["--warmup", &gateway_warmup.to_string()])
                    .args(["--secs", &secs.to_string(), "--repeat", &repeat.to_string()]);
                for spec in &points {
                    let kind = if spec.stream { "stream" } else { "plain" };
                    let mode = if spec.open { "open" } else { "closed" };
                    cmd.arg("--point")
                        .arg(format!("{mode}:{}:{}:{kind}", spec.concurrency, spec.rate));
                }
                let got = output_lines(&mut cmd, points.len())?;
                for (spec, line) in points.into_iter().zip(got) {
                    if is_saturated(&line) {
                        let what = format!("{} {} in repeat {repeat}", spec.peer, label(spec));
                        eprintln!("left out (saturated, nothing answered): {what}");
                        saturated.push(what);
                    } else {
                        record(spec, line)?;
                    }
                }
            }
        }
    }
    upstream.stop();
    let measured = prepared.elapsed();

    let command = command_line(opts);
    let mut report = Command::new(&bin);
    report
        .args(["report", "--input"])
        .arg(&results)
        .arg("--out")
        .arg(&out_dir);
    report.args(["--command", &command]);
    report.args([
        "--note",
        &format!(
            "{} points × {repeats} repeat(s), {secs} s each after a {warmup} s warm-up; the run \
             took {:.0} s once built and installed. Peers: async-openai 0.43 (Rust), {}, {}.",
            specs.len(),
            measured.as_secs_f64(),
            PIP_PACKAGES.join(", "),
            NPM_PACKAGE
        ),
    ]);
    if peers.contains(&"portkey") {
        report.args(["--note", PORTKEY_STREAM_NOTE]);
    }
    if !saturated.is_empty() {
        report.args([
            "--note",
            &format!(
                "Left out as saturated (no answer within the window and 30 s after it, every \
                 send dropped or unanswered: the peer cannot serve that rate): {}.",
                saturated.join("; ")
            ),
        ]);
    }
    run_cmd(&mut report)?;
    let md = out_dir.join("peers.md");
    let text = read_to_string(&md)?;
    println!("\n{text}");
    if opts.docs {
        let docs = root.join("docs/benchmarks.md");
        let updated = splice_docs(&read_to_string(&docs)?, &text)?;
        fs::write(&docs, updated).map_err(|e| format!("{}: {e}", docs.display()))?;
        println!("updated {}", docs.display());
    }
    // The targets last, where they are seen.
    println!("\n{}", read_to_string(&out_dir.join("peers-targets.md"))?);
    println!(
        "bench peers: {} s measuring ({} s in all, build and installs included); results in {}",
        measured.as_secs(),
        started.elapsed().as_secs(),
        out_dir.display()
    );
    Ok(())
}

fn command_line(opts: &Options) -> String {
    let mut c = "cargo xtask bench peers".to_owned();
    if opts.quick {
        c.push_str(" --quick");
    }
    if let Some(p) = &opts.peers {
        c.push_str(&format!(" --peers {}", p.join(",")));
    }
    if let Some(r) = opts.repeats {
        c.push_str(&format!(" --repeats {r}"));
    }
    if let Some(s) = opts.secs {
        c.push_str(&format!(" --secs {s}"));
    }
    c
}

fn label(spec: &Spec) -> String {
    let rt = if GATEWAYS.contains(&spec.peer) {
        ""
    } else {
        spec.runtime
    };
    if spec.open {
        format!("{rt} open {}/s", spec.rate)
    } else {
        format!(
            "{rt} c={}{}",
            spec.concurrency,
            if spec.stream { " stream" } else { "" }
        )
    }
}

/// `"rps":12345.6` → `12346 req/s`, for the progress line.
fn brief(line: &str) -> String {
    let field = |key: &str| json_field(line, key).unwrap_or("");
    let rps: f64 = field("rps").parse().unwrap_or(f64::NAN);
    format!(
        "{rps:.0} req/s, p50 {} µs, errors {}",
        field("p50_us"),
        field("errors")
    )
}

fn selected(opts: &Options) -> Result<Vec<&'static str>> {
    let all: Vec<&'static str> = RUST_PEERS.iter().chain(GATEWAYS).copied().collect();
    select_peers(opts.peers.as_deref(), &all)
}

/// The peers named (each of `all`), bare reqwest first; every one of `all` when none is named.
pub(crate) fn select_peers(
    names: Option<&[String]>,
    all: &[&'static str],
) -> Result<Vec<&'static str>> {
    let Some(names) = names else {
        return Ok(all.to_vec());
    };
    let mut out = vec!["reqwest"];
    for name in names {
        let peer = all
            .iter()
            .find(|p| *p == name)
            .ok_or_else(|| format!("unknown peer `{name}` (peers: {})", all.join(", ")))?;
        if !out.contains(peer) {
            out.push(peer);
        }
    }
    Ok(out)
}

/// The raw text of field `key` in a flat JSON line (up to the next `,` or `}`, trimmed).
pub(crate) fn json_field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let (_, rest) = line.split_once(&format!("\"{key}\":"))?;
    rest.split([',', '}']).next().map(str::trim)
}

/// `$INFERMUX_CI_HOME/peers`, default `/var/cache/infermux-ci/peers`.
fn peers_home() -> PathBuf {
    match env::var_os("INFERMUX_CI_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("peers"),
        _ => PathBuf::from("/var/cache/infermux-ci/peers"),
    }
}

/// Installs the Python and Node peers under `home` unless the pinned versions are there
/// already; returns the venv's python and the `node_modules` folder.
fn prepare(home: &Path, peers: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let python = home.join("venv/bin/python");
    let node_modules = home.join("node/node_modules");
    fs::create_dir_all(home).map_err(|e| format!("{}: {e}", home.display()))?;
    if peers.iter().any(|p| *p == "tensorzero" || *p == "litellm") {
        let marker = home.join("venv/infermux-pinned.txt");
        let want = PIP_PACKAGES.join("\n");
        if fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
            if !python.exists() {
                run_cmd(
                    Command::new("python3")
                        .args(["-m", "venv"])
                        .arg(home.join("venv")),
                )?;
            }
            run_cmd(
                Command::new(home.join("venv/bin/pip"))
                    .args(["install", "--disable-pip-version-check", "-q"])
                    .args(PIP_PACKAGES),
            )?;
            fs::write(&marker, want).map_err(|e| format!("{}: {e}", marker.display()))?;
        }
    }
    if peers.contains(&"portkey") {
        let marker = home.join("node/infermux-pinned.txt");
        if fs::read_to_string(&marker).ok().as_deref() != Some(NPM_PACKAGE) {
            fs::create_dir_all(home.join("node")).map_err(|e| e.to_string())?;
            run_cmd(
                Command::new("npm")
                    .args(["install", "--prefix"])
                    .arg(home.join("node"))
                    .args(["--no-audit", "--no-fund", NPM_PACKAGE]),
            )?;
            fs::write(&marker, NPM_PACKAGE).map_err(|e| format!("{}: {e}", marker.display()))?;
        }
    }
    Ok((python, node_modules))
}

/// A child process this run started; killed (by its handle) when dropped.
/// Starts the mock upstream of the `peers` binary `bin` on a free loopback port; it and its
/// base URL.
pub(crate) fn start_upstream(bin: &Path) -> Result<(Spawned, String)> {
    let mut upstream = Spawned::start(Command::new(bin).arg("upstream"), "the mock upstream")?;
    let line = upstream.first_line()?;
    let addr = line
        .strip_prefix("listening ")
        .ok_or_else(|| format!("the mock upstream said `{line}`"))?
        .to_owned();
    Ok((upstream, format!("http://{addr}")))
}

/// A child process, killed when dropped.
pub(crate) struct Spawned {
    child: Child,
    what: String,
}

impl Spawned {
    fn start(cmd: &mut Command, what: &str) -> Result<Spawned> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start {what} (`{}`): {e}", display(cmd)))?;
        Ok(Spawned {
            child,
            what: what.to_owned(),
        })
    }

    fn first_line(&mut self) -> Result<String> {
        let out = self.child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("{}: {e}", self.what))?;
        Ok(line.trim().to_owned())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The arguments of one point for the Rust driver.
fn driver_args(upstream: &str, spec: &Spec, repeat: u32, warmup: f64, secs: f64) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--upstream".into(),
        upstream.into(),
        "--mode".into(),
        if spec.open { "open" } else { "closed" }.into(),
        "--concurrency".into(),
        spec.concurrency.to_string(),
        "--warmup".into(),
        warmup.to_string(),
        "--secs".into(),
        secs.to_string(),
        "--repeat".into(),
        repeat.to_string(),
    ];
    if spec.open {
        args.extend(["--rate".into(), spec.rate.to_string()]);
    }
    if spec.stream {
        args.push("--stream".into());
    }
    args
}

/// The Python driver's line for an open-loop point its peer could not serve at all.
fn is_saturated(line: &str) -> bool {
    line.contains("\"saturated\": true")
}

/// Runs `cmd` (stderr shown) and returns the `expected` JSON lines it printed; fails on a
/// non-zero exit or another count of lines.
fn output_lines(cmd: &mut Command, expected: usize) -> Result<Vec<String>> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{}`: {e}", display(cmd)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed ({})", display(cmd), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| l.trim().to_owned())
        .collect();
    if lines.len() == expected {
        Ok(lines)
    } else {
        Err(format!(
            "`{}` printed {} result line(s), not {expected}",
            display(cmd),
            lines.len()
        ))
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_listening(port: u16, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the gateway did not listen on 127.0.0.1:{port} within {limit:?}"
    ))
}

/// Runs `ss -ltnpH` and checks with [`check_loopback_only`] that `pid` listens on
/// `127.0.0.1:port` and nowhere beyond 127.0.0.0/8; an error (which stops the run) otherwise,
/// or when `ss` cannot run or fails.
pub(crate) fn verify_loopback_only(pid: u32, port: u16) -> Result<()> {
    let ss = Command::new("ss")
        .arg("-ltnpH")
        .output()
        .map_err(|e| format!("could not run `ss -ltnp`: {e}"))?;
    if !ss.status.success() {
        return Err(format!(
            "`ss -ltnp` failed ({}): {}",
            ss.status,
            String::from_utf8_lossy(&ss.stderr).trim()
        ));
    }
    check_loopback_only(&String::from_utf8_lossy(&ss.stdout), pid, port)
}

/// Checks `ss -ltnpH` output: `pid` listens on `127.0.0.1:port`, and on no address outside
/// 127.0.0.0/8.
pub(crate) fn check_loopback_only(ss: &str, pid: u32, port: u16) -> Result<()> {
    let tag = format!("pid={pid},");
    let mut expected = false;
    for line in ss.lines().filter(|l| l.contains(&tag)) {
        // State Recv-Q Send-Q Local:Port Peer:Port Process
        let local = line.split_whitespace().nth(3).unwrap_or("");
        let (host, p) = local.rsplit_once(':').unwrap_or((local, ""));
        if !host.starts_with("127.") {
            return Err(format!(
                "the gateway (pid {pid}) listens on {local}, not on 127.0.0.0/8 only: `{}`",
                line.trim()
            ));
        }
        if host == "127.0.0.1" && p == port.to_string() {
            expected = true;
        }
    }
    if expected {
        Ok(())
    } else {
        Err(format!(
            "`ss -ltnp` shows no 127.0.0.1:{port} socket of pid {pid}"
        ))
    }
}

const DOCS_BEGIN: &str = "<!-- BEGIN peers: written by `cargo xtask bench peers --docs` -->";
const DOCS_END: &str = "<!-- END peers -->";

/// Replaces the block between the markers of `docs` with `report`, or appends a "Peers"
/// section holding it. A file with one marker but not the other is an error.
pub(crate) fn splice_docs(docs: &str, report: &str) -> Result<String> {
    let block = format!("{DOCS_BEGIN}\n{}\n{DOCS_END}", report.trim_end());
    match (docs.find(DOCS_BEGIN), docs.find(DOCS_END)) {
        (Some(b), Some(e)) if b < e => Ok(format!(
            "{}{block}{}",
            &docs[..b],
            &docs[e + DOCS_END.len()..]
        )),
        (None, None) => Ok(format!(
            "{}\n## Peers\n\nThe same workload through bare reqwest, infermux and the other \
             clients and gateways (`cargo xtask bench peers`; the harness is \
             `benches/src/peers/`).\n\n{block}\n",
            docs.trim_end_matches('\n').to_owned() + "\n"
        )),
        _ => Err("docs/benchmarks.md: the peers markers are missing or out of order".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_is_a_subset_of_the_full_matrix_with_every_peer() {
        let all: Vec<&'static str> = RUST_PEERS.iter().chain(GATEWAYS).copied().collect();
        let quick = matrix(true, &all);
        let full = matrix(false, &all);
        assert!(
            quick.len() <= full.len() / 3,
            "{} vs {}",
            quick.len(),
            full.len()
        );
        for q in &quick {
            assert!(full.contains(q), "{q:?}");
        }
        for peer in &all {
            assert!(quick.iter().any(|s| s.peer == *peer), "{peer}");
        }
        // The full matrix: 5 Rust peers × 2 runtimes × (8 closed + 2 open) + 3 gateways × 9,
        // less Portkey's 4 streamed points; the quick one: 5 Rust peers × (4 current-thread
        // + 2 two-worker points) + 5 gateway points.
        assert_eq!(full.len(), 5 * 2 * 10 + 3 * 9 - 4);
        assert_eq!(quick.len(), 5 * 6 + 5);
        assert!(!full.iter().any(|s| s.peer == "portkey" && s.stream));
        assert!(
            full.iter()
                .any(|s| s.open && s.rate == 5000 && s.runtime == "multi")
        );
    }

    #[test]
    fn a_listener_beyond_loopback_fails_the_check() {
        let ok = "LISTEN 0 511 127.0.0.1:4000 0.0.0.0:* users:((\"node\",pid=77,fd=21))\n\
                  LISTEN 0 4096 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n";
        assert_eq!(check_loopback_only(ok, 77, 4000), Ok(()));
        let all = "LISTEN 0 511 *:4000 *:* users:((\"node\",pid=77,fd=21))\n";
        assert!(check_loopback_only(all, 77, 4000).is_err());
        let v6 = "LISTEN 0 511 [::]:4000 [::]:* users:((\"node\",pid=77,fd=21))\n";
        assert!(check_loopback_only(v6, 77, 4000).is_err());
        let extra =
            format!("{ok}LISTEN 0 511 0.0.0.0:9229 0.0.0.0:* users:((\"node\",pid=77,fd=22))\n");
        assert!(check_loopback_only(&extra, 77, 4000).is_err());
        assert!(check_loopback_only(ok, 78, 4000).is_err());
        // pid=7 must not match pid=77.
        assert!(check_loopback_only(ok, 7, 4000).is_err());
    }

    #[test]
    fn the_loopback_check_reads_real_ss_output_and_can_fail() {
        // Listeners of this process: the expected one passes; an IPv6 one (loopback, but not
        // 127.0.0.0/8 as the check demands) and a missing one fail. Nothing listens beyond
        // loopback.
        let pid = std::process::id();
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        assert_eq!(verify_loopback_only(pid, port), Ok(()));
        let other = free_port().unwrap();
        let e = verify_loopback_only(pid, other).unwrap_err();
        assert!(e.contains("shows no 127.0.0.1"), "{e}");
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let e = verify_loopback_only(pid, port).unwrap_err();
            let v6_port = v6.local_addr().unwrap().port();
            assert!(e.contains(&format!("[::1]:{v6_port}")), "{e}");
        }
        drop(v4);
        assert!(verify_loopback_only(pid, port).is_err());
    }

    #[test]
    fn only_the_drivers_saturated_line_is_left_out() {
        assert!(is_saturated(
            r#"{"saturated": true, "peer": "litellm", "rate": 1000}"#
        ));
        assert!(!is_saturated(
            r#"{"peer": "litellm", "mode": "open", "rate": 1000, "requests": 3, "dropped": 900}"#
        ));
        assert!(!is_saturated(r#"{"saturated": false, "peer": "litellm"}"#));
    }

    #[test]
    fn docs_block_is_replaced_or_appended() {
        let appended = splice_docs("# Benchmarks\n\ntext\n", "table 1\n").unwrap();
        assert!(appended.contains("## Peers"));
        assert!(appended.contains(&format!("{DOCS_BEGIN}\ntable 1\n{DOCS_END}")));
        let replaced = splice_docs(&appended, "table 2").unwrap();
        assert!(replaced.contains("table 2") && !replaced.contains("table 1"));
        assert_eq!(replaced.matches("## Peers").count(), 1);
        assert!(splice_docs(&format!("x {DOCS_BEGIN} y"), "t").is_err());
        assert!(splice_docs(&format!("{DOCS_END} {DOCS_BEGIN}"), "t").is_err());
    }

    #[test]
    fn progress_reads_rust_and_python_lines() {
        let rust = r#"{"peer":"reqwest","rps":4294.2,"p50_us":3718.9,"errors":0}"#;
        let python = r#"{"peer": "litellm", "rps": 31.0, "p50_us": 790633.8, "errors": 0}"#;
        assert_eq!(brief(rust), "4294 req/s, p50 3718.9 µs, errors 0");
        assert_eq!(brief(python), "31 req/s, p50 790633.8 µs, errors 0");
    }

    #[test]
    fn peer_selection_always_keeps_the_baseline() {
        let opts = Options {
            quick: true,
            peers: Some(vec!["litellm".into()]),
            repeats: None,
            secs: None,
            docs: false,
        };
        assert_eq!(selected(&opts).unwrap(), vec!["reqwest", "litellm"]);
        let bad = Options {
            peers: Some(vec!["curl".into()]),
            ..opts
        };
        assert!(selected(&bad).is_err());
    }
}
