//! Keys never leave through what a server sends back, and nothing configured for an endpoint
//! follows a redirect to another origin.

use futures_util::StreamExt;
use infermux_core::{ApiKey, EndpointConfig, Error, ErrorKind, RequestContext};
use infermux_http::{Auth, HttpEndpoint, error_from_response};

use crate::support::{
    KEYED, RawServer, Seen, Step, chunk, chunked_head, json_error, json_ok, last_chunk, response,
};

const KEY: &str = "sk-echoed-secret-4242";

/// Every header of the request, as the server saw it (so the key is in there).
fn echo(req: &Seen) -> String {
    req.head.replace(['\r', '\n', '"'], " ")
}

fn endpoint(base: &str, auth: Auth) -> HttpEndpoint {
    let cfg = EndpointConfig::new("echo", base)
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    HttpEndpoint::new("test", cfg, auth).unwrap()
}

/// Display, Debug and the whole source chain of `err`.
fn all_text(err: &Error) -> String {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    if let Some(p) = err.partial_text() {
        texts.push(p.to_owned());
    }
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = src {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        src = s.source();
    }
    texts.join("\n")
}

#[tokio::test]
async fn a_server_echoing_the_key_never_puts_it_in_an_error() {
    let server = RawServer::start(|req| {
        let echoed = echo(req);
        let r = match req.path().as_str() {
            // an error body that quotes every request header, JSON and plain text
            "/json" => response(
                "401 Unauthorized",
                &[("content-type", "application/json")],
                format!(
                    r#"{{"error":{{"message":"bad credentials in: {echoed}","type":"auth"}}}}"#
                )
                .as_bytes(),
            ),
            "/text" => response(
                "400 Bad Request",
                &[],
                format!("rejected {echoed}").as_bytes(),
            ),
            // a 200 whose body is not the JSON expected: its start goes into the error
            "/snippet" => json_ok(format!("{KEY} is not JSON").as_bytes()),
            // an error inside a 200 stream that quotes the request
            _ => {
                let mut out = chunked_head("200 OK", "text/event-stream");
                out.extend(chunk(
                    format!("event: error\ndata: {{\"error\":{{\"message\":\"{echoed}\"}}}}\n\n")
                        .as_bytes(),
                ));
                out.extend(last_chunk());
                out
            }
        };
        vec![Step::Send(r)]
    })
    .await;
    for auth in KEYED {
        let ep = endpoint(&server.url, auth);
        let ctx = RequestContext::new();
        for path in ["/json", "/text"] {
            let err = ep.get(path).send(&ctx).await.unwrap_err();
            let expected = if path == "/json" {
                ErrorKind::Auth
            } else {
                ErrorKind::InvalidRequest
            };
            assert_eq!(err.kind(), expected, "{err}");
            let text = all_text(&err);
            assert!(!text.contains(KEY), "{auth:?} {path}: {text}");
            assert!(
                text.contains("***"),
                "the echo is still there, masked: {text}"
            );
        }
        // a provider's own mapper sees the body already scrubbed
        let err = ep
            .get("/json")
            .send_mapped(&ctx, |status, headers, body| {
                assert!(!String::from_utf8_lossy(body).contains(KEY));
                error_from_response(status, headers, body)
            })
            .await
            .unwrap_err();
        assert!(!all_text(&err).contains(KEY));
        let err = json_error(&ep, &ctx, "/snippet").await;
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(!all_text(&err).contains(KEY), "{err}");
        // the items of a 200 stream, which provider decoders turn into errors
        let mut items = ep.get("/stream").send(&ctx).await.unwrap().sse();
        let ev = items.next().await.unwrap().unwrap();
        assert_eq!(ev.event.as_deref(), Some("error"));
        assert!(!ev.data.contains(KEY), "{}", ev.data);
        assert!(ev.data.contains("***"));
    }
    assert!(
        server.seen().iter().all(|s| s.head.contains(KEY)),
        "the key did go to its own origin"
    );
}

#[tokio::test]
async fn a_cross_origin_redirect_drops_every_endpoint_header() {
    let other = RawServer::start(|_| vec![Step::Send(json_ok(b"{}"))]).await;
    let target = format!("{}/landing", other.url);
    let home = RawServer::start(move |req| {
        if req.path() == "/here" {
            vec![Step::Send(response("200 OK", &[], b"{}"))]
        } else {
            vec![Step::Send(response(
                "307 Temporary Redirect",
                &[("location", target.as_str())],
                b"",
            ))]
        }
    })
    .await;
    let cfg = EndpointConfig::new("home", &home.url)
        .unwrap()
        .with_api_key(ApiKey::new(KEY))
        .with_header("x-tenant-token", "tenant-secret-77")
        .with_header("x-custom", "kept-home")
        .with_header("Proxy-Authorization", "Basic proxy-secret-88");
    let ep = HttpEndpoint::new("test", cfg, Auth::Bearer).unwrap();
    ep.get("/away").send(&RequestContext::new()).await.unwrap();
    ep.get("/here").send(&RequestContext::new()).await.unwrap();
    let landed = &other.seen()[0];
    assert!(landed.header("x-tenant-token").is_none(), "{}", landed.head);
    assert!(landed.header("x-custom").is_none(), "{}", landed.head);
    assert!(landed.header("x-request-id").is_some());
    assert!(!landed.head.contains(KEY));
    // at home, the endpoint's headers are sent as configured
    let here = home.seen_at("/here");
    assert_eq!(
        here.header("x-tenant-token").as_deref(),
        Some("tenant-secret-77")
    );
    // a credential header among the endpoint's own is left out (keys go in its key)
    assert!(
        here.header("proxy-authorization").is_none(),
        "{}",
        here.head
    );
    assert!(!here.head.contains("proxy-secret-88") && !landed.head.contains("proxy-secret-88"));
}

/// A request's `Debug` never shows a password written into its URL (it is refused at send
/// time; before, `{:?}` printed it).
#[test]
fn a_password_in_a_request_url_is_not_in_its_debug() {
    let ep = endpoint("http://127.0.0.1:9/v1", Auth::Bearer);
    for url in [
        "http://u:pw-secret@127.0.0.1:9/v1/m",
        "http://u:pw-secret@127.0.0.1:9/v1/m?x=1",
        "http://u:pw-secret@[bad/v1/m",
    ] {
        let shown = format!("{:?}", ep.get(url));
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(shown.contains("/v1/m"), "{shown}");
    }
}

/// A JSON body served under a content type that is not textual (so not scrubbed before it is
/// parsed) and echoing the key into a field of the wrong type: serde's message quotes the
/// value, and the error still does not carry the key.
#[tokio::test]
async fn a_key_quoted_by_a_json_decode_error_is_scrubbed() {
    let server = RawServer::start(|_| {
        vec![Step::Send(response(
            "200 OK",
            &[("content-type", "application/octet-stream")],
            format!(r#"["{KEY}"]"#).as_bytes(),
        ))]
    })
    .await;
    let ep = endpoint(&server.url, Auth::Bearer);
    let err = ep
        .get("/wrong-type")
        .send(&RequestContext::new())
        .await
        .unwrap()
        .json::<Vec<u64>>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(!all_text(&err).contains(KEY), "{}", all_text(&err));
}
