//! Transport behaviour: redirects and keys, timeouts, body limits, bad input.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{ApiKey, EndpointConfig, ErrorKind, Limits, RequestContext, Timeouts};
use infermux_http::{AUTH_HEADERS, Auth, HttpEndpoint};

use crate::support::{
    KEYED, RawServer, Step, chunk, chunked_head, json_error, json_ok, last_chunk, response,
};

const KEY: &str = "sk-very-secret-key-123";

fn endpoint(base: &str, auth: Auth) -> HttpEndpoint {
    let cfg = EndpointConfig::new("test", base)
        .unwrap()
        .with_api_key(ApiKey::new(KEY))
        .with_timeouts(
            Timeouts::standard()
                .with_first_byte(Duration::from_millis(500))
                .with_idle(Duration::from_millis(300)),
        )
        .with_limits(Limits::standard().with_max_body_bytes(1024 * 1024));
    HttpEndpoint::new("test", cfg, auth).unwrap()
}

fn ok_json() -> Vec<Step> {
    vec![Step::Send(json_ok(br#"{"ok":true}"#))]
}

#[tokio::test]
async fn cross_origin_redirect_carries_no_auth_header() {
    let other = RawServer::start(|_| ok_json()).await;
    let target = format!("{}/landing?x=1", other.url);
    let home = RawServer::start(move |req| {
        if req.path().starts_with("/same") {
            vec![Step::Send(response(
                "307 Temporary Redirect",
                &[("location", "/final")],
                b"",
            ))]
        } else if req.path().starts_with("/final") {
            ok_json()
        } else {
            vec![Step::Send(response(
                "302 Found",
                &[("location", target.as_str())],
                b"",
            ))]
        }
    })
    .await;
    for auth in KEYED {
        let ep = endpoint(&home.url, auth);
        let ctx = RequestContext::new();
        let v: serde_json::Value = ep
            .post("/away")
            .json(&serde_json::json!({"a": 1}))
            .send(&ctx)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["ok"], true);
    }
    let landed = other.seen();
    assert_eq!(landed.len(), 4);
    for req in &landed {
        for h in AUTH_HEADERS {
            assert!(
                req.header(h).is_none(),
                "{h} leaked to another origin: {}",
                req.head
            );
        }
        assert!(!req.head.contains(KEY));
        assert!(req.head.starts_with("GET "), "302 turns POST into GET");
    }
    // a same-origin redirect keeps the key
    let ep = endpoint(&home.url, Auth::Bearer);
    ep.get("/same").send(&RequestContext::new()).await.unwrap();
    let fin = home.seen_at("/final");
    assert_eq!(
        fin.header("authorization").as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

/// Every request names the host it goes to, once: the endpoint's own, which infermux writes
/// for a plain-HTTP endpoint, on the first hop and a same-origin redirect, and another
/// origin's (hyper's) on a hop there, never the endpoint's.
#[tokio::test]
async fn every_hop_carries_one_host_header_its_own() {
    let other = RawServer::start(|_| ok_json()).await;
    let target = format!("{}/landing", other.url);
    let home = RawServer::start(move |req| {
        if req.path().starts_with("/v1/away") {
            vec![Step::Send(response(
                "302 Found",
                &[("location", target.as_str())],
                b"",
            ))]
        } else if req.path().starts_with("/v1/same") {
            vec![Step::Send(response(
                "307 Temporary Redirect",
                &[("location", "/v1/final")],
                b"",
            ))]
        } else {
            ok_json()
        }
    })
    .await;
    let ep = endpoint(&format!("{}/v1", home.url), Auth::Bearer);
    let ctx = RequestContext::new();
    for path in ["/chat/completions", "/away", "/same"] {
        ep.post(path)
            .json(&serde_json::json!({"a": 1}))
            .send(&ctx)
            .await
            .unwrap();
    }
    let hosts = |seen: &crate::support::Seen| seen.headers("host");
    let home_seen = home.seen();
    assert_eq!(home_seen.len(), 4, "chat, away, same, final");
    for req in &home_seen {
        assert_eq!(
            hosts(req),
            [home.url.trim_start_matches("http://")],
            "{}",
            req.head
        );
    }
    // a `Host` of the endpoint's own configuration is the only one sent
    let cfg = EndpointConfig::new("test", format!("{}/v1", home.url))
        .unwrap()
        .with_header("Host", "virtual.example");
    let ep = HttpEndpoint::new("test", cfg, Auth::Bearer).unwrap();
    ep.get("/virtual").send(&ctx).await.unwrap();
    assert_eq!(hosts(&home.seen_at("/v1/virtual")), ["virtual.example"]);
    let other_seen = other.seen();
    assert_eq!(other_seen.len(), 1);
    assert_eq!(
        hosts(&other_seen[0]),
        [other.url.trim_start_matches("http://")],
        "{}",
        other_seen[0].head
    );
}

/// A request carries one `accept-encoding` (gzip, what the workspace's reqwest decodes) and one
/// `content-length`, its body's own, and none without a body; an endpoint's own
/// `accept-encoding` wins.
#[tokio::test]
async fn one_accept_encoding_and_one_content_length_the_bodys_own() {
    let server = RawServer::start(|_| ok_json()).await;
    let ep = endpoint(&format!("{}/v1", server.url), Auth::Bearer);
    let ctx = RequestContext::new();
    let body = serde_json::json!({"model": "m", "text": "héllo"});
    let len = serde_json::to_vec(&body).unwrap().len().to_string();
    ep.post("/with-body").json(&body).send(&ctx).await.unwrap();
    ep.get("/no-body").send(&ctx).await.unwrap();
    let with = server.seen_at("/v1/with-body");
    assert_eq!(with.headers("accept-encoding"), ["gzip"], "{}", with.head);
    assert_eq!(with.headers("content-length"), [len], "{}", with.head);
    let without = server.seen_at("/v1/no-body");
    assert_eq!(
        without.headers("accept-encoding"),
        ["gzip"],
        "{}",
        without.head
    );
    assert!(
        without.headers("content-length").is_empty(),
        "{}",
        without.head
    );

    let cfg = EndpointConfig::new("test", format!("{}/v1", server.url))
        .unwrap()
        .with_header("Accept-Encoding", "identity");
    let ep = HttpEndpoint::new("test", cfg, Auth::Bearer).unwrap();
    ep.post("/own").json(&body).send(&ctx).await.unwrap();
    let own = server.seen_at("/v1/own");
    assert_eq!(own.headers("accept-encoding"), ["identity"], "{}", own.head);
}

#[tokio::test]
async fn key_is_bound_to_its_origin_and_request_id_is_sent() {
    let server = RawServer::start(|_| ok_json()).await;
    let ep = endpoint("http://127.0.0.1:9/v1", Auth::Bearer);
    let err = ep
        .get(&format!("{}/steal", server.url))
        .send(&RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(server.seen().is_empty());

    let ep = endpoint(&server.url, Auth::Header("x-api-key"));
    let ctx = RequestContext::new();
    ep.get("/x").send(&ctx).await.unwrap();
    let seen = &server.seen()[0];
    assert_eq!(
        seen.header("x-request-id"),
        Some(ctx.request_id().to_string())
    );
    assert_eq!(seen.header("x-api-key").as_deref(), Some(KEY));
    assert!(seen.header("authorization").is_none());
    // headers set by hand cannot smuggle credentials (a request's own headers go on every
    // hop of its redirects, to any origin), whatever their case
    for h in AUTH_HEADERS
        .iter()
        .chain(&["Authorization", "Proxy-Authorization"])
    {
        let err = ep
            .get("/x")
            .header(h, "Bearer other")
            .send(&ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{h}");
    }
    // nor headers built ahead
    let err = ep
        .get("/x")
        .header_value(
            infermux_http::HeaderName::from_static("x-goog-api-key"),
            infermux_http::HeaderValue::from_static("other"),
        )
        .send(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(server.seen().len(), 1, "a refused request is never sent");
}

#[tokio::test]
async fn errors_never_print_keys_or_queries() {
    // nothing listens on port 9 (discard): a connect error whose URL has a query
    let ep = endpoint("http://127.0.0.1:9/v1?key=query-secret", Auth::Bearer);
    let ctx = RequestContext::new();
    let err = ep
        .get("/models?token=query-secret")
        .send(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.reached_server(), Some(false));
    assert_eq!(err.request_id(), Some(ctx.request_id()));
    let mut texts = vec![err.to_string(), format!("{err:?}"), format!("{ep:?}")];
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(s) = src {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        src = s.source();
    }
    for t in texts {
        assert!(!t.contains("query-secret"), "{t}");
        assert!(!t.contains(KEY), "{t}");
    }
}

#[tokio::test]
async fn status_headers_and_body_map_to_typed_errors() {
    let server = RawServer::start(|req| {
        let p = req.path();
        let r = if p == "/429" {
            response("429 Too Many Requests", &[("retry-after-ms", "1500"), ("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "2s")], br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#)
        } else if p == "/html" {
            response("502 Bad Gateway", &[("content-type", "text/html")], b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
        } else if p == "/empty" {
            json_ok(b"")
        } else if p == "/malformed" {
            json_ok(br#"{"choices": [1, 2"#)
        } else if p == "/no-retry" {
            response("500 Internal Server Error", &[("x-should-retry", "false")], b"{}")
        } else {
            response("529 Overloaded", &[], br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
        };
        vec![Step::Send(r)]
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let ctx = RequestContext::new();
    let e = ep.get("/429").send(&ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(
        e.rate_limit().unwrap().exhausted_until(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(e.provider_code(), Some("rate_limit_exceeded"));
    let e = ep.get("/html").send(&ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert!(e.message().contains("502 Bad Gateway"), "{}", e.message());
    let e = json_error(&ep, &ctx, "/empty").await;
    assert_eq!(e.kind(), ErrorKind::Decode);
    let e = json_error(&ep, &ctx, "/malformed").await;
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.status(), Some(200));
    let e = ep.get("/no-retry").send(&ctx).await.unwrap_err();
    assert!(!e.is_retryable());
    let e = ep.get("/overloaded").send(&ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert!(e.is_retryable());
}

#[tokio::test]
async fn huge_content_length_fails_at_once() {
    let server = RawServer::start(|_| {
        vec![
            Step::Send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2147483648\r\n\r\n{\"a\":".to_vec()),
            Step::Stall,
        ]
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let e = ep
        .get("/big")
        .send(&RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.message().contains("exceeds the limit"), "{}", e.message());
    assert!(e.is_over_body_limit(), "a smaller request may fit: {e:?}");
    server.release.notify_waiters();
}

#[tokio::test]
async fn gzip_bomb_is_cut_at_the_decompressed_limit() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1024 * 1024];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(
        bomb.len() < 200 * 1024,
        "64 MiB of spaces compress well: {}",
        bomb.len()
    );
    let server = RawServer::start(move |_| {
        vec![Step::Send(response(
            "200 OK",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            &bomb,
        ))]
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let e = ep
        .get("/bomb")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.is_over_body_limit(), "{e:?}");
}

#[tokio::test]
async fn first_byte_and_idle_timeouts() {
    let server = RawServer::start(|req| {
        if req.path() == "/silent" {
            vec![Step::Stall]
        } else {
            vec![
                Step::Send(chunked_head("200 OK", "text/event-stream")),
                Step::Send(chunk(b"data: {\"n\":1}\n\n")),
                Step::Stall,
            ]
        }
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let e = ep
        .get("/silent")
        .send(&RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let mut events = ep
        .get("/stall")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse();
    assert_eq!(events.next().await.unwrap().unwrap().data, "{\"n\":1}");
    let e = events.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(events.next().await.is_none(), "an error ends the stream");
    server.release.notify_waiters();
}

/// The first-byte timeout counts to the first byte of the body (`Timeouts::first_byte`), not
/// of the headers: a streaming server that sends its headers at once and its first event
/// after a prefill longer than the idle timeout is waited for until the first-byte timeout
/// ends. Before, the first body chunk was held to the idle timeout and such a stream failed.
#[tokio::test(start_paused = true)]
async fn the_first_body_data_waits_for_the_first_byte_timeout_not_the_idle_one() {
    // first byte 500 ms, idle 300 ms
    let server = RawServer::start(|req| {
        let prefill = if req.path() == "/slow" { 400 } else { 700 };
        vec![
            Step::Send(chunked_head("200 OK", "text/event-stream")),
            Step::Wait(Duration::from_millis(prefill)),
            Step::Send(chunk(b"data: 1\n\n")),
            Step::Wait(Duration::from_millis(350)),
            Step::Send(chunk(b"data: 2\n\n")),
            Step::Stall,
        ]
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let mut events = ep
        .get("/slow")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse();
    assert_eq!(events.next().await.unwrap().unwrap().data, "1");
    // after the first data, the idle timeout (300 ms) holds: 350 ms of silence ends it
    let e = events.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.message(), "no data within the idle timeout");

    // a prefill past the first-byte timeout still fails, when that timeout ends
    let sent = tokio::time::Instant::now();
    let mut events = ep
        .get("/slower")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse();
    let e = events.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.message(), "no body data within the first-byte timeout");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(510),
        "{waited:?}"
    );
    server.release.notify_waiters();
}

#[tokio::test]
async fn sse_split_into_tiny_network_chunks_decodes_the_same() {
    let body = "event: message_start\r\ndata: {\"a\": \"héllo 🌍\"}\r\n\r\n: ping\n\ndata:{\"b\":2}\n\ndata: [DONE]\n\n";
    let bytes = body.as_bytes().to_vec();
    let server = RawServer::start(move |_| {
        let mut steps = vec![Step::Send(chunked_head("200 OK", "text/event-stream"))];
        steps.extend(bytes.chunks(3).map(|c| Step::Send(chunk(c))));
        steps.push(Step::Send(last_chunk()));
        steps
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let events: Vec<_> = ep
        .get("/s")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse()
        .collect()
        .await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].event.as_deref(), Some("message_start"));
    assert_eq!(events[0].data, "{\"a\": \"héllo 🌍\"}");
    assert_eq!(events[1].data, "{\"b\":2}");
    assert_eq!(events[2].data, "[DONE]");
}

/// The events a body's bad bytes end the stream after, split by the network as `split`
/// (sizes of the chunks sent, the rest in one).
async fn sse_events_before_bad_bytes(split: &'static [usize]) -> Vec<Result<String, ErrorKind>> {
    let body: &[u8] = b"data: {\"a\":1}\n\ndata: [DONE]\n\n: \xFF\n";
    let server = RawServer::start(move |_| {
        let mut steps = vec![Step::Send(chunked_head("200 OK", "text/event-stream"))];
        let mut rest = body;
        for n in split {
            let (c, r) = rest.split_at(*n);
            steps.push(Step::Send(chunk(c)));
            rest = r;
        }
        steps.push(Step::Send(chunk(rest)));
        steps.push(Step::Send(last_chunk()));
        steps
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let resp = ep.get("/s").send(&RequestContext::new()).await.unwrap();
    resp.sse()
        .map(|r| r.map(|e| e.data).map_err(|e| e.kind()))
        .collect()
        .await
}

/// The events a chunk completes before its bad bytes are handed out, then the error:
/// the same whether the network sends the body in one chunk or splits it before them
/// (the events of the failing chunk were dropped).
#[tokio::test]
async fn events_before_bad_bytes_in_the_same_chunk_are_not_lost() {
    let want = vec![
        Ok("{\"a\":1}".to_owned()),
        Ok("[DONE]".to_owned()),
        Err(ErrorKind::Decode),
    ];
    assert_eq!(sse_events_before_bad_bytes(&[]).await, want);
    assert_eq!(sse_events_before_bad_bytes(&[12]).await, want);
    assert_eq!(sse_events_before_bad_bytes(&[27]).await, want);
}

/// The error of reading a JSON body from a server that answers `raw` (headers and body).
async fn json_body_error(raw: &'static [u8]) -> infermux_core::Error {
    let server = RawServer::start(move |_| vec![Step::Send(raw.to_vec())]).await;
    let ep = endpoint(&server.url, Auth::Bearer);
    ep.get("/t")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn truncated_body_is_an_error_not_a_hang() {
    let e = json_body_error(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"partial\":").await;
    // a body cut short is the connection's failure (a retry may get it whole), after the
    // server answered; reqwest's decompression reports it as a decoding error
    assert_eq!(e.kind(), ErrorKind::Connect, "{e:?}");
    assert_eq!(e.reached_server(), Some(true), "{e:?}");
}

/// A body that arrived whole and does not decompress is a decoding error, not the
/// connection's (the control of the test above).
#[tokio::test]
async fn a_whole_body_that_does_not_decompress_is_a_decode_error() {
    let e = json_body_error(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 12\r\nconnection: close\r\n\r\nnot gzip at!").await;
    assert_eq!(e.kind(), ErrorKind::Decode, "{e:?}");
}

/// A stream is bounded per event (the body limit), not in its whole length: 300 events of
/// 4 KiB (1.2 MB) through an endpoint whose body limit is 1 MiB all arrive. Before, the
/// stream was cut at 1 MiB with "streamed body exceeds the size limit" (a long answer with
/// log-probabilities passes the 32 MiB default). One event over the limit still fails.
#[tokio::test]
async fn a_stream_longer_than_the_body_limit_is_not_cut_an_event_over_it_is() {
    let event = format!("data: {}\n\n", "x".repeat(4090));
    let big = format!("data: {}\n\n", "y".repeat(2 * 1024 * 1024));
    let server = RawServer::start(move |req| {
        let mut steps = vec![Step::Send(chunked_head("200 OK", "text/event-stream"))];
        if req.path() == "/long" {
            for _ in 0..300 {
                steps.push(Step::Send(chunk(event.as_bytes())));
            }
        } else {
            steps.push(Step::Send(chunk(big.as_bytes())));
        }
        steps.push(Step::Send(last_chunk()));
        steps
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let events: Vec<_> = ep
        .get("/long")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse()
        .collect()
        .await;
    assert_eq!(events.len(), 300);
    assert!(events.iter().all(Result::is_ok));
    let events: Vec<_> = ep
        .get("/one-too-big")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse()
        .collect()
        .await;
    assert!(
        events.iter().any(Result::is_err),
        "one event of 2 MiB is over the limit"
    );
}

/// A stream of `n` SSE events `data: 0`, `data: 1`, … written `gap` apart, then silence.
fn paced_events(n: usize, gap: Duration) -> Vec<Step> {
    let mut steps = vec![Step::Send(chunked_head("200 OK", "text/event-stream"))];
    for i in 0..n {
        if i > 0 {
            steps.push(Step::Wait(gap));
        }
        steps.push(Step::Send(chunk(format!("data: {i}\n\n").as_bytes())));
    }
    steps.push(Step::Stall);
    steps
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_each_wait_and_the_attempt_deadline_cuts_it() {
    let server = RawServer::start(|_| paced_events(4, Duration::from_millis(250))).await;
    // idle 300 ms: events 250 ms apart all arrive, then 300 ms of silence ends the stream
    let ep = endpoint(&server.url, Auth::Bearer);
    let mut events = ep
        .get("/paced")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse();
    for i in 0..4 {
        assert_eq!(events.next().await.unwrap().unwrap().data, i.to_string());
    }
    let silent_since = tokio::time::Instant::now();
    let e = events.next().await.unwrap().unwrap_err();
    let waited = silent_since.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.message(), "no data within the idle timeout");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(310),
        "the idle timeout counts from the last wait: {waited:?}"
    );
    assert!(events.next().await.is_none());

    // the attempt's deadline (400 ms) comes before the idle timeout of the third wait
    let cfg = EndpointConfig::new("test", &server.url)
        .unwrap()
        .with_timeouts(
            Timeouts::standard()
                .with_idle(Duration::from_millis(300))
                .with_total(Some(Duration::from_millis(400))),
        );
    let ep = HttpEndpoint::new("test", cfg, Auth::None).unwrap();
    let sent = tokio::time::Instant::now();
    let mut events = ep
        .get("/paced")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .sse();
    for i in 0..2 {
        assert_eq!(events.next().await.unwrap().unwrap().data, i.to_string());
    }
    let e = events.next().await.unwrap().unwrap_err();
    let at = sent.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(
        e.message(),
        "the attempt's time ran out while reading the body"
    );
    assert!(
        at >= Duration::from_millis(400) && at < Duration::from_millis(410),
        "{at:?}"
    );
    server.release.notify_waiters();
}

#[tokio::test]
async fn invalid_endpoint_headers_and_keys_fail_at_send_as_before() {
    let server = RawServer::start(|_| ok_json()).await;
    // a configured header that is not a valid header name
    let cfg = EndpointConfig::new("test", &server.url)
        .unwrap()
        .with_header("bad header", "x");
    let ep = HttpEndpoint::new("test", cfg, Auth::None).unwrap();
    let e = ep.get("/x").send(&RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(e.reached_server(), Some(false));
    assert!(e.to_string().contains("\"bad header\""), "{e}");
    // a valid name with a value that is not a header value: named, the value not shown
    let cfg = EndpointConfig::new("test", &server.url)
        .unwrap()
        .with_header("x-tenant", "tok-secret\nvalue");
    let ep = HttpEndpoint::new("test", cfg, Auth::None).unwrap();
    let e = ep.get("/x").send(&RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("\"x-tenant\""), "{e}");
    assert!(!format!("{e:?}").contains("tok-secret"), "{e:?}");
    // a key that is not a valid header value, as a bearer token and in its own header
    for auth in [Auth::Bearer, Auth::Header("x-api-key")] {
        let cfg = EndpointConfig::new("test", &server.url)
            .unwrap()
            .with_api_key(ApiKey::new("sk-bad\u{7f}key-0123"));
        let ep = HttpEndpoint::new("test", cfg, auth).unwrap();
        let e = ep.get("/x").send(&RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{auth:?}: {e}");
        assert!(!format!("{e:?}").contains("sk-bad"), "{e:?}");
    }
    assert!(server.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn timeouts_of_duration_max_are_no_timeouts_not_a_panic() {
    let server = RawServer::start(|_| ok_json()).await;
    let cfg = EndpointConfig::new("test", &server.url)
        .unwrap()
        .with_timeouts(
            Timeouts::standard()
                .with_first_byte(Duration::MAX)
                .with_idle(Duration::MAX)
                .with_total(Some(Duration::MAX)),
        );
    let ep = HttpEndpoint::new("test", cfg, Auth::None).unwrap();
    let ctx = RequestContext::new().with_timeout(Duration::MAX);
    let v: serde_json::Value = ep.get("/x").send(&ctx).await.unwrap().json().await.unwrap();
    assert_eq!(v["ok"], true);
    // a body read in chunks arms the idle timer
    let mut events = ep.get("/x").send(&ctx).await.unwrap().sse();
    assert!(events.next().await.is_none());
}
