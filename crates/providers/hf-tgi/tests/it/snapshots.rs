//! TGI's own server outputs (`../shared/fixtures/snapshots/tgi/integration-tests`, from its
//! integration tests) served back and decoded: `/generate` answers with their details,
//! messages API answers (plain and streamed, with tool calls) and `/v1/completions` answers.
//! The testkit's TGI oracle (`infermux_testkit::oracle::tgi::snapshot`) reads each snapshot
//! into the body the server sent and what it means, independently of the provider's parser.

use infermux_core::{
    ChatRequest, CompletionRequest, Error, Message, Provider, Request, RequestContext, Response,
    StreamAccumulator,
};
use infermux_hf_tgi::wire;
use infermux_testkit::ReplayServer;
use infermux_testkit::oracle::{self, Expected};

use crate::{cassette, tgi};

fn chat() -> Request {
    Request::Chat(ChatRequest::new("tgi", vec![Message::user("Hi")]))
}

/// What the provider decodes from `body` served on `route`, in the oracle's shape.
async fn decoded(
    url: &str,
    route: &str,
    streamed: bool,
) -> Result<Result<Expected, Error>, String> {
    let ctx = RequestContext::new();
    Ok(match (route, streamed) {
        ("/v1/chat/completions", true) => match tgi(url).stream(&chat(), &ctx).await {
            Ok(s) => StreamAccumulator::collect(s)
                .await
                .map(|r| Expected::of_chat(&r)),
            Err(e) => Err(e),
        },
        ("/v1/chat/completions", false) => tgi(url)
            .call(&chat(), &ctx)
            .await
            .map(|r| Expected::of_response(&r)),
        ("/v1/completions", _) => {
            let req = Request::Completion(CompletionRequest::new("tgi", "What is Deep Learning?"));
            tgi(url)
                .openai()
                .call(&req, &ctx)
                .await
                .map(|r| Expected::of_response(&r))
        }
        ("/generate", _) => tgi(url)
            .generate(&CompletionRequest::new("tgi", "Test request"), &ctx)
            .await
            .map(|g| {
                let details = g.details.clone();
                let mut e =
                    Expected::of_response(&Response::Completion(wire::to_completion("tgi", g)));
                if let Some(d) = details {
                    e.tokens = Some(d.tokens.iter().map(|t| t.text.clone()).collect());
                    e.output_tokens = Some(d.generated_tokens);
                }
                e
            }),
        (other, _) => return Err(format!("no route {other}")),
    })
}

async fn replay(text: &str) -> Result<(), String> {
    let snap = oracle::tgi::snapshot(text)?;
    let body = String::from_utf8(snap.body).map_err(|e| e.to_string())?;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        snap.route,
        200,
        snap.content_type,
        &body,
    )]))
    .await
    .unwrap();
    let got = decoded(&server.url(), snap.route, snap.streamed).await?;
    snap.expected.check_outcome(got.as_ref())?;
    server.verify()
}

#[tokio::test]
async fn tgi_server_snapshots_decode() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/snapshots/tgi/integration-tests")
    else {
        return;
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    let mut failed = Vec::new();
    for p in &paths {
        if let Err(e) = replay(&std::fs::read_to_string(p).unwrap()).await {
            failed.push(format!("{}: {e}", p.display()));
        }
    }
    eprintln!(
        "tgi snapshots: {} decoded, {} failed",
        paths.len() - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(paths.len() >= 11);
}
