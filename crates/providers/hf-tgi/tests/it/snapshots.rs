//! TGI's own server outputs (`/work/shared/fixtures/snapshots/tgi`, from its integration tests)
//! served back and decoded: `/generate` answers, messages API answers (plain and streamed,
//! with tool calls) and `/v1/completions` answers.

use std::path::Path;

use infermux_core::{
    ChatRequest, CompletionRequest, Message, Provider, Request, RequestContext, Response,
    StreamAccumulator,
};
use infermux_testkit::ReplayServer;
use serde_json::Value;

use crate::{cassette, sse, tgi};

const SNAPSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/snapshots/tgi/integration-tests"
);

fn chat() -> Request {
    Request::Chat(ChatRequest::new("tgi", vec![Message::user("Hi")]))
}

/// Naive tool calls of a message or of stream deltas: (name, arguments text).
fn naive_tools(calls: &[&Value]) -> Option<(String, String)> {
    let mut name = None;
    let mut args = String::new();
    for c in calls {
        for call in c.as_array().into_iter().flatten() {
            if let Some(n) = call["function"]["name"].as_str() {
                name.get_or_insert_with(|| n.to_owned());
            }
            match &call["function"]["arguments"] {
                Value::String(s) => args.push_str(s),
                Value::Null => {}
                other => args.push_str(&other.to_string()),
            }
        }
    }
    name.map(|n| (n, args))
}

async fn decode(v: &Value) -> Result<(), String> {
    let ctx = RequestContext::new();
    let json = v.to_string();
    if let Some(chunks) = v.as_array() {
        // a streamed messages-API answer; the snapshot holds the chunks the client received,
        // so the `[DONE]` that ended the wire stream is put back
        let body = sse(chunks) + "data: [DONE]\n\n";
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/v1/chat/completions",
            200,
            "text/event-stream",
            &body,
        )]))
        .await
        .unwrap();
        let s = tgi(&server.url())
            .stream(&chat(), &ctx)
            .await
            .map_err(|e| e.to_string())?;
        let r = StreamAccumulator::collect(s)
            .await
            .map_err(|e| e.to_string())?;
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        if r.text() != text {
            return Err(format!("text {:?} != {text:?}", r.text()));
        }
        let deltas: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["delta"]["tool_calls"])
            .collect();
        if let Some((name, args)) = naive_tools(&deltas) {
            let call = r.tool_calls().first().ok_or("no tool call")?;
            if (call.name.as_str(), call.arguments.as_str()) != (name.as_str(), args.as_str()) {
                return Err(format!("tool call {call:?} != {name} {args}"));
            }
        }
        if let Some(u) = chunks.iter().rev().find_map(|c| c["usage"].as_object()) {
            let got = r.usage.ok_or("no usage")?;
            if got.output_tokens != u["completion_tokens"].as_u64().unwrap_or(0) {
                return Err(format!("usage {got:?} != {u:?}"));
            }
        }
        return server.verify();
    }
    if v.get("generated_text").is_some() {
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/generate",
            200,
            "application/json",
            &json,
        )]))
        .await
        .unwrap();
        let g = tgi(&server.url())
            .generate(&CompletionRequest::new("tgi", "Test request"), &ctx)
            .await
            .map_err(|e| e.to_string())?;
        if g.generated_text != v["generated_text"].as_str().unwrap_or("") {
            return Err("generated_text differs".into());
        }
        let d = g.details.ok_or("no details")?;
        let tokens: String = v["details"]["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["text"].as_str().unwrap_or(""))
            .collect();
        let got: String = d.tokens.iter().map(|t| t.text.as_str()).collect();
        if got != tokens
            || d.generated_tokens != v["details"]["generated_tokens"].as_u64().unwrap_or(0)
        {
            return Err("tokens differ".into());
        }
        return server.verify();
    }
    // the answer to the first prompt: choice index 0, wherever it is listed
    let choices = v["choices"].as_array().cloned().unwrap_or_default();
    let first = choices
        .iter()
        .find(|c| c["index"].as_u64().unwrap_or(0) == 0)
        .cloned()
        .unwrap_or(Value::Null);
    if first.get("text").is_some() {
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/v1/completions",
            200,
            "application/json",
            &json,
        )]))
        .await
        .unwrap();
        let req = Request::Completion(CompletionRequest::new("tgi", "What is Deep Learning?"));
        let Response::Completion(c) = tgi(&server.url())
            .openai()
            .call(&req, &ctx)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("not a completion".into());
        };
        if c.text != first["text"].as_str().unwrap_or("") {
            return Err(format!("text {:?}", c.text));
        }
        return server.verify();
    }
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/v1/chat/completions",
        200,
        "application/json",
        &json,
    )]))
    .await
    .unwrap();
    let Response::Chat(r) = tgi(&server.url())
        .call(&chat(), &ctx)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("not chat".into());
    };
    if r.text() != first["message"]["content"].as_str().unwrap_or("") {
        return Err(format!("text {:?}", r.text()));
    }
    if let Some((name, args)) = naive_tools(&[&first["message"]["tool_calls"]]) {
        let call = r.tool_calls().first().ok_or("no tool call")?;
        if call.name != name || call.parsed_arguments().ok() != serde_json::from_str(&args).ok() {
            return Err(format!("tool call {call:?} != {name} {args}"));
        }
    }
    server.verify()
}

#[tokio::test]
async fn tgi_server_snapshots_decode() {
    let Ok(dir) = std::fs::read_dir(Path::new(SNAPSHOTS)) else {
        eprintln!("skipping: no snapshots under {SNAPSHOTS}");
        return;
    };
    let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut failed = Vec::new();
    for p in &paths {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        if let Err(e) = decode(&v).await {
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
