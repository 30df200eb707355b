//! Errors say what happened: the endpoint and the root cause of a transport failure, the
//! statuses that mean "not offered here", and a long Retry-After kept.

use std::time::Duration;

use infermux_core::{EndpointConfig, Error, ErrorKind, RequestContext, Timeouts};
use infermux_http::{Auth, HttpEndpoint};

use crate::support::{RawServer, Step, response};

fn endpoint(id: &str, base: &str) -> HttpEndpoint {
    let cfg = EndpointConfig::new(id, base)
        .unwrap()
        .with_timeouts(Timeouts::standard().with_connect(Duration::from_secs(5)));
    HttpEndpoint::new("test", cfg, Auth::None).unwrap()
}

/// The error of a GET of `path` from endpoint `id` at `base`, which cannot be reached: a
/// `Connect` error.
async fn connect_error(id: &str, base: &str, path: &str) -> Error {
    let err = endpoint(id, base)
        .get(path)
        .send(&RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    err
}

#[tokio::test]
async fn a_connect_error_names_the_endpoint_and_its_root_cause() {
    // nothing listens on port 9 (discard)
    let err = connect_error(
        "local",
        "http://127.0.0.1:9/v1?key=query-secret",
        "/models?token=query-secret",
    )
    .await;
    let shown = err.to_string();
    assert!(
        shown.contains("connect to local (127.0.0.1:9): connection refused"),
        "{shown}"
    );
    assert!(!shown.contains("query-secret"), "{shown}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the chain stays on the error"
    );

    let shown = connect_error("remote", "http://no-such-host.invalid:8080/v1", "/models")
        .await
        .to_string();
    assert!(
        shown.contains("connect to remote (no-such-host.invalid:8080): dns error"),
        "{shown}"
    );
}

#[tokio::test]
async fn not_implemented_and_not_supported_are_unsupported_and_long_retry_after_is_kept() {
    let server = RawServer::start(|req| {
        let r = match req.path().as_str() {
            "/501" => response("501 Not Implemented", &[], b"not implemented"),
            // llama.cpp without --embeddings
            "/embeddings" => response(
                "501 Not Implemented",
                &[("content-type", "application/json")],
                br#"{"error":{"code":501,"message":"This server does not support embeddings. Start it with `--embeddings`","type":"not_supported_error"}}"#,
            ),
            "/400-not-supported" => response(
                "400 Bad Request",
                &[("content-type", "application/json")],
                br#"{"error":{"message":"tools are not supported","type":"not_supported_error"}}"#,
            ),
            _ => response(
                "429 Too Many Requests",
                &[("retry-after", "172800")],
                br#"{"error":{"message":"daily limit reached"}}"#,
            ),
        };
        vec![Step::Send(r)]
    })
    .await;
    let ep = endpoint("local", &server.url);
    let ctx = RequestContext::new();
    for path in ["/501", "/embeddings", "/400-not-supported"] {
        let err = ep.get(path).send(&ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{path}: {err}");
        assert!(!err.is_retryable());
    }
    let err = ep.get("/daily").send(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2 * 86_400)));
}
