//! The kit against the shared s3s-fs endpoints: the 200 MB round trip, every operation, and
//! bad input (missing bucket, wrong credentials, odd keys, a zero-byte file, a file that
//! changes during its upload).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use infermux_core::ErrorKind;
use infermux_s3::{Progress, S3Config, S3Credentials, S3Error, S3Kit, TransferConfig};

use crate::{fresh_bucket, live, random_file, sha256_hex, small_parts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_file_round_trips_through_multipart_upload_and_parallel_ranges() {
    let Some(l) = live() else { return };
    let kit = S3Kit::new(
        S3Config::new(vec![l.endpoint("a", &l.url), l.endpoint("b", &l.url2)]).with_transfer(
            TransferConfig::default()
                .with_part_size(8 << 20)
                .with_concurrency(8),
        ),
    )
    .unwrap();
    let bucket = fresh_bucket("big");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "model.bin", 200 << 20, 7);
    let moved = Arc::new(AtomicU64::new(0));
    let m = moved.clone();
    let progress: Progress = Arc::new(move |n| {
        m.fetch_add(n, Ordering::Relaxed);
    });
    let up = kit
        .upload_file_with(&bucket, "models/model.bin", &src, Some(&progress))
        .await
        .unwrap();
    assert_eq!(up.parts, 25, "200 MiB in 8 MiB parts");
    assert_eq!(up.size, 200 << 20);
    assert_eq!(moved.load(Ordering::Relaxed), 200 << 20, "progress adds up");
    let local = sha256_hex(&src);
    assert_eq!(up.sha256, local);
    let info = kit.head(&bucket, "models/model.bin").await.unwrap();
    assert_eq!(info.size, 200 << 20);
    assert_eq!(
        info.sha256.as_deref(),
        Some(local.as_str()),
        "stored with the object"
    );

    // One copy on disk at a time: the source goes before the download lands (its digest is
    // known), so the test needs 200 MiB of local space, not 400 (CI's disk has run out here).
    std::fs::remove_file(&src).unwrap();
    let dst = dir.path().join("back.bin");
    let down = kit
        .download_file(&bucket, "models/model.bin", &dst)
        .await
        .unwrap();
    assert_eq!(down.ranges_fetched, 25, "parallel ranges of the part size");
    assert_eq!(down.sha256, local);
    assert!(down.verified, "checked against the stored SHA-256");
    assert_eq!(sha256_hex(&dst), local, "byte-equal on disk");
    assert!(
        !dir.path().join("back.bin.infermux-partial").exists(),
        "no partial file left"
    );
    std::fs::remove_file(&dst).unwrap();
    // and the server's copy goes too (the endpoints' data folder is shared by every test)
    kit.delete(&bucket, "models/model.bin").await.unwrap();
    assert!(kit.list(&bucket, "").await.unwrap().is_empty());
}

#[tokio::test]
async fn every_single_request_operation_works_and_lists_page_by_page() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("ops");
    kit.create_bucket(&bucket).await.unwrap();
    kit.create_bucket(&bucket).await.unwrap(); // ours already: fine
    for i in 0..5 {
        kit.put_bytes(&bucket, &format!("p/{i}"), format!("v{i}").into())
            .await
            .unwrap();
    }
    let (page, next) = kit.list_page(&bucket, "p/", None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let token = next.expect("a continuation token");
    let (page2, _) = kit.list_page(&bucket, "p/", Some(&token), 2).await.unwrap();
    assert_eq!(
        page2[0].key, "p/2",
        "the second page goes on where the first stopped"
    );
    let all = kit.list(&bucket, "p/").await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["p/0", "p/1", "p/2", "p/3", "p/4"]
    );
    assert_eq!(&kit.get_bytes(&bucket, "p/3").await.unwrap()[..], b"v3");
    assert_eq!(
        &kit.get_range(&bucket, "p/3", 1..2, None).await.unwrap()[..],
        b"3"
    );
    kit.copy(&bucket, "p/3", &bucket, "q/copied").await.unwrap();
    let copied = kit.head(&bucket, "q/copied").await.unwrap();
    assert_eq!(copied.size, 2);
    kit.delete(&bucket, "p/0").await.unwrap();
    kit.delete(&bucket, "p/0").await.unwrap(); // missing: not an error
    let failed = kit
        .delete_many(&bucket, &["p/1".into(), "p/2".into(), "q/copied".into()])
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let left = kit.list(&bucket, "").await.unwrap();
    assert_eq!(
        left.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["p/3", "p/4"]
    );
}

#[tokio::test]
async fn presigned_urls_put_and_get_without_the_kit() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("presign");
    kit.create_bucket(&bucket).await.unwrap();
    let put = kit
        .presign_put(&bucket, "shared file.txt", Duration::from_secs(300))
        .await
        .unwrap();
    assert!(!put.contains(&l.secret), "the secret is not in the URL");
    let http = reqwest::Client::new();
    let r = http.put(&put).body("presigned!").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let get = kit
        .presign_get(&bucket, "shared file.txt", Duration::from_secs(300))
        .await
        .unwrap();
    let body = http.get(&get).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "presigned!");
    // a tampered signature is refused: the server checks it
    let at = get.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &get[at..at + 1] == "0" { "1" } else { "0" };
    let bad = format!("{}{flipped}{}", &get[..at], &get[at + 1..]);
    let r = http.get(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        kit.presign_get(&bucket, "k", Duration::from_secs(8 * 24 * 3600))
            .await
            .is_err(),
        "more than 7 days is refused"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_no_such_bucket_with_the_request_id() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("missing");
    // (s3s-fs stores a PUT into a missing bucket rather than refusing it, and answers a GET
    // there with NoSuchKey: the listing is what names the bucket)
    let e = kit.list(&bucket, "").await.unwrap_err();
    assert!(matches!(e, S3Error::NoSuchBucket { .. }), "{e:?}");
    assert!(e.request_id().is_some(), "carries the request id");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains(&bucket), "{e}");
    let e = kit.get_bytes(&bucket, "k").await.unwrap_err();
    assert!(matches!(e, S3Error::NoSuchKey { .. }), "{e:?}");
    let dir = tempfile::tempdir().unwrap();
    let e = kit
        .download_file(&bucket, "k", &dir.path().join("k"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, S3Error::NoSuchKey { .. }),
        "HEAD answers 404 without a body: {e:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file made"
    );
}

#[tokio::test]
async fn wrong_credentials_are_access_denied_and_store_nothing() {
    let Some(l) = live() else { return };
    let good = l.kit();
    let bucket = fresh_bucket("creds");
    good.create_bucket(&bucket).await.unwrap();
    let bad = S3Kit::new(S3Config::new(vec![
        l.endpoint("a", &l.url)
            .with_credentials(S3Credentials::new(&l.access, "not-the-secret")),
    ]))
    .unwrap();
    let e = bad.put_bytes(&bucket, "k", "x".into()).await.unwrap_err();
    match &e {
        S3Error::AccessDenied { code, .. } => {
            assert_eq!(
                code, "SignatureDoesNotMatch",
                "the server checked the signature"
            )
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    assert!(!format!("{e} {e:?}").contains(&l.secret));
    assert!(!format!("{e} {e:?}").contains("not-the-secret"));
    let unknown = S3Kit::new(S3Config::new(vec![
        l.endpoint("a", &l.url)
            .with_credentials(S3Credentials::new("nobody", &l.secret)),
    ]))
    .unwrap();
    let e = unknown.head(&bucket, "k").await.unwrap_err();
    assert!(
        matches!(e, S3Error::AccessDenied { .. }),
        "an unknown access key: {e:?}"
    );
    let e = good.head(&bucket, "k").await.unwrap_err();
    assert!(
        matches!(e, S3Error::NoSuchKey { .. }),
        "nothing stored: {e:?}"
    );
}

#[tokio::test]
async fn keys_with_odd_characters_round_trip_and_invalid_ones_are_refused() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("keys");
    kit.create_bucket(&bucket).await.unwrap();
    let odd = [
        "with space.txt",
        "plus+sign",
        "per%cent",
        "que?ry",
        "hash#tag",
        "ünïcødé/ファイル",
        "quote'\"amp&lt<gt>",
        "dir/sub dir/x=1,y=2;z",
    ];
    for (i, k) in odd.iter().enumerate() {
        kit.put_bytes(&bucket, k, format!("{i}").into())
            .await
            .unwrap();
        assert_eq!(
            kit.get_bytes(&bucket, k).await.unwrap(),
            format!("{i}").as_bytes(),
            "{k}"
        );
        assert_eq!(kit.head(&bucket, k).await.unwrap().size, 1, "{k}");
    }
    let mut listed: Vec<String> = kit
        .list(&bucket, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    listed.sort();
    let mut want: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    kit.copy(&bucket, "with space.txt", &bucket, "copy of ü+%")
        .await
        .unwrap();
    assert_eq!(
        &kit.get_bytes(&bucket, "copy of ü+%").await.unwrap()[..],
        b"0"
    );
    for bad in ["", "new\nline", "nul\0byte"] {
        let e = kit.put_bytes(&bucket, bad, "x".into()).await.unwrap_err();
        assert!(matches!(e, S3Error::InvalidKey { .. }), "{bad:?}: {e:?}");
    }
    let e = kit
        .put_bytes(&bucket, &"k".repeat(1025), "x".into())
        .await
        .unwrap_err();
    assert!(matches!(e, S3Error::InvalidKey { .. }));
}

#[tokio::test]
async fn a_zero_byte_file_uploads_and_downloads_as_an_empty_file() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("empty");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let up = kit.upload_file(&bucket, "empty", &src).await.unwrap();
    assert_eq!((up.size, up.parts), (0, 1));
    let info = kit.head(&bucket, "empty").await.unwrap();
    assert_eq!(info.size, 0);
    let dst = dir.path().join("back");
    let down = kit.download_file(&bucket, "empty", &dst).await.unwrap();
    assert_eq!(down.size, 0);
    assert_eq!(std::fs::read(&dst).unwrap(), b"");
    assert!(kit.get_bytes(&bucket, "empty").await.unwrap().is_empty());
    // a stream of nothing, too
    let up = kit
        .upload_stream(&bucket, "empty-stream", &b""[..])
        .await
        .unwrap();
    assert_eq!(up.size, 0);
    // a directory as the destination is refused before a byte moves, nothing left beside it
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let e = kit
        .download_file(&bucket, "empty", &into)
        .await
        .unwrap_err();
    assert!(matches!(e, infermux_s3::S3Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("into"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("infermux"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_uploads_in_parts_and_a_download_interrupted_midway_resumes() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("stream");
    kit.create_bucket(&bucket).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "s.bin", 23 << 20, 11);
    let file = tokio::fs::File::open(&src).await.unwrap();
    let up = kit.upload_stream(&bucket, "s.bin", file).await.unwrap();
    assert_eq!(up.parts, 5, "23 MiB in 5 MiB parts");
    assert_eq!(up.sha256, sha256_hex(&src));
    // the download is dropped after two ranges have landed
    let dst = dir.path().join("s.out");
    let landed = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (n2, l2) = (notify.clone(), landed.clone());
    let progress: Progress = Arc::new(move |_| {
        if l2.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
            n2.notify_one();
        }
    });
    let slow = S3Kit::new(
        S3Config::new(vec![l.endpoint("a", &l.url)])
            .with_transfer(small_parts().with_concurrency(1)),
    )
    .unwrap();
    {
        let fut = slow.download_file_with(&bucket, "s.bin", &dst, Some(&progress));
        tokio::select! {
            r = fut => panic!("finished before it was interrupted: {r:?}"),
            () = notify.notified() => {}
        }
    }
    assert!(!dst.exists(), "nothing under the final name");
    let down = kit.download_file(&bucket, "s.bin", &dst).await.unwrap();
    assert!(down.ranges_resumed >= 2, "{down:?}");
    assert_eq!(down.ranges_resumed + down.ranges_fetched, 5);
    assert_eq!(sha256_hex(&dst), up.sha256);
    // a stream uploaded in parts carries no SHA-256 and its ETag is no MD5: it says so
    assert!(!down.verified, "{down:?}");
    // and a fetch of the folder names it
    let into = tempfile::tempdir().unwrap();
    let r = kit.fetch(&bucket, "", into.path(), None).await.unwrap();
    assert_eq!(r.unverified, vec!["s.bin".to_owned()], "{r:?}");
    assert_eq!(r.transferred, vec!["s.bin".to_owned()], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_folder_syncs_up_and_fetches_down_moving_only_what_changed() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("sync");
    kit.create_bucket(&bucket).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("tokenizer")).unwrap();
    random_file(src.path(), "model.safetensors", 7 << 20, 1);
    std::fs::write(src.path().join("config.json"), b"{\"a\":1}").unwrap();
    std::fs::write(src.path().join("tokenizer/vocab.txt"), b"a\nb\n").unwrap();
    let r = kit
        .sync_up(src.path(), &bucket, "m/v1", None)
        .await
        .unwrap();
    assert_eq!(r.transferred.len(), 3, "{r:?}");
    let r = kit
        .sync_up(src.path(), &bucket, "m/v1", None)
        .await
        .unwrap();
    assert!(r.transferred.is_empty(), "nothing changed: {r:?}");
    std::fs::write(src.path().join("config.json"), b"{\"a\":2}").unwrap();
    let r = kit
        .sync_up(src.path(), &bucket, "m/v1", None)
        .await
        .unwrap();
    assert_eq!(r.transferred, ["config.json"]);

    let cache = tempfile::tempdir().unwrap();
    let r = kit
        .fetch(&bucket, "m/v1", cache.path(), None)
        .await
        .unwrap();
    assert_eq!(r.transferred.len(), 3, "{r:?}");
    for f in ["model.safetensors", "config.json", "tokenizer/vocab.txt"] {
        assert_eq!(
            sha256_hex(&cache.path().join(f)),
            sha256_hex(&src.path().join(f)),
            "{f}"
        );
    }
    let r = kit
        .fetch(&bucket, "m/v1", cache.path(), None)
        .await
        .unwrap();
    assert!(r.transferred.is_empty(), "{r:?}");
    // a local file damaged (same size) is fetched again; one changed upstream too
    std::fs::write(cache.path().join("tokenizer/vocab.txt"), b"x\ny\n").unwrap();
    kit.put_bytes(&bucket, "m/v1/config.json", "{\"a\":3}".into())
        .await
        .unwrap();
    let r = kit
        .fetch(&bucket, "m/v1", cache.path(), None)
        .await
        .unwrap();
    let mut t = r.transferred.clone();
    t.sort();
    assert_eq!(t, ["config.json", "tokenizer/vocab.txt"]);
    assert_eq!(
        std::fs::read(cache.path().join("config.json")).unwrap(),
        b"{\"a\":3}"
    );
}

#[tokio::test]
async fn the_server_checks_the_crc32c_the_kit_sends_and_refuses_a_wrong_one() {
    let Some(l) = live() else { return };
    let kit = l.kit();
    let bucket = fresh_bucket("crc");
    kit.create_bucket(&bucket).await.unwrap();
    // the same request the kit makes, by hand, with a checksum of other bytes
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&l.url)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &l.access, &l.secret, None, None, "test",
        ))
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    let raw = aws_sdk_s3::Client::from_conf(conf);
    let put = |crc: &'static str| {
        raw.put_object()
            .bucket(&bucket)
            .key("c")
            .checksum_crc32_c(crc)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello"))
            .send()
    };
    // CRC32C("hello") = 0x9a71bb4c
    put("mnG7TA==")
        .await
        .expect("the right checksum is accepted");
    let e = put("AAAAAA==")
        .await
        .expect_err("a wrong checksum is refused");
    assert_eq!(
        e.raw_response().map(|r| r.status().as_u16()),
        Some(400),
        "{e:?}"
    );
    assert_eq!(
        &kit.get_bytes(&bucket, "c").await.unwrap()[..],
        b"hello",
        "the good one stays"
    );
}
