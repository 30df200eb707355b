//! The attempt's context on the wire: the key a pool chose for the attempt goes instead of the
//! endpoint's own, in the endpoint's header scheme, only to its own endpoint and origin, and is
//! scrubbed from what the server sends back; the response's rate-limit headers land in the
//! attempt's `ResponseMeta` cell, success, error and stream alike.

use std::sync::Arc;

use futures_util::StreamExt;
use infermux_core::{
    ApiKey, AttemptKey, EndpointConfig, EndpointId, Error, ErrorKind, RequestContext, ResponseMeta,
};
use infermux_http::{Auth, HttpEndpoint};

use crate::support::{
    KEYED, RawServer, Seen, Step, chunk, chunked_head, json_ok, last_chunk, response,
};

const CONFIGURED: &str = "sk-configured-key-1111";
const ATTEMPT: &str = "sk-attempt-key-2222";

fn endpoint(id: &str, base: &str, auth: Auth) -> HttpEndpoint {
    let cfg = EndpointConfig::new(id, base)
        .unwrap()
        .with_api_key(ApiKey::new(CONFIGURED));
    HttpEndpoint::new("test", cfg, auth).unwrap()
}

fn attempt(endpoint: &str) -> RequestContext {
    RequestContext::new().with_key(AttemptKey::new(
        EndpointId::new(endpoint),
        "team-b",
        ApiKey::new(ATTEMPT),
    ))
}

/// The credential header `auth` sends, as the server saw it.
fn credential(seen: &Seen, auth: Auth) -> Option<String> {
    match auth {
        Auth::Header(name) => seen.header(name),
        _ => seen.header("authorization"),
    }
}

/// Display, Debug and the whole source chain of `err`.
fn all_text(err: &Error) -> String {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = src {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        src = s.source();
    }
    texts.join("\n")
}

#[tokio::test]
async fn the_attempt_key_is_sent_in_the_endpoints_scheme_instead_of_the_configured_one() {
    let server = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    for auth in KEYED {
        let ep = endpoint("ep-a", &server.url, auth);
        let before = server.seen().len();
        ep.get("/with-attempt-key")
            .send(&attempt("ep-a"))
            .await
            .unwrap();
        ep.get("/configured")
            .send(&RequestContext::new())
            .await
            .unwrap();
        let seen = server.seen();
        let (with, without) = (&seen[before], &seen[before + 1]);
        let want = |key: &str| match auth {
            Auth::Bearer => format!("Bearer {key}"),
            _ => key.to_owned(),
        };
        assert_eq!(credential(with, auth), Some(want(ATTEMPT)), "{auth:?}");
        assert!(!with.head.contains(CONFIGURED), "{auth:?}: {}", with.head);
        // exactly one credential header: the configured one is not sent beside it
        let creds = with
            .head
            .lines()
            .filter(|l| {
                let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                infermux_http::AUTH_HEADERS.contains(&name.as_str())
            })
            .count();
        assert_eq!(creds, 1, "{auth:?}: {}", with.head);
        // without an attempt key the configured one goes, as before
        assert_eq!(
            credential(without, auth),
            Some(want(CONFIGURED)),
            "{auth:?}"
        );
    }
}

#[tokio::test]
async fn a_key_bound_to_another_endpoint_is_refused_before_anything_is_sent() {
    let server = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let ep = endpoint("ep-a", &server.url, Auth::Bearer);
    let err = ep.get("/x").send(&attempt("ep-b")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("another endpoint"), "{err}");
    assert_eq!(err.endpoint().map(EndpointId::as_str), Some("ep-a"));
    assert!(!all_text(&err).contains(ATTEMPT));
    // a request sent without any key checks the binding too
    let err = ep
        .get("/x")
        .without_key()
        .send(&attempt("ep-b"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    // an endpoint that sends no key has nowhere to put one
    let none = endpoint("ep-a", &server.url, Auth::None);
    let err = none.get("/x").send(&attempt("ep-a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(server.seen().len(), 0, "the server saw no request");
}

#[tokio::test]
async fn the_attempt_key_never_goes_to_another_origin() {
    let elsewhere = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let target = format!("{}/landing", elsewhere.url);
    let home = RawServer::start(move |_| {
        vec![Step::Send(response(
            "302 Found",
            &[("location", target.as_str())],
            b"",
        ))]
    })
    .await;
    let ep = endpoint("ep-a", &home.url, Auth::Bearer);
    // an absolute URL on another origin is refused with the key
    let err = ep
        .get(&format!("{}/direct", elsewhere.url))
        .send(&attempt("ep-a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // a redirect to another origin is followed without it
    ep.get("/go").send(&attempt("ep-a")).await.unwrap();
    assert_eq!(
        credential(&home.seen_at("/go"), Auth::Bearer).as_deref(),
        Some(format!("Bearer {ATTEMPT}").as_str())
    );
    let landed = elsewhere.seen();
    assert_eq!(landed.len(), 1);
    assert!(!landed[0].head.contains(ATTEMPT), "{}", landed[0].head);
    assert!(!landed[0].head.contains(CONFIGURED), "{}", landed[0].head);
}

#[tokio::test]
async fn an_attempt_key_echoed_by_the_server_is_scrubbed_from_errors_and_streams() {
    let server = RawServer::start(|req| {
        let echoed = req.head.replace(['\r', '\n', '"'], " ");
        let r = match req.path().as_str() {
            "/json" => response(
                "401 Unauthorized",
                &[("content-type", "application/json")],
                format!(r#"{{"error":{{"message":"bad key {echoed}","type":"auth"}}}}"#).as_bytes(),
            ),
            "/snippet" => json_ok(format!("{ATTEMPT} is not JSON").as_bytes()),
            _ => {
                let mut out = chunked_head("200 OK", "text/event-stream");
                out.extend(chunk(
                    format!("event: error\ndata: {{\"message\":\"{echoed}\"}}\n\n").as_bytes(),
                ));
                out.extend(last_chunk());
                out
            }
        };
        vec![Step::Send(r)]
    })
    .await;
    for auth in KEYED {
        let ep = endpoint("ep-a", &server.url, auth);
        let ctx = attempt("ep-a");
        let err = ep.get("/json").send(&ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        let text = all_text(&err);
        assert!(!text.contains(ATTEMPT), "{auth:?}: {text}");
        assert!(text.contains("***"), "the echo is there, masked: {text}");
        let err = ep
            .get("/snippet")
            .send(&ctx)
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap_err();
        assert!(!all_text(&err).contains(ATTEMPT), "{err}");
        let mut items = ep.get("/stream").send(&ctx).await.unwrap().sse();
        let ev = items.next().await.unwrap().unwrap();
        assert!(!ev.data.contains(ATTEMPT), "{}", ev.data);
        assert!(ev.data.contains("***"));
    }
}

#[tokio::test]
async fn an_attempt_key_is_not_in_debug_output() {
    let ctx = attempt("ep-a");
    assert!(!format!("{ctx:?}").contains(ATTEMPT));
    let server = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let ep = endpoint("ep-a", &server.url, Auth::Bearer);
    let resp = ep.get("/x").send(&ctx).await.unwrap();
    assert!(!format!("{resp:?} {ep:?}").contains(ATTEMPT));
}

const LIMIT_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-ratelimit-limit-tokens", "30000"),
    ("x-ratelimit-remaining-tokens", "29000"),
    ("x-ratelimit-reset-tokens", "2s"),
];

#[tokio::test]
async fn response_meta_records_rate_limit_headers_on_success_error_and_stream() {
    let server = RawServer::start(|req| {
        let r = match req.path().as_str() {
            "/ok" => response("200 OK", LIMIT_HEADERS, b"{}"),
            "/bare" => json_ok(b"{}"),
            "/limited" => response(
                "429 Too Many Requests",
                LIMIT_HEADERS,
                br#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#,
            ),
            _ => {
                let mut head =
                    String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\ncontent-type: text/event-stream\r\n");
                for (k, v) in LIMIT_HEADERS.iter().skip(1) {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                out.extend(chunk(b"data: {}\n\n"));
                out.extend(last_chunk());
                out
            }
        };
        vec![Step::Send(r)]
    })
    .await;
    let ep = endpoint("ep-a", &server.url, Auth::Bearer);
    let with_meta = || {
        let meta = Arc::new(ResponseMeta::new());
        (RequestContext::new().with_meta(meta.clone()), meta)
    };

    let (ctx, meta) = with_meta();
    ep.get("/ok").send(&ctx).await.unwrap();
    let info = meta.rate_limits().expect("recorded on a success");
    assert_eq!(info.requests.limit, Some(500));
    assert_eq!(info.requests.remaining, Some(499));
    assert_eq!(
        info.requests.reset_after,
        Some(std::time::Duration::from_millis(120))
    );
    assert_eq!(info.tokens.limit, Some(30000));
    assert_eq!(info.tokens.remaining, Some(29000));

    let (ctx, meta) = with_meta();
    let err = ep.get("/limited").send(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(meta.rate_limits().and_then(|i| i.requests.limit), Some(500));

    let (ctx, meta) = with_meta();
    let mut items = ep.get("/stream").send(&ctx).await.unwrap().sse();
    assert_eq!(
        meta.rate_limits().and_then(|i| i.tokens.remaining),
        Some(29000),
        "recorded when the stream's headers arrive"
    );
    while items.next().await.is_some() {}

    let (ctx, meta) = with_meta();
    ep.get("/bare").send(&ctx).await.unwrap();
    assert!(meta.rate_limits().is_none(), "no headers, nothing recorded");
}

/// One key (one `AttemptKey`, its derived header kept with it) sent through endpoints of the
/// same id that send keys differently goes out as each of them sends keys; a key whose derived
/// slot holds something else is still sent and scrubbed.
#[tokio::test]
async fn one_attempt_key_through_every_auth_is_sent_as_each_endpoint_sends_keys() {
    let server = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let key = AttemptKey::new(EndpointId::new("ep-a"), "team-b", ApiKey::new(ATTEMPT));
    let other = AttemptKey::new(EndpointId::new("ep-a"), "team-c", ApiKey::new(ATTEMPT));
    assert_eq!(other.derived(|_| 7u8), Some(&7));
    for k in [key, other] {
        for auth in KEYED {
            let ep = endpoint("ep-a", &server.url, auth);
            let before = server.seen().len();
            ep.get("/k")
                .send(&RequestContext::new().with_key(k.clone()))
                .await
                .unwrap();
            let seen = server.seen();
            let want = match auth {
                Auth::Bearer => format!("Bearer {ATTEMPT}"),
                _ => ATTEMPT.to_owned(),
            };
            assert_eq!(credential(&seen[before], auth), Some(want), "{auth:?}");
            assert!(!seen[before].head.contains(CONFIGURED), "{auth:?}");
        }
    }
}

/// Credentials written into a URL (`user:password@`) are never sent: a request to such a URL
/// fails with `Config` before anything reaches the server.
#[tokio::test]
async fn a_url_with_credentials_in_it_is_not_sent() {
    let server = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let ep = endpoint("ep-a", &server.url, Auth::Bearer);
    let with_user = server.url.replacen("http://", "http://user:pw@", 1);
    let with_name = server.url.replacen("http://", "http://user@", 1);
    for url in [with_user, with_name] {
        let e = ep
            .get(&format!("{url}/x"))
            .send(&RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(e.reached_server(), Some(false));
        assert!(!all_text(&e).contains("pw"), "{e:?}");
    }
    // the same URL without them is sent
    ep.get(&format!("{}/x", server.url))
        .send(&RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        server.seen().len(),
        1,
        "only the request without credentials"
    );
}
