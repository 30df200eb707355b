//! Moderation, images, audio and files through [`OpenAiCompat::media`] on a compatible server
//! (small cassettes shaped like LocalAI's and vLLM's answers).

use infermux_core::{ErrorKind, RequestContext};
use infermux_openai_compat::media::{ImageRequest, TranscriptionRequest};
use infermux_testkit::{Cassette, ReplayServer};

use crate::provider;

#[tokio::test]
async fn media_operations_on_a_compatible_server() {
    let yaml = r#"
interactions:
- request: {method: POST, uri: "http://localai:8080/v1/audio/transcriptions", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"text":" And so my fellow Americans","segments":[{"id":0,"start":0.0,"end":2.0,"text":" And so my fellow Americans"}]}'}
- request: {method: POST, uri: "http://localai:8080/v1/images/generations", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"created":1700000000,"id":"img-1","data":[{"embedding":[],"index":0,"url":"http://localai:8080/generated-images/b64.png"}],"usage":{}}'}
- request: {method: POST, uri: "http://localai:8080/v1/moderations", body: null, headers: {}}
  response:
    status: {code: 404, message: Not Found}
    headers: {content-type: [application/json]}
    body: {string: '{"error":{"code":404,"message":"Cannot POST /v1/moderations","type":""}}'}
"#;
    let server = ReplayServer::start(Cassette::from_yaml(yaml).unwrap())
        .await
        .unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let ctx = RequestContext::new();
    let t = p
        .media()
        .transcribe(
            &TranscriptionRequest::new("whisper-1", "jfk.wav", b"RIFF".to_vec()),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(t.text, " And so my fellow Americans");
    let img = p
        .media()
        .generate_images(&ImageRequest::new("stablediffusion", "a cat"), &ctx)
        .await
        .unwrap();
    assert!(img.data[0].url.as_deref().unwrap().ends_with(".png"));
    let e = p
        .media()
        .moderate(None, &["x".into()], &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.provider(), Some("openai-compat"));
    server.verify().unwrap();
}

#[test]
fn a_category_the_model_does_not_judge_is_left_out_not_a_decode_error() {
    // the legacy text models send `illicit` (and `illicit/violent`) as null
    let body = br#"{"id":"modr-1","model":"text-moderation-007","results":[{"flagged":false,"categories":{"hate":false,"illicit":null,"illicit/violent":null},"category_scores":{"hate":0.01,"illicit":0}}]}"#;
    let m = infermux_openai_compat::media::parse_moderation(body).unwrap();
    let r = &m.results[0];
    assert_eq!(r.categories.get("hate"), Some(&false));
    assert!(!r.categories.contains_key("illicit"));
    assert_eq!(r.category_scores.get("illicit"), Some(&0.0));
}
