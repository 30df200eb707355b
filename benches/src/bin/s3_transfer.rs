//! S3 throughput, side by side: infermux-s3 and boto3's transfer manager upload and download
//! the same file through the same S3 server with the same part size and concurrency, taking
//! turns, each in its own process (so each one's peak RSS is its own).
//!
//! ```text
//! source $INFERMUX_CI_HOME/run/s3/env   # .ci/s3.sh start
//! cargo run --release -p infermux-benches --bin s3_transfer -- \
//!     --size-mib 200 --part-mib 8 --concurrency 8 --repeat 3 \
//!     --python $INFERMUX_CI_HOME/peers/venv/bin/python
//! ```
//!
//! `bash benches/garage.sh start` (then `source $INFERMUX_CI_HOME/run/garage/env`) runs the same
//! against a single-node Garage, a server fast enough that the clients, not it, show.
//!
//! Env: `INFERMUX_S3_URL`, `INFERMUX_S3_ACCESS_KEY`, `INFERMUX_S3_SECRET_KEY`. Prints a
//! markdown table (MB/s per run, the median, the ratio to boto3, peak RSS).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use infermux_s3::{S3Config, S3Credentials, S3EndpointConfig, S3Kit, TransferConfig};

struct Opts {
    size_mib: u64,
    part_mib: u64,
    concurrency: usize,
    repeat: usize,
    python: String,
    worker: Option<PathBuf>,
}

fn opts() -> Opts {
    let mut o = Opts {
        size_mib: 200,
        part_mib: 8,
        concurrency: 8,
        repeat: 3,
        python: "python3".into(),
        worker: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--size-mib" => o.size_mib = v().parse().expect("--size-mib"),
            "--part-mib" => o.part_mib = v().parse().expect("--part-mib"),
            "--concurrency" => o.concurrency = v().parse().expect("--concurrency"),
            "--repeat" => o.repeat = v().parse().expect("--repeat"),
            "--python" => o.python = v(),
            "--worker" => o.worker = Some(PathBuf::from(v())),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn env(v: &str) -> String {
    std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set (source .ci/s3.sh's env)"))
}

fn kit(o: &Opts) -> S3Kit {
    S3Kit::new(
        S3Config::new(vec![
            S3EndpointConfig::new("bench", env("INFERMUX_S3_URL")).with_credentials(
                S3Credentials::new(env("INFERMUX_S3_ACCESS_KEY"), env("INFERMUX_S3_SECRET_KEY")),
            ),
        ])
        .with_transfer(
            TransferConfig::default()
                .with_part_size(o.part_mib << 20)
                .with_concurrency(o.concurrency),
        ),
    )
    .expect("kit")
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One upload and one download in this process; prints the two lines the parent reads.
fn worker(o: &Opts, file: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kit = kit(o);
        let key = format!("infermux/{}", file.file_name().unwrap().to_string_lossy());
        let t = Instant::now();
        kit.upload_file("bench-s3", &key, file)
            .await
            .expect("upload");
        println!(
            "infermux upload {:.4} {}",
            t.elapsed().as_secs_f64(),
            peak_rss_kib()
        );
        let out = file.with_extension("infermux");
        let t = Instant::now();
        let d = kit
            .download_file("bench-s3", &key, &out)
            .await
            .expect("download");
        println!(
            "infermux download {:.4} {}",
            t.elapsed().as_secs_f64(),
            peak_rss_kib()
        );
        assert_eq!(d.size, std::fs::metadata(file).unwrap().len());
        std::fs::remove_file(out).unwrap();
    });
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let o = opts();
    if let Some(file) = &o.worker {
        worker(&o, file);
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(kit(&o).create_bucket("bench-s3"))
        .expect("bucket");
    let dir = std::env::temp_dir().join(format!("infermux-s3-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payload.bin");
    {
        let len = (o.size_mib << 20) as usize;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len);
        std::fs::write(&file, data).unwrap();
    }
    let me = std::env::current_exe().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/s3_boto3.py");
    // (peer, direction) -> seconds per run, peak RSS
    let mut runs: std::collections::BTreeMap<(String, String), (Vec<f64>, u64)> =
        Default::default();
    for r in 0..o.repeat {
        let ours = Command::new(&me)
            .args(["--worker", file.to_str().unwrap()])
            .args(["--part-mib", &o.part_mib.to_string()])
            .args(["--concurrency", &o.concurrency.to_string()])
            .output()
            .unwrap();
        let boto = Command::new(&o.python)
            .arg(&script)
            .args([&env("INFERMUX_S3_URL"), "bench-s3", file.to_str().unwrap()])
            .arg((o.part_mib << 20).to_string())
            .arg(o.concurrency.to_string())
            .env("AWS_ACCESS_KEY_ID", env("INFERMUX_S3_ACCESS_KEY"))
            .env("AWS_SECRET_ACCESS_KEY", env("INFERMUX_S3_SECRET_KEY"))
            .output()
            .unwrap();
        for out in [&ours, &boto] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let e = runs.entry((f[0].into(), f[1].into())).or_default();
                e.0.push(f[2].parse().unwrap());
                e.1 = e.1.max(f[3].parse().unwrap());
            }
        }
        eprintln!("run {} of {} done", r + 1, o.repeat);
    }
    let mb = (o.size_mib << 20) as f64 / 1e6;
    println!(
        "| direction | peer | MB/s per run | median MB/s | ratio to boto3 | peak RSS |\n|---|---|---|---|---|---|"
    );
    for dir_name in ["upload", "download"] {
        let mut boto = runs[&("boto3".to_owned(), dir_name.to_owned())].0.clone();
        let boto_med = mb / median(&mut boto);
        for peer in ["infermux", "boto3"] {
            let (secs, rss) = &runs[&(peer.to_owned(), dir_name.to_owned())];
            let rates: Vec<String> = secs.iter().map(|s| format!("{:.0}", mb / s)).collect();
            let med = mb / median(&mut secs.clone());
            println!(
                "| {dir_name} | {peer} | {} | {med:.0} | {:.2}× | {} MiB |",
                rates.join(", "),
                med / boto_med,
                rss / 1024
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
