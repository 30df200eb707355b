//! Replays every interaction of `/work/shared/fixtures/cassettes/ollama` through the provider
//! and compares what it decodes with a naive reading of the recorded body.

use std::path::{Path, PathBuf};

use infermux_core::{
    ChatRequest, CompletionRequest, ErrorKind, Message, Provider, Request, RequestContext,
    Response, StreamAccumulator, Usage,
};
use infermux_ollama::Mode;
use infermux_openai_compat::wire;
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

use crate::ollama;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/cassettes/ollama"
);

fn cassettes(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            cassettes(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    out.sort();
}

/// What the recorded body says, read without the provider's code.
struct Naive {
    text: String,
    usage: Option<Usage>,
}

fn naive_ndjson(body: &[u8], field: &str) -> Naive {
    let mut text = String::new();
    let mut usage = None;
    for line in String::from_utf8_lossy(body).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let piece = if field == "message" {
            v["message"]["content"].as_str()
        } else {
            v[field].as_str()
        };
        text.push_str(piece.unwrap_or(""));
        if v["done"] == Value::Bool(true) {
            usage = Some(Usage::new(
                v["prompt_eval_count"].as_u64().unwrap_or(0),
                v["eval_count"].as_u64().unwrap_or(0),
            ));
        }
    }
    Naive { text, usage }
}

fn expected_kind(status: u16) -> ErrorKind {
    infermux_http::kind_for_status(status, "", None)
}

fn messages(v: &Value) -> Vec<Message> {
    v["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    Message::new(
                        m["role"].as_str().unwrap_or("user").into(),
                        m["content"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one interaction's request; `Ok(true)` when it was in scope and passed.
async fn replay_one(base: &str, it: &Interaction) -> Result<(), String> {
    let req_json = it.request.json().unwrap_or(Value::Null);
    let status = it.response.status;
    let body = it.response.body.to_bytes();
    let path = it.request.path().to_owned();
    let ctx = RequestContext::new();
    let streams = req_json["stream"].as_bool().unwrap_or(true);
    let model = req_json["model"].as_str().unwrap_or("m").to_owned();
    let (provider, request, field) = match path.as_str() {
        "/api/chat" => (
            ollama(base),
            Request::Chat(ChatRequest::new(model, messages(&req_json))),
            "message",
        ),
        "/api/generate" => (
            ollama(base),
            Request::Completion(CompletionRequest::new(
                model,
                req_json["prompt"].as_str().unwrap_or(""),
            )),
            "response",
        ),
        "/v1/chat/completions" => (
            ollama(base).with_mode(Mode::OpenAi),
            Request::Chat(wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?),
            "openai",
        ),
        other => return Err(format!("no route for {other}")),
    };
    let streams = if field == "openai" {
        wire::request_streams(&req_json)
    } else {
        streams
    };
    let outcome = if streams {
        match provider.stream(&request, &ctx).await {
            Ok(s) => StreamAccumulator::collect(s)
                .await
                .map(|r| (r.text(), r.usage)),
            Err(e) => Err(e),
        }
    } else {
        provider.call(&request, &ctx).await.map(|r| match r {
            Response::Chat(c) => (c.text(), c.usage),
            Response::Completion(c) => (c.text, c.usage),
            _ => (String::new(), None),
        })
    };
    if status >= 400 {
        return match outcome {
            Err(e) if e.kind() == expected_kind(status) => Ok(()),
            Err(e) => Err(format!("{status} gave {:?}: {e}", e.kind())),
            Ok(_) => Err(format!("{status} decoded as success")),
        };
    }
    let (text, usage) = outcome.map_err(|e| format!("{:?}: {e}", e.kind()))?;
    let naive = if field == "openai" {
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Naive {
            text: v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            usage: v["usage"].is_object().then(|| {
                Usage::new(
                    v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                )
            }),
        }
    } else {
        naive_ndjson(&body, field)
    };
    if text != naive.text {
        return Err(format!("text {text:?} != recorded {:?}", naive.text));
    }
    if let Some(u) = naive.usage {
        let got = usage.ok_or("no usage")?;
        if (got.input_tokens, got.output_tokens) != (u.input_tokens, u.output_tokens) {
            return Err(format!("usage {got:?} != recorded {u:?}"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_recorded_ollama_interaction_replays() {
    let mut files = Vec::new();
    cassettes(Path::new(CORPUS), &mut files);
    if files.is_empty() {
        eprintln!("skipping: no cassettes under {CORPUS}");
        return;
    }
    let (mut passed, mut failed) = (0, Vec::new());
    // whole bodies, and bodies cut in 7-byte chunks (lines split across reads)
    for (f, chunk) in files.iter().flat_map(|f| [(f, None), (f, Some(7))]) {
        let cassette = Cassette::load(f).unwrap();
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(cassette.clone(), opts)
            .await
            .unwrap();
        for (i, it) in cassette.interactions.iter().enumerate() {
            match replay_one(&server.url(), it).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{}#{i}: {e}", f.display())),
            }
        }
        if let Err(e) = server.verify() {
            failed.push(format!("{}: {e}", f.display()));
        }
    }
    eprintln!(
        "ollama replay: {} interactions passed (each whole and in 7-byte chunks: {passed} runs), {} failed, 0 out of scope",
        passed / 2,
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 18, "only {passed} replays");
}
