//! Moderation, image generation, audio and files on small cassettes shaped like the OpenAI API
//! reference's answers, and the multipart bodies of uploads.

use infermux_core::{ErrorKind, RequestContext};
use infermux_openai::media::{ImageRequest, Multipart, SpeechRequest, TranscriptionRequest};
use infermux_testkit::{Cassette, ReplayServer};

use crate::openai;

fn interaction(method: &str, path: &str, content_type: &str, body: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "- request:\n    method: {method}\n    uri: https://api.openai.com/v1{path}\n    body: null\n    headers: {{}}\n  response:\n    status: {{code: 200, message: OK}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\n",
        q(content_type),
        q(body)
    )
}

async fn server(interactions: &[String]) -> ReplayServer {
    let yaml = format!("interactions:\n{}", interactions.concat());
    ReplayServer::start(Cassette::from_yaml(&yaml).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn moderation_images_and_speech() {
    let server = server(&[
        interaction("POST", "/moderations", "application/json", r#"{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":true,"categories":{"violence":true,"harassment":false},"category_scores":{"violence":0.91,"harassment":0.01},"category_applied_input_types":{"violence":["text"]}},{"flagged":false,"categories":{"violence":false},"category_scores":{"violence":0.0}}]}"#),
        interaction("POST", "/images/generations", "application/json", r#"{"created":1713833628,"data":[{"b64_json":"iVBORw0KGgo=","revised_prompt":"A cute otter"}],"usage":{"total_tokens":100}}"#),
        interaction("POST", "/audio/speech", "audio/mpeg", "ID3\u{3}fake-mp3"),
    ])
    .await;
    let p = openai(&format!("{}/v1", server.url()));
    let ctx = RequestContext::new();
    let m = p
        .moderate(
            Some("omni-moderation-latest"),
            &["I will hurt you".into(), "Nice day".into()],
            &ctx,
        )
        .await
        .unwrap();
    assert!(m.results[0].flagged && !m.results[1].flagged);
    assert_eq!(m.results[0].category_scores["violence"], 0.91);
    let img = p
        .generate_images(&ImageRequest::new("gpt-image-1", "an otter"), &ctx)
        .await
        .unwrap();
    assert_eq!(img.data[0].b64_json.as_deref(), Some("iVBORw0KGgo="));
    assert_eq!(img.data[0].revised_prompt.as_deref(), Some("A cute otter"));
    let audio = p
        .speech(&SpeechRequest::new("tts-1", "Hello", "alloy"), &ctx)
        .await
        .unwrap();
    assert!(audio.starts_with(b"ID3"));
    server.verify().unwrap();
}

#[tokio::test]
async fn moderation_with_a_missing_result_is_a_decode_error() {
    let server = server(&[interaction(
        "POST",
        "/moderations",
        "application/json",
        r#"{"id":"modr-1","model":"m","results":[{"flagged":false}]}"#,
    )])
    .await;
    let e = openai(&format!("{}/v1", server.url()))
        .moderate(None, &["a".into(), "b".into()], &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
}

#[tokio::test]
async fn transcriptions_in_json_and_text_and_files() {
    let server = server(&[
        interaction("POST", "/audio/transcriptions", "application/json", r#"{"text":"Hello world.","usage":{"type":"duration","seconds":2}}"#),
        interaction("POST", "/audio/transcriptions", "text/plain; charset=utf-8", "Hello world.\n"),
        interaction("POST", "/files", "application/json", r#"{"object":"file","id":"file-abc123","purpose":"batch","filename":"requests.jsonl","bytes":140,"created_at":1613779121,"expires_at":null,"status":"processed"}"#),
        interaction("GET", "/files", "application/json", r#"{"object":"list","data":[{"object":"file","id":"file-abc123","purpose":"batch","filename":"requests.jsonl","bytes":140,"created_at":1613779121}],"has_more":false}"#),
        interaction("GET", "/files/file-abc123/content", "application/octet-stream", "{\"custom_id\":\"1\"}\n"),
        interaction("DELETE", "/files/file-abc123", "application/json", r#"{"id":"file-abc123","object":"file","deleted":true}"#),
    ])
    .await;
    let p = openai(&format!("{}/v1", server.url()));
    let ctx = RequestContext::new();
    let req = TranscriptionRequest::new("whisper-1", "hello.wav", b"RIFF....WAVE".to_vec());
    assert_eq!(p.transcribe(&req, &ctx).await.unwrap().text, "Hello world.");
    let mut text_req = req.clone();
    text_req.response_format = Some("text".into());
    assert_eq!(
        p.transcribe(&text_req, &ctx).await.unwrap().text,
        "Hello world."
    );
    let f = p
        .upload_file("requests.jsonl", b"{\"custom_id\":\"1\"}\n", "batch", &ctx)
        .await
        .unwrap();
    assert_eq!((f.id.as_str(), f.bytes), ("file-abc123", Some(140)));
    assert_eq!(p.list_files(&ctx).await.unwrap()[0].id, "file-abc123");
    assert_eq!(
        p.file_content("file-abc123", &ctx).await.unwrap(),
        b"{\"custom_id\":\"1\"}\n"
    );
    assert!(p.delete_file("file-abc123", &ctx).await.unwrap());
    let e = p.file_content("../models", &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    server.verify().unwrap();
}

#[test]
fn multipart_bodies_are_well_formed() {
    let (ct, body) = Multipart::new("01ABC")
        .text("model", "whisper-1")
        .file("file", "a\"b.wav", "audio/wav", b"\x00\x01RIFF")
        .finish();
    assert_eq!(ct, "multipart/form-data; boundary=infermux-01ABC");
    let mut expected = b"--infermux-01ABC\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--infermux-01ABC\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a_b.wav\"\r\nContent-Type: audio/wav\r\n\r\n".to_vec();
    expected.extend_from_slice(b"\x00\x01RIFF\r\n--infermux-01ABC--\r\n");
    assert_eq!(body, expected);
}
