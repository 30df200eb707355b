//! infermux-s3 against real S3-compatible servers: the two s3s-fs endpoints `.ci/s3.sh`
//! starts (`INFERMUX_S3_URL`, `INFERMUX_S3_URL2`, one data directory, signatures checked), and
//! private s3s-fs processes (`INFERMUX_S3S_FS`) the fault tests kill. Without them the tests
//! are skipped visibly, and fail under `INFERMUX_REQUIRE_SERVERS=1`. Answers no real server
//! gives on demand come from a scripted one (`scripted`).

mod fault;
mod live;
mod scripted;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use infermux_s3::{S3Config, S3Credentials, S3EndpointConfig, S3Kit, TransferConfig};
use infermux_testkit::{Need, server_url, skip};

/// The shared endpoints' credentials.
pub(crate) struct Live {
    pub(crate) url: String,
    pub(crate) url2: String,
    pub(crate) access: String,
    pub(crate) secret: String,
}

pub(crate) fn live() -> Option<Live> {
    let url = server_url("INFERMUX_S3_URL")?;
    let url2 = server_url("INFERMUX_S3_URL2")?;
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let (Some(access), Some(secret)) =
        (var("INFERMUX_S3_ACCESS_KEY"), var("INFERMUX_S3_SECRET_KEY"))
    else {
        skip(
            Need::Server,
            "INFERMUX_S3_ACCESS_KEY / INFERMUX_S3_SECRET_KEY are not set (.ci/s3.sh writes them)",
        );
        return None;
    };
    Some(Live {
        url,
        url2,
        access,
        secret,
    })
}

/// The transfer sizes the tests use: 5 MiB parts (S3's minimum), four in flight, multipart
/// from 6 MiB.
pub(crate) fn small_parts() -> TransferConfig {
    TransferConfig::default()
        .with_part_size(5 << 20)
        .with_concurrency(4)
        .with_multipart_threshold(6 << 20)
}

impl Live {
    pub(crate) fn endpoint(&self, name: &str, url: &str) -> S3EndpointConfig {
        S3EndpointConfig::new(name, url)
            .with_credentials(S3Credentials::new(&self.access, &self.secret))
    }
    pub(crate) fn kit(&self) -> S3Kit {
        S3Kit::new(
            S3Config::new(vec![
                self.endpoint("a", &self.url),
                self.endpoint("b", &self.url2),
            ])
            .with_transfer(small_parts()),
        )
        .unwrap()
    }
}

/// A bucket name no other test or run shares.
pub(crate) fn fresh_bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A file of `len` pseudo-random bytes (seeded).
pub(crate) fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    p
}

pub(crate) fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}
