//! `infermux s3 …` (feature `s3`): put, get, ls, rm, presign, sync and fetch against one
//! endpoint given by flags or the `[s3]` endpoints of an infermux.toml, with progress bars
//! (bytes, rate, ETA) on a terminal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use infermux::config::{Config, Parts};
use infermux::s3::{Progress, S3Config, S3Credentials, S3EndpointConfig, S3Error, S3Kit};
use infermux::{Error, ErrorKind};

/// `infermux s3 …`.
#[derive(Args)]
pub(crate) struct S3Args {
    #[command(flatten)]
    endpoint: S3EndpointArgs,
    #[command(subcommand)]
    command: S3Command,
}

/// Which endpoints: an infermux.toml's `[s3]`, or one endpoint from flags.
#[derive(Args)]
struct S3EndpointArgs {
    /// An infermux.toml whose `[s3]` section names the endpoints (see docs/config.md);
    /// `--part-mib` and `--concurrency` given with it replace the file's.
    #[arg(long, global = true, conflicts_with_all = ["endpoint_url", "profile", "region"])]
    config: Option<PathBuf>,
    /// The endpoint's URL (without it: $INFERMUX_S3_URL, else AWS S3 in --region).
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// The region signatures are made for [default: $AWS_REGION, else us-east-1].
    #[arg(long, global = true)]
    region: Option<String>,
    /// A profile of ~/.aws/credentials (else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Part size of uploads and downloads, in MiB [default: 8; with `--config`, its
    /// `part_size`].
    #[arg(long, global = true)]
    part_mib: Option<u64>,
    /// Parts in flight at once [default: 8; with `--config`, its `concurrency`].
    #[arg(long, global = true)]
    concurrency: Option<usize>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum S3Command {
    /// Upload a file: `put FILE s3://bucket/key` (multipart past 16 MiB).
    Put { file: PathBuf, dest: String },
    /// Download an object: `get s3://bucket/key FILE` (or into an existing directory, under
    /// the object's name; parallel ranges, resumable).
    Get { src: String, file: PathBuf },
    /// List objects: `ls s3://bucket[/prefix]`.
    Ls { url: String },
    /// Delete objects: `rm s3://bucket/key…`.
    Rm {
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// A presigned URL: `presign s3://bucket/key` (GET; `--put` for an upload URL).
    Presign {
        url: String,
        /// A URL to upload with instead of one to download.
        #[arg(long)]
        put: bool,
        /// Validity in seconds (at most 7 days).
        #[arg(long, default_value_t = 3600)]
        expires: u64,
    },
    /// Upload a model folder: `sync DIR s3://bucket/prefix` (only files whose SHA-256
    /// differs).
    Sync { dir: PathBuf, dest: String },
    /// Fetch a prefix into a local folder: `fetch s3://bucket/prefix DIR` (only what changed).
    Fetch { src: String, dir: PathBuf },
}

/// `s3://bucket/key` → (bucket, key); the key may be empty.
pub(crate) fn parse_url(url: &str) -> Result<(String, String), Error> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("`{url}` is not an s3://bucket/key URL"),
        )
    })?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("`{url}` names no bucket"),
        ));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

pub(crate) fn s3_error(e: S3Error) -> Error {
    match e.call_error() {
        Some(c) => Error::new(c.kind(), e.to_string()).with_source(e),
        None => Error::new(e.kind(), e.to_string()).with_source(e),
    }
}

fn kit(a: &S3EndpointArgs) -> Result<S3Kit, Error> {
    let part_size = a
        .part_mib
        .map(|mib| {
            mib.checked_mul(1 << 20).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("--part-mib {mib} is too large (parts are at most 5 GiB)"),
                )
            })
        })
        .transpose()?;
    if let Some(path) = &a.config {
        // (the endpoints' keys of a file shared with `infermux chat` are not read)
        let mut config = Config::from_path_for(path, Parts::S3)?;
        if let Some(s3) = config.s3.as_mut() {
            if let Some(p) = part_size {
                s3.part_size = p;
            }
            if let Some(c) = a.concurrency {
                s3.concurrency = c;
            }
        }
        return config.s3_kit();
    }
    let transfer = infermux::s3::TransferConfig::default()
        .with_part_size(part_size.unwrap_or(8 << 20))
        .with_concurrency(a.concurrency.unwrap_or(8));
    let endpoint = flag_endpoint(a, |name| std::env::var(name).ok());
    S3Kit::new(S3Config::new(vec![endpoint]).with_transfer(transfer)).map_err(s3_error)
}

/// The one endpoint the flags describe, reading the environment through `env`: the URL from
/// `--endpoint-url`, else `INFERMUX_S3_URL`, else AWS S3; the region from `--region`, else
/// `AWS_REGION`, else `us-east-1`. An empty variable is an unset one.
fn flag_endpoint(a: &S3EndpointArgs, env: impl Fn(&str) -> Option<String>) -> S3EndpointConfig {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let region = a
        .region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let url = a.endpoint_url.clone().or_else(|| var("INFERMUX_S3_URL"));
    match url {
        Some(u) => S3EndpointConfig::new("s3", u),
        None => S3EndpointConfig::aws("s3", &region),
    }
    .with_region(&region)
    .with_credentials(match &a.profile {
        Some(p) => S3Credentials::profile(p),
        None => S3Credentials::aws_env(),
    })
}

fn bar(quiet: bool, total: u64, what: &str) -> (ProgressBar, Option<Progress>) {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return (ProgressBar::hidden(), None);
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    let p = pb.clone();
    (pb, Some(Arc::new(move |n| p.inc(n)) as Progress))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            // (links followed, as the sync does; a link back up is not walked here: the bar
            // is an estimate)
            let linked = e.file_type().is_ok_and(|t| t.is_symlink());
            match std::fs::metadata(e.path()) {
                Ok(m) if m.is_dir() && !linked => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// Runs `infermux s3 …`. On Ctrl-C the command stops, and a multipart upload it had started
/// is aborted before the program ends (a download keeps its partial file and journal, so the
/// next `get` resumes it).
pub(crate) async fn run(args: S3Args) -> Result<(), Error> {
    let kit = kit(&args.endpoint)?;
    tokio::select! {
        r = command(&kit, args) => r,
        _ = tokio::signal::ctrl_c() => {
            let aborted = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(30), kit.wait_for_aborts()) => r,
                // a second Ctrl-C: leave now
                _ = tokio::signal::ctrl_c() => {
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        "interrupted again: an upload in progress may be left unaborted",
                    ));
                }
            };
            Err(Error::new(
                ErrorKind::Cancelled,
                if aborted.is_ok() {
                    "interrupted"
                } else {
                    "interrupted; aborting the upload in progress took over 30 s"
                },
            ))
        }
    }
}

async fn command(kit: &S3Kit, args: S3Args) -> Result<(), Error> {
    let quiet = args.endpoint.quiet;
    match args.command {
        S3Command::Put { file, dest } => {
            let (bucket, mut key) = parse_url(&dest)?;
            if key.is_empty() || key.ends_with('/') {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
                key.push_str(name);
            }
            let len = std::fs::metadata(&file).map_or(0, |m| m.len());
            let (pb, progress) = bar(quiet, len, "put");
            let up = kit
                .upload_file_with(&bucket, &key, &file, progress.as_ref())
                .await
                .map_err(s3_error)?;
            pb.finish_and_clear();
            outln!(
                "s3://{bucket}/{key}\t{} bytes\t{} part(s)\tsha256 {}\tvia {}",
                up.size,
                up.parts,
                up.sha256,
                up.endpoint
            );
        }
        S3Command::Get { src, file } => {
            let (bucket, key) = parse_url(&src)?;
            // into a directory: under the object's own name, as `cp` does
            let file = if file.is_dir() {
                match key.rsplit('/').next().filter(|n| !n.is_empty()) {
                    Some(name) => file.join(name),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            format!(
                                "s3://{bucket}/{key} names no object to write into a directory"
                            ),
                        ));
                    }
                }
            } else {
                file
            };
            let info = kit.head(&bucket, &key).await.map_err(s3_error)?;
            let (pb, progress) = bar(quiet, info.size, "get");
            let down = kit
                .download_file_with(&bucket, &key, &file, progress.as_ref())
                .await
                .map_err(s3_error)?;
            pb.finish_and_clear();
            outln!(
                "{}\t{} bytes\tsha256 {}",
                down.path.display(),
                down.size,
                down.sha256
            );
            if !down.verified {
                eprintln!("{NOT_VERIFIED}");
            }
        }
        S3Command::Ls { url } => {
            let (bucket, prefix) = parse_url(&url)?;
            for o in kit.list(&bucket, &prefix).await.map_err(s3_error)? {
                outln!("{}\t{}", o.size, o.key);
            }
        }
        S3Command::Rm { urls } => {
            for url in urls {
                let (bucket, key) = parse_url(&url)?;
                kit.delete(&bucket, &key).await.map_err(s3_error)?;
                outln!("deleted s3://{bucket}/{key}");
            }
        }
        S3Command::Presign { url, put, expires } => {
            let (bucket, key) = parse_url(&url)?;
            let d = Duration::from_secs(expires);
            let signed = if put {
                kit.presign_put(&bucket, &key, d).await
            } else {
                kit.presign_get(&bucket, &key, d).await
            }
            .map_err(s3_error)?;
            outln!("{signed}");
        }
        S3Command::Sync { dir, dest } => {
            let (bucket, prefix) = parse_url(&dest)?;
            let (pb, progress) = bar(quiet, dir_size(&dir), "sync");
            let r = kit
                .sync_up(&dir, &bucket, &prefix, progress.as_ref())
                .await
                .map_err(s3_error)?;
            pb.finish_and_clear();
            for f in &r.transferred {
                outln!("uploaded\t{f}");
            }
            eprintln!(
                "{} uploaded ({} bytes), {} unchanged",
                r.transferred.len(),
                r.bytes,
                r.unchanged.len()
            );
        }
        S3Command::Fetch { src, dir } => {
            let (bucket, prefix) = parse_url(&src)?;
            let total: u64 = kit
                .list(&bucket, &prefix)
                .await
                .map_err(s3_error)?
                .iter()
                .map(|o| o.size)
                .sum();
            let (pb, progress) = bar(quiet, total, "fetch");
            let r = kit
                .fetch(&bucket, &prefix, &dir, progress.as_ref())
                .await
                .map_err(s3_error)?;
            pb.finish_and_clear();
            for f in &r.transferred {
                outln!("fetched\t{f}");
            }
            eprintln!(
                "{} fetched ({} bytes), {} unchanged",
                r.transferred.len(),
                r.bytes,
                r.unchanged.len()
            );
            for f in &r.unverified {
                eprintln!("{f}: {NOT_VERIFIED}");
            }
        }
    }
    Ok(())
}

/// Said on stderr for a file whose object carries nothing to check it against (the checksum
/// printed is the local file's).
const NOT_VERIFIED: &str = "not verified: the object has neither a SHA-256 nor a plain MD5 \
     (uploaded in parts by another tool); the sha256 is the local file's";

#[cfg(test)]
mod tests {
    use super::{S3EndpointArgs, flag_endpoint, parse_url};

    fn args(region: Option<&str>, url: Option<&str>) -> S3EndpointArgs {
        S3EndpointArgs {
            config: None,
            endpoint_url: url.map(str::to_owned),
            region: region.map(str::to_owned),
            profile: None,
            part_mib: None,
            concurrency: None,
            quiet: true,
        }
    }

    #[test]
    fn the_flag_endpoint_reads_aws_region_and_takes_an_empty_variable_as_unset() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        // INFERMUX_S3_URL="" is no URL: AWS S3 in $AWS_REGION
        let e = flag_endpoint(
            &args(None, None),
            env(&[("INFERMUX_S3_URL", ""), ("AWS_REGION", "eu-west-3")]),
        );
        let dbg = format!("{e:?}");
        assert!(
            dbg.contains("eu-west-3") && dbg.contains("url: None"),
            "{dbg}"
        );
        // --region wins over AWS_REGION; a set URL is used
        let e = flag_endpoint(
            &args(Some("ap-south-1"), None),
            env(&[
                ("INFERMUX_S3_URL", "http://127.0.0.1:9000"),
                ("AWS_REGION", "eu-west-3"),
            ]),
        );
        let dbg = format!("{e:?}");
        assert!(
            dbg.contains("ap-south-1") && dbg.contains("127.0.0.1:9000"),
            "{dbg}"
        );
        // neither: us-east-1
        let dbg = format!("{:?}", flag_endpoint(&args(None, None), env(&[])));
        assert!(dbg.contains("us-east-1"), "{dbg}");
    }

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        assert_eq!(
            parse_url("s3://models/a/b c.bin").unwrap(),
            ("models".to_owned(), "a/b c.bin".to_owned())
        );
        assert_eq!(
            parse_url("s3://models").unwrap(),
            ("models".to_owned(), String::new())
        );
        for bad in ["models/a", "s3:///key", "http://x/y"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
