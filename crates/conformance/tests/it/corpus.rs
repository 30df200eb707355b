//! The runner on a corpus written here: what passes, what fails, what is unsupported, and
//! that the report's JSON lines keep their format.

use infermux::ErrorKind;
use infermux_conformance::{Runner, Verdict};

use crate::{assert_adds_up, by_file, cassette, run, temp_corpus, write};

pub(crate) const CHAT_REQ: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
pub(crate) const STREAM_REQ: &str =
    r#"{"model":"llama","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// Answers every fault of the faulty decoder can spoil, each passing cleanly.
pub(crate) fn good_corpus(dir: &std::path::Path) {
    write(
        dir,
        "openai/chat_tools.yaml",
        &cassette(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            CHAT_REQ,
            200,
            "application/json",
            r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#,
        ),
    );
    write(
        dir,
        "groq/stream.yaml",
        &cassette(
            "POST",
            "https://api.groq.com/openai/v1/chat/completions",
            STREAM_REQ,
            200,
            "text/event-stream",
            "data: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \"}}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
        ),
    );
    write(
        dir,
        "openai/embeddings.yaml",
        &cassette(
            "POST",
            "https://api.openai.com/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
            200,
            "application/json",
            r#"{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]},{"object":"embedding","index":1,"embedding":[0.4,0.5,0.6]}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#,
        ),
    );
    write(
        dir,
        "openai/models.yaml",
        &cassette(
            "GET",
            "https://api.openai.com/v1/models",
            "",
            200,
            "application/json",
            r#"{"object":"list","data":[{"id":"gpt-4o","object":"model","owned_by":"openai"},{"id":"gpt-4o-mini","object":"model","owned_by":"openai"}]}"#,
        ),
    );
}

fn errors_and_unsupported(dir: &std::path::Path) {
    write(
        dir,
        "groq/error.yaml",
        &cassette(
            "POST",
            "https://api.groq.com/openai/v1/chat/completions",
            CHAT_REQ,
            404,
            "application/json",
            r#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
        ),
    );
    write(
        dir,
        "openai/quota.yaml",
        &cassette(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            CHAT_REQ,
            429,
            "application/json",
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        ),
    );
    write(
        dir,
        "groq/stream_error.yaml",
        &cassette(
            "POST",
            "https://api.groq.com/openai/v1/chat/completions",
            STREAM_REQ,
            200,
            "text/event-stream",
            "data: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"I will\"}}]}\n\ndata: {\"error\":{\"message\":\"Failed to call a function\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}\n\n",
        ),
    );
    write(
        dir,
        "anthropic/complete.yml",
        &cassette(
            "POST",
            "https://api.anthropic.com/v1/complete",
            CHAT_REQ,
            200,
            "application/json",
            "{}",
        ),
    );
}

#[tokio::test]
async fn conformance_reports_each_interaction() {
    let dir = temp_corpus("good");
    good_corpus(&dir);
    errors_and_unsupported(&dir);
    let report = run(&Runner::new(), &dir).await;
    assert_adds_up(&report);
    let s = report.summary();
    assert_eq!(
        (s.passed, s.failed, s.unsupported),
        (7, 0, 1),
        "{report:#?}"
    );

    let chat = by_file(&report, "openai/chat_tools.yaml").to_json();
    assert_eq!(chat["interaction"], 0);
    assert_eq!(chat["provider"], "openai");
    assert_eq!(chat["operation"], "chat");
    assert_eq!(chat["outcome"], "ok");
    assert_eq!(chat["finish_reason"], "tool_calls");
    assert_eq!(chat["tool_calls"][0]["name"], "get_weather");
    assert_eq!(chat["tool_calls"][0]["arguments"]["city"], "Paris");
    assert_eq!(chat["usage"]["input_tokens"], 9);
    assert_eq!(chat["pass"], true);

    let err = by_file(&report, "groq/error.yaml");
    assert_eq!(err.error_kind, Some(ErrorKind::NotFound));
    assert_eq!(err.verdict, Verdict::Passed);
    let quota = by_file(&report, "openai/quota.yaml");
    assert_eq!(quota.error_kind, Some(ErrorKind::QuotaExceeded));
    assert_eq!(quota.verdict, Verdict::Passed);

    let mid = by_file(&report, "groq/stream_error.yaml").to_json();
    assert_eq!(mid["operation"], "chat_stream");
    assert_eq!(mid["error_kind"], "invalid_request");
    assert_eq!(mid["text"], "I will");
    assert_eq!(mid["pass"], true);

    let emb = by_file(&report, "openai/embeddings.yaml").to_json();
    assert_eq!(emb["embeddings"]["count"], 2);
    assert_eq!(emb["embeddings"]["dim"], 3);

    let un = by_file(&report, "anthropic/complete.yml").to_json();
    assert_eq!(un["outcome"], "unsupported");
    assert_eq!(un["pass"], serde_json::Value::Null);
    assert!(
        un["reason"]
            .as_str()
            .unwrap()
            .contains("legacy Text Completions")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn conformance_fails_what_it_cannot_decode_or_mislabels() {
    let dir = temp_corpus("bad");
    // a 200 whose body is not a chat answer, a truncated stream, and a model list whose
    // recorded body has nothing the oracle can read: all three fail
    write(
        &dir,
        "a.yaml",
        &cassette(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            CHAT_REQ,
            200,
            "application/json",
            r#"{"choices": "#,
        ),
    );
    write(
        &dir,
        "b.yaml",
        &cassette(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            STREAM_REQ,
            200,
            "text/event-stream",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ),
    );
    write(
        &dir,
        "c.yaml",
        &cassette(
            "GET",
            "https://api.openai.com/v1/models",
            "",
            200,
            "application/json",
            r#"{"object":"list"}"#,
        ),
    );
    let report = run(&Runner::new(), &dir).await;
    assert_adds_up(&report);
    let s = report.summary();
    assert_eq!(
        (s.passed, s.failed, s.unsupported),
        (0, 3, 0),
        "{report:#?}"
    );
    // the body is no answer at all: the oracle refuses it before anything is replayed
    assert!(
        by_file(&report, "a.yaml")
            .reason
            .as_deref()
            .unwrap()
            .contains("not JSON")
    );
    assert_eq!(
        by_file(&report, "b.yaml").error_kind,
        Some(ErrorKind::Decode)
    );
    assert!(
        by_file(&report, "c.yaml")
            .reason
            .as_deref()
            .unwrap()
            .contains("could not be read"),
        "an answer the oracle cannot read never passes"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
