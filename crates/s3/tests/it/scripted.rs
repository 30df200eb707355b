//! Answers no real server gives on demand, from a scripted one: S3's wire format, bent.

use infermux_core::ErrorKind;
use infermux_s3::{S3Config, S3Credentials, S3EndpointConfig, S3Kit};
use infermux_testkit::{IncomingRequest, Reply, Scripted};

/// A ListObjectsV2 page of one key, `truncated` or not, with `token` as the next one's.
fn page(key: &str, truncated: bool, token: Option<&str>) -> Reply {
    let token = token.map_or_else(String::new, |t| {
        format!("<NextContinuationToken>{t}</NextContinuationToken>")
    });
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Name>b</Name><Prefix>m/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>\
         <IsTruncated>{truncated}</IsTruncated>{token}\
         <Contents><Key>{key}</Key><Size>3</Size><ETag>\"abc\"</ETag>\
         <LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>\
         </ListBucketResult>"
    );
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/xml".into())],
        body: body.into(),
    }
}

async fn kit_on(
    answer: impl Fn(&IncomingRequest) -> Reply + Send + Sync + 'static,
) -> (Scripted, S3Kit) {
    let server = Scripted::start(answer).await.unwrap();
    let endpoint = S3EndpointConfig::new("scripted", server.url())
        .with_credentials(S3Credentials::new("access", "secret"))
        .with_path_style(true);
    (server, S3Kit::new(S3Config::new(vec![endpoint])).unwrap())
}

/// A listing said to go on without a continuation token, or with the same one again, is a
/// decode error: before, the first ended the listing there (a `fetch` or `ls` silently
/// short) and the second would have listed the same page for ever.
#[tokio::test]
async fn a_truncated_listing_without_a_new_token_is_an_error_not_its_end() {
    // the control: a page that is the last lists
    let (_s, kit) = kit_on(|_| page("m/a", false, None)).await;
    let all = kit.list("b", "m/").await.unwrap();
    assert_eq!(all.len(), 1);

    let (_s, kit) = kit_on(|_| page("m/a", true, None)).await;
    let e = kit.list("b", "m/").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("no continuation token"), "{e}");

    let (s, kit) = kit_on(|_| page("m/a", true, Some("same"))).await;
    let e = kit.list("b", "m/").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("same continuation token"), "{e}");
    // the first page, and the second (asked with the token): then it stops
    assert_eq!(s.requests().len(), 2);
}

/// A body that stops coming after its headers is bounded by the attempt timeout (the
/// endpoint's promise: the longest one request takes, body included). Before, the SDK's own
/// attempt timeout ended at the headers and only its stalled-stream check (a byte a second
/// over 20 s) stood between a drip-fed body and a call that never ends.
#[tokio::test]
async fn a_body_that_stalls_after_its_headers_times_out_at_the_attempt_timeout() {
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let server = Scripted::start(move |_| {
        let (tx, chunks) = tokio::sync::mpsc::channel(1);
        // the sender is kept: the body neither goes on nor ends
        keep.lock().unwrap().push(tx);
        Reply::Stream {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            chunks,
        }
    })
    .await
    .unwrap();
    let endpoint = S3EndpointConfig::new("scripted", server.url())
        .with_credentials(S3Credentials::new("access", "secret"))
        .with_path_style(true)
        .with_timeouts(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(500),
        );
    let kit = S3Kit::new(S3Config::new(vec![endpoint]).with_max_attempts(1)).unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(15), kit.get_bytes("b", "k"))
        .await
        .expect("the call ends (within 15 s) instead of waiting on the body for ever");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!held.lock().unwrap().is_empty());
}

/// A refusal names the ids the server gave it (`x-amz-request-id`, `x-amz-id-2`), which its
/// operators ask for; before, they were read nowhere.
#[tokio::test]
async fn a_refusal_names_the_servers_request_and_host_ids() {
    let (_s, kit) = kit_on(|_| Reply::Full {
        status: 404,
        headers: vec![
            ("content-type".into(), "application/xml".into()),
            ("x-amz-request-id".into(), "4442587FB7D0A2F9".into()),
            (
                "x-amz-id-2".into(),
                "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="
                    .into(),
            ),
        ],
        body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchBucket</Code>\
               <Message>The specified bucket does not exist</Message></Error>"
            .into(),
    })
    .await;
    let e = kit.head("b", "k").await.unwrap_err();
    let text = format!("{e} {:?}", e.call_error());
    assert!(text.contains("request id 4442587FB7D0A2F9"), "{text}");
    assert!(text.contains("host id vlR7PnpV2Ce81l0"), "{text}");
}

/// A completion whose answer is lost (the connection drops after the server completed the
/// upload) is retried, and the retry meets `NoSuchUpload`: the object carrying the file's
/// SHA-256 says the upload completed. Before, that success was reported as a failed upload.
#[tokio::test]
async fn a_completion_whose_answer_was_lost_is_recognised_by_the_objects_sha256() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct State {
        sha: Option<String>,
        /// The object's metadata is another writer's (no SHA-256 of ours).
        foreign: bool,
        completions: u32,
        seen: Vec<String>,
    }
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    let xml = |status: u16, body: &str| Reply::Full {
        status,
        headers: vec![("content-type".into(), "application/xml".into())],
        body: body.to_owned().into(),
    };
    let server = Scripted::start(move |req| {
        let mut s = st.lock().unwrap();
        s.seen
            .push(format!("{} {}?{}", req.method, req.path, req.query));
        match (req.method.as_str(), req.query.as_str()) {
            ("POST", q) if q.starts_with("uploads") => {
                s.sha = req.header("x-amz-meta-infermux-sha256").map(str::to_owned);
                xml(
                    200,
                    "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
                     <UploadId>U1</UploadId></InitiateMultipartUploadResult>",
                )
            }
            ("PUT", q) if q.contains("partNumber=") => Reply::Full {
                status: 200,
                headers: vec![("etag".into(), "\"0123456789abcdef0123456789abcdef\"".into())],
                body: Vec::new().into(),
            },
            ("POST", q) if q.contains("uploadId=U1") => {
                s.completions += 1;
                if s.completions == 1 {
                    // completed, and the answer lost on the way
                    Reply::Reset
                } else {
                    xml(
                        404,
                        "<Error><Code>NoSuchUpload</Code><Message>The specified upload does \
                         not exist.</Message></Error>",
                    )
                }
            }
            ("HEAD", _) if s.completions > 0 => {
                let mut headers = vec![
                    (
                        "etag".into(),
                        "\"feedfacefeedfacefeedfacefeedface-2\"".into(),
                    ),
                    ("content-length".into(), (7u64 << 20).to_string()),
                ];
                if let Some(sha) = s.sha.as_ref().filter(|_| !s.foreign) {
                    headers.push(("x-amz-meta-infermux-sha256".into(), sha.clone()));
                }
                Reply::Full {
                    status: 200,
                    headers,
                    body: Vec::new().into(),
                }
            }
            _ => xml(
                404,
                "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>",
            ),
        }
    })
    .await
    .unwrap();
    let endpoint = S3EndpointConfig::new("scripted", server.url())
        .with_credentials(S3Credentials::new("access", "secret"))
        .with_path_style(true);
    let kit =
        S3Kit::new(S3Config::new(vec![endpoint]).with_transfer(crate::small_parts())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.bin");
    std::fs::write(&path, vec![7u8; 7 << 20]).unwrap();
    let up = kit.upload_file("b", "k", &path).await;
    let seen = state.lock().unwrap().seen.join("\n");
    let up = up.unwrap_or_else(|e| panic!("{e}\n{seen}"));
    assert_eq!(up.parts, 2);
    assert_eq!(state.lock().unwrap().completions, 2, "{seen}");
    // the control: an object without the file's SHA-256 is not taken for the upload
    state.lock().unwrap().completions = 0;
    state.lock().unwrap().foreign = true;
    std::fs::write(&path, vec![8u8; 7 << 20]).unwrap();
    let e = kit.upload_file("b", "k", &path).await.unwrap_err();
    assert!(
        matches!(&e, infermux_s3::S3Error::UploadFailed { source, .. }
            if source.provider_code() == Some("NoSuchUpload")),
        "{e:?}"
    );
}

/// A server that ignores `Range` (answers 200 with the whole object) fails a download of
/// several ranges instead of corrupting it (each range was written whole at its offset, over
/// the ranges after it, already counted as done); an object of one range may come whole, as
/// that is the range.
#[tokio::test]
async fn a_server_that_ignores_ranges_fails_the_download_not_the_file() {
    let object = |size: usize| -> std::sync::Arc<Vec<u8>> {
        std::sync::Arc::new((0..size).map(|i| (i % 251) as u8).collect())
    };
    let whole = |body: std::sync::Arc<Vec<u8>>| {
        move |_: &IncomingRequest| {
            // HEAD and GET alike: 200 and every byte, whatever the Range
            let headers = vec![
                ("etag".to_owned(), "\"abc\"".to_owned()),
                (
                    "last-modified".to_owned(),
                    "Thu, 01 Jan 2026 00:00:00 GMT".to_owned(),
                ),
            ];
            Reply::Full {
                status: 200,
                headers,
                body: body.as_ref().clone().into(),
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // 11 MiB in 8 MiB ranges: two ranges
    let (_s, kit) = kit_on(whole(object(11 << 20))).await;
    let dst = dir.path().join("big.bin");
    let e = kit.download_file("b", "big.bin", &dst).await.unwrap_err();
    assert!(e.to_string().contains("asked for bytes 0-8388607"), "{e}");
    assert!(!dst.exists(), "nothing under the final name");
    // and `get_range` returns no other bytes than asked for
    let e = kit
        .get_range("b", "big.bin", 10..20, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("asked for bytes 10-19"), "{e}");
    // one range: the whole object is the range
    let small = object(1000);
    let (_s, kit) = kit_on(whole(small.clone())).await;
    let dst = dir.path().join("small.bin");
    let down = kit.download_file("b", "small.bin", &dst).await.unwrap();
    assert_eq!(down.size, 1000);
    assert_eq!(std::fs::read(&dst).unwrap(), *small);
    let got = kit
        .get_range("b", "small.bin", 0..4096, None)
        .await
        .unwrap();
    assert_eq!(got.as_ref(), small.as_slice());
}
