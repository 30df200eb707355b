//! Faults with real servers: two private s3s-fs processes over one data directory (two
//! replicas), one killed with SIGKILL mid-run — reads fall back to the other, the killed one's
//! breaker opens, and a multipart upload that was running on it is aborted or started again
//! elsewhere, never left as a visible object; an upload whose only endpoint dies keeps its
//! upload id and resumes once the server is back.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use infermux_resilience::breaker::{BreakerConfig, SlidingWindow};
use infermux_s3::{
    BreakerState, Progress, S3Config, S3Credentials, S3EndpointConfig, S3Error, S3Kit, Selection,
};
use infermux_testkit::{Need, skip};

use crate::{fresh_bucket, random_file, sha256_hex, small_parts};

const ACCESS: &str = "fault-access";
const SECRET: &str = "fault-secret";

/// A private s3s-fs on a free loopback port, killed on drop.
struct Server {
    child: Option<tokio::process::Child>,
    port: u16,
}

fn binary() -> Option<String> {
    match std::env::var("INFERMUX_S3S_FS")
        .ok()
        .filter(|b| Path::new(b).is_file())
    {
        Some(b) => Some(b),
        None => {
            skip(
                Need::Server,
                "INFERMUX_S3S_FS does not name the s3s-fs binary (.ci/s3.sh installs it)",
            );
            None
        }
    }
}

impl Server {
    async fn start(bin: &str, data: &Path, port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = tokio::process::Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("s3s-fs starts");
        // ready when it accepts connections (bounded: 10 s)
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "s3s-fs on port {port} did not come up");
        Server {
            child: Some(child),
            port,
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// SIGKILL from outside, and wait until it is gone.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

fn endpoint(name: &str, url: &str) -> S3EndpointConfig {
    S3EndpointConfig::new(name, url)
        .with_credentials(S3Credentials::new(ACCESS, SECRET))
        .with_breaker(Some(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(10))
                .with_minimum_calls(3)
                .with_open_wait(Duration::from_secs(60)),
        ))
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_mid_run_fails_over_opens_its_breaker_and_corrupts_nothing() {
    let Some(bin) = binary() else { return };
    let data = tempfile::tempdir().unwrap();
    let mut a = Server::start(&bin, data.path(), None).await;
    let b = Server::start(&bin, data.path(), None).await;
    let kit = S3Kit::new(
        S3Config::new(vec![endpoint("a", &a.url()), endpoint("b", &b.url())])
            .with_selection(Selection::FirstHealthy)
            .with_transfer(small_parts().with_concurrency(2))
            .with_timeout(Some(Duration::from_secs(60))),
    )
    .unwrap();
    let bucket = fresh_bucket("fault");
    kit.create_bucket(&bucket).await.unwrap();
    for i in 0..8 {
        kit.put_bytes(&bucket, &format!("r/{i}"), vec![i as u8; 1000 + i].into())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let big = random_file(dir.path(), "big.bin", 40 << 20, 5);
    let want = sha256_hex(&big);

    // a multipart upload runs on `a` (first-healthy); `a` is killed after its first part
    let killed = Arc::new(tokio::sync::Notify::new());
    let fired = Arc::new(AtomicBool::new(false));
    let (k2, f2) = (killed.clone(), fired.clone());
    let progress: Progress = Arc::new(move |_| {
        if !f2.swap(true, Ordering::SeqCst) {
            k2.notify_one();
        }
    });
    let upload = {
        let (kit, bucket, big) = (kit.clone(), bucket.clone(), big.clone());
        tokio::spawn(async move {
            kit.upload_file_with(&bucket, "big.bin", &big, Some(&progress))
                .await
        })
    };
    // readers keep reading meanwhile
    let reads_ok = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|w| {
            let (kit, bucket, ok, stop) =
                (kit.clone(), bucket.clone(), reads_ok.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) || n < 8 {
                    let i = (w + n) % 8;
                    let got = kit.get_bytes(&bucket, &format!("r/{i}")).await;
                    let got = got.unwrap_or_else(|e| panic!("read r/{i} failed: {e:?}"));
                    assert_eq!(&got[..], &vec![i as u8; 1000 + i][..], "r/{i} intact");
                    ok.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    killed.notified().await;
    a.kill().await;
    let up = upload.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    let up = up.expect("the upload started again on the replica");
    assert_eq!(up.endpoint, "b");
    assert_eq!(up.sha256, want);
    let status = kit.status();
    assert_eq!(status[0].breaker, BreakerState::Open, "{status:?}");
    assert_eq!(status[1].breaker, BreakerState::Closed, "{status:?}");
    assert!(reads_ok.load(Ordering::SeqCst) >= 32);
    // what is visible is whole: the object equals the file, no stray upload on `b`
    let back = dir.path().join("back.bin");
    kit.download_file(&bucket, "big.bin", &back).await.unwrap();
    assert_eq!(sha256_hex(&back), want);
    let listed: Vec<String> = kit
        .list(&bucket, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        listed.len(),
        9,
        "8 small objects and the big one: {listed:?}"
    );
    let prom = kit.render_prometheus();
    assert!(prom.contains("endpoint=\"a\""), "{prom}");
    // the upload that died with `a` was aborted through `b` (one store behind both)
    assert_eq!(
        uploads_left(data.path()),
        Vec::<String>::new(),
        "no multipart upload left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_only_endpoint_dies_keeps_its_id_and_resumes_when_it_is_back() {
    let Some(bin) = binary() else { return };
    let data = tempfile::tempdir().unwrap();
    let mut a = Server::start(&bin, data.path(), None).await;
    let port = a.port;
    let kit = S3Kit::new(
        S3Config::new(vec![endpoint("a", &a.url()).with_breaker(None)])
            .with_transfer(small_parts().with_concurrency(1))
            .with_max_attempts(2)
            .with_timeout(Some(Duration::from_secs(30))),
    )
    .unwrap();
    let bucket = fresh_bucket("resume");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = random_file(dir.path(), "r.bin", 26 << 20, 9);
    let parts_done = Arc::new(AtomicU32::new(0));
    let killed = Arc::new(tokio::sync::Notify::new());
    let (p2, k2) = (parts_done.clone(), killed.clone());
    let progress: Progress = Arc::new(move |_| {
        if p2.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
            k2.notify_one();
        }
    });
    let upload = {
        let (kit, bucket, big) = (kit.clone(), bucket.clone(), big.clone());
        tokio::spawn(async move {
            kit.upload_file_with(&bucket, "r.bin", &big, Some(&progress))
                .await
        })
    };
    killed.notified().await;
    a.kill().await;
    let e = upload.await.unwrap().unwrap_err();
    let S3Error::UploadFailed {
        upload_id: Some(id),
        endpoint,
        sha256,
        ..
    } = &e
    else {
        panic!("expected UploadFailed with the upload id kept, got {e:?}");
    };
    assert_eq!(endpoint, "a");
    assert!(e.request_id().is_some());
    // the server comes back on the same port and data
    let _a = Server::start(&bin, data.path(), Some(port)).await;
    let e = kit.head(&bucket, "r.bin").await.unwrap_err();
    assert!(matches!(e, S3Error::NoSuchKey { .. }), "not visible: {e:?}");
    // another file under the same name is refused: the parts on the server are not its own
    let other = random_file(dir.path(), "other.bin", 26 << 20, 10);
    let e2 = kit
        .resume_upload("a", &bucket, "r.bin", &other, id, sha256)
        .await
        .unwrap_err();
    assert!(matches!(e2, S3Error::SourceChanged { .. }), "{e2:?}");
    let up = kit
        .resume_upload("a", &bucket, "r.bin", &big, id, sha256)
        .await
        .unwrap();
    assert_eq!(up.parts, 6);
    assert!(
        up.parts_reused >= 2,
        "the parts sent before the crash are kept (their CRC32C matches): {up:?}"
    );
    let back = dir.path().join("back");
    kit.download_file(&bucket, "r.bin", &back).await.unwrap();
    assert_eq!(sha256_hex(&back), sha256_hex(&big));
}

/// The multipart uploads s3s-fs still holds in its data directory (`.upload-<id>.json`, and
/// `.upload_id-<id>.part-<n>` for their parts).
fn uploads_left(data: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".upload-") || n.starts_with(".upload_id-"))
        .collect();
    left.sort();
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_during_its_upload_is_refused_and_leaves_no_object() {
    let Some(bin) = binary() else { return };
    let data = tempfile::tempdir().unwrap();
    let a = Server::start(&bin, data.path(), None).await;
    let kit = S3Kit::new(S3Config::new(vec![endpoint("a", &a.url())]).with_transfer(small_parts()))
        .unwrap();
    let bucket = fresh_bucket("changes");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "w.bin", 16 << 20, 3);
    let touched = Arc::new(AtomicBool::new(false));
    let (t, p) = (touched.clone(), src.clone());
    // after the first part has gone, something writes into the file
    let progress: Progress = Arc::new(move |_| {
        if !t.swap(true, Ordering::SeqCst) {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(b"changed", 12 << 20).unwrap();
        }
    });
    let e = kit
        .upload_file_with(&bucket, "w.bin", &src, Some(&progress))
        .await
        .unwrap_err();
    assert!(touched.load(Ordering::SeqCst));
    assert!(matches!(e, S3Error::SourceChanged { .. }), "{e:?}");
    let e = kit.head(&bucket, "w.bin").await.unwrap_err();
    assert!(matches!(e, S3Error::NoSuchKey { .. }), "no object: {e:?}");
    assert_eq!(uploads_left(data.path()), Vec::<String>::new(), "aborted");
    // the same file, left alone, uploads
    kit.upload_file(&bucket, "w.bin", &src).await.unwrap();
    assert_eq!(
        kit.head(&bucket, "w.bin").await.unwrap().sha256.unwrap(),
        sha256_hex(&src)
    );
}

/// An upload given up by its caller (its future dropped after a part has gone: a timeout
/// around it, a Ctrl-C) is aborted: its parts do not stay on the server under an upload id
/// nobody knows. `wait_for_aborts` is what a program about to end awaits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_given_up_by_its_caller_is_aborted() {
    let Some(bin) = binary() else { return };
    let data = tempfile::tempdir().unwrap();
    let a = Server::start(&bin, data.path(), None).await;
    let kit = S3Kit::new(S3Config::new(vec![endpoint("a", &a.url())]).with_transfer(small_parts()))
        .unwrap();
    let bucket = fresh_bucket("dropped");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "d.bin", 32 << 20, 5);
    let part_sent = Arc::new(tokio::sync::Notify::new());
    let sent = part_sent.clone();
    let progress: Progress = Arc::new(move |_| sent.notify_one());
    tokio::select! {
        biased;
        () = part_sent.notified() => {}
        r = kit.upload_file_with(&bucket, "d.bin", &src, Some(&progress)) => {
            panic!("the upload ended before it was given up: {r:?}")
        }
    }
    // the upload was dropped mid-way
    kit.wait_for_aborts().await;
    // the upload is gone (a part still arriving when the abort landed may outlive it, as
    // the docs say; the upload's own record may not)
    let uploads: Vec<String> = uploads_left(data.path())
        .into_iter()
        .filter(|n| n.starts_with(".upload-"))
        .collect();
    assert_eq!(uploads, Vec::<String>::new(), "aborted");
    let e = kit.head(&bucket, "d.bin").await.unwrap_err();
    assert!(matches!(e, S3Error::NoSuchKey { .. }), "no object: {e:?}");
}
