//! The runner on a corpus written here: what passes, what fails, what is unsupported, and
//! that the report's JSON lines keep their format.

use std::path::Path;

use infermux::ErrorKind;
use infermux_conformance::{Runner, Verdict};
use infermux_testkit::helpers::{Exchange, temp_corpus};

use crate::{by_file, counts, run};

const CHAT_REQ: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_REQ: &str =
    r#"{"model":"llama","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// A chat call to OpenAI answered 200 with JSON; the cassettes below change what differs.
const CHAT: Exchange<'static> = Exchange {
    method: "POST",
    uri: "https://api.openai.com/v1/chat/completions",
    request_body: CHAT_REQ,
    status: 200,
    content_type: "application/json",
    body: "",
};

/// A streamed chat call to Groq answered 200 with SSE.
const GROQ_STREAM: Exchange<'static> = Exchange {
    uri: "https://api.groq.com/openai/v1/chat/completions",
    request_body: STREAM_REQ,
    content_type: "text/event-stream",
    ..CHAT
};

/// A model listing of OpenAI answered 200 with JSON.
const MODELS: Exchange<'static> = Exchange {
    method: "GET",
    uri: "https://api.openai.com/v1/models",
    request_body: "",
    ..CHAT
};

/// Answers every fault of the faulty decoder can spoil, each passing cleanly.
pub(crate) fn good_corpus(dir: &Path) {
    Exchange {
        body: r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#,
        ..CHAT
    }
    .write(dir, "openai/chat_tools.yaml");
    Exchange {
        body: "data: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \"}}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
        ..GROQ_STREAM
    }
    .write(dir, "groq/stream.yaml");
    Exchange {
        uri: "https://api.openai.com/v1/embeddings",
        request_body: r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
        body: r#"{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]},{"object":"embedding","index":1,"embedding":[0.4,0.5,0.6]}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#,
        ..CHAT
    }
    .write(dir, "openai/embeddings.yaml");
    Exchange {
        body: r#"{"object":"list","data":[{"id":"gpt-4o","object":"model","owned_by":"openai"},{"id":"gpt-4o-mini","object":"model","owned_by":"openai"}]}"#,
        ..MODELS
    }
    .write(dir, "openai/models.yaml");
}

pub(crate) fn errors_and_unsupported(dir: &Path) {
    Exchange {
        uri: GROQ_STREAM.uri,
        status: 404,
        body: r#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
        ..CHAT
    }
    .write(dir, "groq/error.yaml");
    Exchange {
        status: 429,
        body: r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        ..CHAT
    }
    .write(dir, "openai/quota.yaml");
    Exchange {
        body: "data: {\"id\":\"a\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"I will\"}}]}\n\ndata: {\"error\":{\"message\":\"Failed to call a function\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}\n\n",
        ..GROQ_STREAM
    }
    .write(dir, "groq/stream_error.yaml");
    Exchange {
        uri: "https://api.anthropic.com/v1/complete",
        body: "{}",
        ..CHAT
    }
    .write(dir, "anthropic/complete.yml");
}

#[tokio::test]
async fn conformance_reports_each_interaction() {
    let dir = temp_corpus("good");
    good_corpus(&dir);
    errors_and_unsupported(&dir);
    let report = run(&Runner::new(), &dir).await;
    assert_eq!(counts(&report), (7, 0, 1), "{report:#?}");

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
    Exchange {
        body: r#"{"choices": "#,
        ..CHAT
    }
    .write(&dir, "a.yaml");
    Exchange {
        uri: CHAT.uri,
        body: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ..GROQ_STREAM
    }
    .write(&dir, "b.yaml");
    Exchange {
        body: r#"{"object":"list"}"#,
        ..MODELS
    }
    .write(&dir, "c.yaml");
    let report = run(&Runner::new(), &dir).await;
    assert_eq!(counts(&report), (0, 3, 0), "{report:#?}");
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

#[tokio::test]
async fn a_corpus_that_checks_nothing_fails() {
    // an empty folder, and a folder of JSON files the runner does not read
    let empty = temp_corpus("empty");
    let e = infermux_conformance::run(&empty, true).await.unwrap_err();
    assert!(e.message().contains("nothing was checked"), "{e}");
    std::fs::write(empty.join("c.json"), "{}").unwrap();
    assert!(infermux_conformance::run(&empty, true).await.is_err());
    // a cassette without interactions is a failed record
    let dir = temp_corpus("no-interactions");
    std::fs::write(dir.join("c.yaml"), "interactions: []\nversion: 1\n").unwrap();
    let report = run(&Runner::new(), &dir).await;
    assert_eq!(counts(&report), (0, 1, 0));
    assert_eq!(by_file(&report, "c.yaml").verdict, Verdict::Failed);
    // every interaction unsupported: nothing was checked
    let dir = temp_corpus("all-unsupported");
    Exchange {
        uri: "https://api.anthropic.com/v1/complete",
        body: "{}",
        ..CHAT
    }
    .write(&dir, "anthropic/complete.yml");
    let e = infermux_conformance::run(&dir, true).await.unwrap_err();
    assert!(e.message().contains("1 unsupported"), "{e}");
    // and one passing interaction is enough
    good_corpus(&dir);
    infermux_conformance::run(&dir, true).await.unwrap();
}
