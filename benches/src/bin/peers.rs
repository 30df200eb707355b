//! The peer benchmark's Rust side, run by `cargo xtask bench peers`:
//!
//! - `peers upstream [--port N]`: the mock upstream on `127.0.0.1` (prints `listening ADDR`);
//! - `peers drive --peer P --upstream URL [--gateway URL --gateway-pid PID] [--runtime
//!   current|multi] [--mode closed|open] [--stream] [--concurrency N] [--rate R] [--warmup S]
//!   [--secs S] [--repeat N]`: one point, one JSON line on stdout;
//! - `peers report --input FILE --out DIR [--command CMD] [--note TEXT]…`: the markdown report
//!   (`DIR/peers.md`), the chart (`DIR/peers.png`) and the targets, pass or fail
//!   (`DIR/peers-targets.md`, also the top of the report).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infermux_benches::peers::drive::{self, DriveConfig, Peer, Runtime};
use infermux_benches::peers::report::{self, Header};
use infermux_benches::peers::{Mode, chart, targets, upstream};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--key value` pairs and bare `--flag`s; repeated keys keep every value.
fn options(args: &[String], flags: &[&str]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let key = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument `{arg}`"))?;
        let value = if flags.contains(&key) {
            String::new()
        } else {
            it.next()
                .ok_or_else(|| format!("--{key} needs a value"))?
                .clone()
        };
        out.entry(key.to_owned()).or_default().push(value);
    }
    Ok(out)
}

fn one<'a>(o: &'a HashMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(|v| v.last()).map(String::as_str)
}

fn num<T: std::str::FromStr>(
    o: &HashMap<String, Vec<String>>,
    key: &str,
    default: T,
) -> Result<T, String> {
    match one(o, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("--{key}: not a number: {v}")),
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("usage: peers upstream|drive|report …".to_owned());
    };
    match command.as_str() {
        "upstream" => {
            let o = options(rest, &[])?;
            let port: u16 = num(&o, "port", 0)?;
            let listener =
                upstream::bind(([127, 0, 0, 1], port).into()).map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            println!("listening {addr}");
            upstream::serve(listener).map_err(|e| e.to_string())
        }
        "drive" => {
            let o = options(rest, &["stream"])?;
            let name = one(&o, "peer").ok_or("--peer is required")?;
            let peer = Peer::parse(name).ok_or_else(|| format!("unknown peer `{name}`"))?;
            let runtime = match one(&o, "runtime").unwrap_or("current") {
                "current" => Runtime::Current,
                "multi" => Runtime::Multi,
                other => return Err(format!("unknown runtime `{other}`")),
            };
            let mode = match one(&o, "mode").unwrap_or("closed") {
                "closed" => Mode::Closed,
                "open" => Mode::Open,
                other => return Err(format!("unknown mode `{other}`")),
            };
            let cfg = DriveConfig {
                peer,
                upstream: one(&o, "upstream")
                    .ok_or("--upstream is required")?
                    .to_owned(),
                gateway: one(&o, "gateway").map(str::to_owned),
                gateway_pid: match one(&o, "gateway-pid") {
                    Some(p) => Some(p.parse().map_err(|_| format!("--gateway-pid: {p}"))?),
                    None => None,
                },
                runtime,
                mode,
                stream: o.contains_key("stream"),
                concurrency: num(&o, "concurrency", 16)?,
                rate: num(&o, "rate", 0)?,
                warmup: Duration::from_secs_f64(num(&o, "warmup", 0.5)?),
                secs: Duration::from_secs_f64(num(&o, "secs", 3.0)?),
                repeat: num(&o, "repeat", 0)?,
            };
            let m = drive::run(&cfg)?;
            println!("{}", serde_json::to_string(&m).map_err(|e| e.to_string())?);
            Ok(())
        }
        "report" => {
            let o = options(rest, &[])?;
            let input = PathBuf::from(one(&o, "input").ok_or("--input is required")?);
            let out = PathBuf::from(one(&o, "out").ok_or("--out is required")?);
            let text =
                std::fs::read_to_string(&input).map_err(|e| format!("{}: {e}", input.display()))?;
            let ms = report::parse_lines(&text).map_err(|e| format!("{}: {e}", input.display()))?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let png = out.join("peers.png");
            let text_drawn = chart::draw(&report::chart_series(&ms), &png)?;
            let mut notes: Vec<String> = o.get("note").cloned().unwrap_or_default();
            if !text_drawn {
                notes.push("(No TrueType font was found: the chart has no text.)".to_owned());
            }
            let header = Header {
                date: today(),
                machine: machine(),
                command: one(&o, "command")
                    .unwrap_or("cargo xtask bench peers")
                    .to_owned(),
                notes,
            };
            let md = out.join("peers.md");
            std::fs::write(&md, report::render(&ms, &header))
                .map_err(|e| format!("{}: {e}", md.display()))?;
            let summary = out.join("peers-targets.md");
            std::fs::write(&summary, targets::render(&targets::targets(&ms)))
                .map_err(|e| format!("{}: {e}", summary.display()))?;
            println!("{}\n{}\n{}", md.display(), png.display(), summary.display());
            Ok(())
        }
        other => Err(format!(
            "unknown command `{other}` (upstream, drive, report)"
        )),
    }
}

/// Today's UTC date, `YYYY-MM-DD` (civil-from-days, Howard Hinnant's algorithm).
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = infermux_http::civil::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The machine: CPU model, cores, memory, and whether it is virtualised.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_owned();
    let virtualised = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| infermux_benches::peers::procfs::parse_status_kb(&t, "MemTotal:"))
        .map_or(0.0, |kb| kb as f64 / 1024.0 / 1024.0);
    format!(
        "{cores} cores ({model}{}), {mem_gib:.0} GiB, shared with other builds",
        if virtualised { ", virtualised" } else { "" }
    )
}
