//! Replay of every interaction of the shared Anthropic cassettes
//! (`../shared/fixtures/cassettes/anthropic`, recorded from the real API by llm-anthropic,
//! openllmetry and pydantic-ai) through this provider. Each answer is compared with a naive
//! reading of the recorded body written here, independently of the provider's parser.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use infermux_anthropic::{Anthropic, wire};
use infermux_core::{
    ChatResponse, ContentPart, EndpointConfig, ErrorKind, Provider, Request, RequestContext,
    Response, StreamAccumulator,
};
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

use crate::response_bytes;

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/fixtures/cassettes/anthropic");
    dir.is_dir().then_some(dir)
}

fn cassettes(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What a recorded answer says, read naively.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    text: String,
    thinking: String,
    /// (name, arguments as JSON)
    tools: Vec<(String, Value)>,
    input_tokens: u64,
    output_tokens: u64,
    stop_reason: Option<String>,
}

fn total_input(u: &Value) -> u64 {
    [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ]
    .iter()
    .map(|k| u[*k].as_u64().unwrap_or(0))
    .sum()
}

fn expected_plain(v: &Value) -> Expected {
    let mut e = Expected::default();
    for b in v["content"].as_array().unwrap() {
        match b["type"].as_str().unwrap() {
            "text" => e.text.push_str(b["text"].as_str().unwrap()),
            "thinking" => e.thinking.push_str(b["thinking"].as_str().unwrap()),
            "tool_use" => e
                .tools
                .push((b["name"].as_str().unwrap().to_owned(), b["input"].clone())),
            _ => {}
        }
    }
    e.input_tokens = total_input(&v["usage"]);
    e.output_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
    e.stop_reason = v["stop_reason"].as_str().map(str::to_owned);
    e
}

fn expected_stream(body: &str) -> Expected {
    let mut e = Expected::default();
    let mut args: Vec<(u64, String, String)> = Vec::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let v: Value = serde_json::from_str(data.trim()).unwrap();
        match v["type"].as_str().unwrap_or("") {
            "message_start" => e.input_tokens = total_input(&v["message"]["usage"]),
            "content_block_start" if v["content_block"]["type"] == "tool_use" => args.push((
                v["index"].as_u64().unwrap(),
                v["content_block"]["name"].as_str().unwrap().to_owned(),
                String::new(),
            )),
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => e.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => e.thinking.push_str(d["thinking"].as_str().unwrap()),
                    "input_json_delta" => {
                        let i = v["index"].as_u64().unwrap();
                        let slot = args.iter_mut().find(|a| a.0 == i).unwrap();
                        slot.2.push_str(d["partial_json"].as_str().unwrap());
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                e.output_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
                if v["usage"]["input_tokens"].is_u64() {
                    e.input_tokens = total_input(&v["usage"]);
                }
                e.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_owned);
            }
            _ => {}
        }
    }
    e.tools = args
        .into_iter()
        .map(|(_, name, a)| {
            let v = if a.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&a).unwrap()
            };
            (name, v)
        })
        .collect();
    e
}

fn actual(r: &ChatResponse) -> Expected {
    let thinking = r
        .message
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Thinking { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let u = r.usage.unwrap_or_default();
    Expected {
        text: r.text(),
        thinking,
        tools: r
            .tool_calls()
            .iter()
            .map(|c| (c.name.clone(), c.parsed_arguments().unwrap()))
            .collect(),
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        stop_reason: None,
    }
}

/// The kind an error status must give, read independently of `infermux-http`.
fn expected_kind(status: u16, body: &Value) -> ErrorKind {
    match (status, body["error"]["type"].as_str()) {
        (_, Some("overloaded_error")) | (529, _) => ErrorKind::Overloaded,
        (401 | 403, _) => ErrorKind::Auth,
        (404, _) => ErrorKind::NotFound,
        (429, _) => ErrorKind::RateLimited,
        (400..=499, _) => ErrorKind::InvalidRequest,
        _ => ErrorKind::Server,
    }
}

/// Why an interaction is out of scope, if it is.
fn out_of_scope(it: &Interaction) -> Option<&'static str> {
    match it.request.path() {
        "/v1/complete" => Some("legacy Text Completions API (/v1/complete), retired by Anthropic"),
        "/v1/messages" | "/v1/messages/count_tokens" | "/v1/models" => None,
        _ => Some("route not offered"),
    }
}

async fn replay_one(it: &Interaction, chunk: Option<usize>) -> Result<(), String> {
    let cassette = Cassette {
        interactions: vec![it.clone()],
    };
    let opts = chunk.map_or_else(ReplayOptions::default, |n| {
        ReplayOptions::default().with_chunk_size(n)
    });
    let server = ReplayServer::start_with(cassette, opts).await.unwrap();
    let p = Anthropic::new(EndpointConfig::new("shared", format!("{}/v1", server.url())).unwrap())
        .unwrap()
        .with_beta_query(it.request.query_without_keys().contains("beta=true"));
    let status = it.response.status;
    let body = response_bytes(&it.response);
    let ctx = RequestContext::new();
    let req_json = it.request.json().ok_or("request body is not JSON")?;
    let outcome: Result<(), String> = match it.request.path() {
        "/v1/messages/count_tokens" => {
            let req = wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?;
            match p.count_tokens(&req, &ctx).await {
                Ok(n) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    if Some(n) == v["input_tokens"].as_u64() {
                        Ok(())
                    } else {
                        Err(format!("count {n} != recorded {}", v["input_tokens"]))
                    }
                }
                Err(e) => check_error(status, &body, &e),
            }
        }
        "/v1/models" => match p.call(&Request::Models, &ctx).await {
            Ok(Response::Models(m)) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<&str> = v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap())
                    .collect();
                let got: Vec<&str> = m.models.iter().map(|m| m.id.as_str()).collect();
                (ids == got)
                    .then_some(())
                    .ok_or(format!("{got:?} != {ids:?}"))
            }
            Ok(other) => Err(format!("{:?}", other.operation())),
            Err(e) => check_error(status, &body, &e),
        },
        _ => {
            let req =
                Request::Chat(wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?);
            if wire::request_streams(&req_json) {
                let got = match p.stream(&req, &ctx).await {
                    Ok(s) => {
                        let mut s = s;
                        let mut acc = StreamAccumulator::new();
                        let mut failure = None;
                        while let Some(ev) = s.next().await {
                            match ev {
                                Ok(ev) => acc.push(&ev),
                                Err(e) => {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                        match failure {
                            Some(e) => Err(e),
                            None => Ok(acc.finish()),
                        }
                    }
                    Err(e) => Err(e),
                };
                match got {
                    Ok(r) if (200..300).contains(&status) => {
                        compare(&expected_stream(&String::from_utf8_lossy(&body)), &r)
                    }
                    Ok(_) => Err(format!("status {status} decoded as an answer")),
                    Err(e) => check_error(status, &body, &e),
                }
            } else {
                match p.call(&req, &ctx).await {
                    Ok(Response::Chat(r)) if (200..300).contains(&status) => {
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        compare(&expected_plain(&v), &r)
                    }
                    Ok(_) => Err(format!("status {status} decoded as an answer")),
                    Err(e) => check_error(status, &body, &e),
                }
            }
        }
    };
    outcome?;
    server.verify()
}

fn compare(want: &Expected, r: &ChatResponse) -> Result<(), String> {
    let want_reason = want.stop_reason.as_deref().map(wire::finish_reason);
    if r.finish_reason != want_reason {
        return Err(format!(
            "finish {:?} != recorded {:?}",
            r.finish_reason, want.stop_reason
        ));
    }
    let got = Expected {
        stop_reason: want.stop_reason.clone(),
        ..actual(r)
    };
    (got == *want)
        .then_some(())
        .ok_or_else(|| format!("decoded {got:?}\nrecorded {want:?}"))
}

fn check_error(status: u16, body: &[u8], e: &infermux_core::Error) -> Result<(), String> {
    if (200..300).contains(&status) {
        return Err(format!("a {status} answer failed: {e}"));
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let want = expected_kind(status, &v);
    if e.kind() != want || e.status() != Some(status) {
        return Err(format!(
            "error {:?} (status {:?}) for a recorded {status}, expected {want:?}",
            e.kind(),
            e.status()
        ));
    }
    Ok(())
}

#[tokio::test]
async fn every_shared_anthropic_interaction_replays() {
    let Some(dir) = corpus() else {
        eprintln!("skipping: ../shared/fixtures/cassettes/anthropic is absent");
        return;
    };
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), Vec::new());
    for (n, path) in cassettes(&dir).iter().enumerate() {
        let c = Cassette::load(path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        for (i, it) in c.interactions.iter().enumerate() {
            if let Some(why) = out_of_scope(it) {
                skipped.push(format!("{name}#{i}: {why}"));
                continue;
            }
            let chunk = [None, Some(7), Some(64)][(n + i) % 3];
            match replay_one(it, chunk).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}#{i}: {e}")),
            }
        }
    }
    eprintln!(
        "anthropic shared cassettes: {passed} passed, {} failed, {} out of scope",
        failed.len(),
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  out of scope: {s}");
    }
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
    assert!(passed > 0);
}
