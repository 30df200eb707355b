//! The key never reaches an error, even from a server that quotes it back in an error body
//! mapped by TGI's own mapper (`send_mapped`), the HF "model is loading" one included.

use infermux_core::{
    ApiKey, CompletionRequest, EndpointConfig, ErrorKind, Provider, Request, RequestContext,
};
use infermux_hf_tgi::HfTgi;
use infermux_testkit::ReplayServer;
use infermux_testkit::helpers::assert_masked;

use crate::cassette;

const KEY: &str = "hf_EchoedBackByTheServer0123456789";

#[tokio::test]
async fn a_key_quoted_back_by_the_server_never_reaches_an_error() {
    let loading = format!(
        r#"{{"error":"Model x is currently loading (token {KEY})","estimated_time":12.0}}"#
    );
    let invalid = format!("Input validation error: bad token Bearer {KEY}");
    let server = ReplayServer::start(cassette(&[
        ("POST", "/generate", 503, "application/json", &loading),
        ("POST", "/generate", 422, "text/plain", &invalid),
    ]))
    .await
    .unwrap();
    let tgi = HfTgi::new(
        EndpointConfig::new("tgi", server.url())
            .unwrap()
            .with_api_key(ApiKey::new(KEY)),
    )
    .unwrap();
    let req = Request::Completion(CompletionRequest::new("tgi", "Hello"));
    let ctx = RequestContext::new();
    for want in [ErrorKind::Overloaded, ErrorKind::InvalidRequest] {
        let err = tgi.call(&req, &ctx).await.unwrap_err();
        assert_eq!(err.kind(), want, "{err}");
        assert_masked(&err, KEY, "***");
    }
    server.verify().unwrap();
}
