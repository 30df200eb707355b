//! Replay of every interaction of the shared Gemini cassettes
//! (`../shared/fixtures/cassettes/gemini`, recorded from the real API by llm-gemini, openllmetry
//! and pydantic-ai) through this provider. Each answer is compared with a naive reading of the
//! recorded body written here, independently of the provider's parser.

use std::path::{Path, PathBuf};

use infermux_core::{
    ChatResponse, EmbeddingRequest, Error, ErrorKind, Provider, Request, RequestContext, Response,
    StreamAccumulator,
};
use infermux_gemini::wire;
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

use crate::{provider, response_bytes, stream_chunks};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/fixtures/cassettes/gemini");
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
    tools: Vec<(String, Value)>,
    input_tokens: u64,
    output_tokens: u64,
    blocked: bool,
}

fn expected(chunks: &[Value]) -> Expected {
    let mut e = Expected::default();
    for c in chunks {
        if c["promptFeedback"]["blockReason"].is_string() {
            e.blocked = true;
        }
        let cand = &c["candidates"][0];
        if matches!(
            cand["finishReason"].as_str(),
            Some("SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "RECITATION")
        ) {
            e.blocked = true;
        }
        for p in cand["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(fc) = p.get("functionCall") {
                e.tools
                    .push((fc["name"].as_str().unwrap().to_owned(), fc["args"].clone()));
            } else if p["thought"] != true
                && let Some(t) = p["text"].as_str()
            {
                e.text.push_str(t);
            }
        }
        if let Some(u) = c.get("usageMetadata") {
            e.input_tokens = u["promptTokenCount"].as_u64().unwrap_or(0);
            e.output_tokens = u["candidatesTokenCount"].as_u64().unwrap_or(0)
                + u["thoughtsTokenCount"].as_u64().unwrap_or(0);
        }
    }
    e
}

fn actual(r: &ChatResponse) -> Expected {
    let u = r.usage.unwrap_or_default();
    Expected {
        text: r.text(),
        tools: r
            .tool_calls()
            .iter()
            .map(|c| (c.name.clone(), c.parsed_arguments().unwrap()))
            .collect(),
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        blocked: false,
    }
}

/// The kind an error status must give, read independently of `infermux-http`.
fn expected_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Server,
    }
}

fn check_error(status: u16, e: &Error) -> Result<(), String> {
    if (200..300).contains(&status) {
        return Err(format!("a {status} answer failed: {e}"));
    }
    let want = expected_kind(status);
    (e.kind() == want && e.status() == Some(status))
        .then_some(())
        .ok_or_else(|| format!("{:?} ({:?}) for a recorded {status}", e.kind(), e.status()))
}

fn check_chat(status: u16, body: &[u8], got: Result<ChatResponse, Error>) -> Result<(), String> {
    if !(200..300).contains(&status) {
        return match got {
            Ok(_) => Err(format!("status {status} decoded as an answer")),
            Err(e) => check_error(status, &e),
        };
    }
    let want = expected(&stream_chunks(body));
    match got {
        Err(e) if want.blocked && e.kind() == ErrorKind::ContentFilter => Ok(()),
        Err(e) => Err(format!("a {status} answer failed: {e}")),
        Ok(_) if want.blocked => Err("a blocked answer decoded as an answer".into()),
        Ok(r) => {
            let got = actual(&r);
            (got == want)
                .then_some(())
                .ok_or_else(|| format!("decoded {got:?}\nrecorded {want:?}"))
        }
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
    let sse = it.request.query_without_keys().contains("alt=sse");
    let p = provider(&format!("{}/v1beta", server.url())).with_sse(sse);
    let status = it.response.status;
    let body = response_bytes(&it.response);
    let ctx = RequestContext::new();
    let path = it.request.path().to_owned();
    let model = path
        .split("/models/")
        .nth(1)
        .and_then(|m| m.split(':').next())
        .unwrap_or("")
        .to_owned();
    let method = path.rsplit(':').next().unwrap_or("");
    let req_json = it.request.json().unwrap_or_default();
    let outcome = match method {
        "generateContent" | "streamGenerateContent" => {
            let req = Request::Chat(
                wire::chat_request_from_json(&model, &req_json).map_err(|e| e.to_string())?,
            );
            let got = if method == "generateContent" {
                match p.call(&req, &ctx).await {
                    Ok(Response::Chat(r)) => Ok(r),
                    Ok(other) => return Err(format!("{:?}", other.operation())),
                    Err(e) => Err(e),
                }
            } else {
                match p.stream(&req, &ctx).await {
                    Ok(s) => StreamAccumulator::collect(s).await,
                    Err(e) => Err(e),
                }
            };
            check_chat(status, &body, got)
        }
        "batchEmbedContents" | "embedContent" => {
            let items = req_json["requests"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![req_json.clone()]);
            let inputs: Vec<String> = items
                .iter()
                .map(|r| {
                    r["content"]["parts"][0]["text"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            let mut req = EmbeddingRequest::new(model.clone(), inputs.clone());
            req.dimensions = items[0]["outputDimensionality"]
                .as_u64()
                .map(|d| u32::try_from(d).unwrap());
            if let Some(t) = items[0].get("taskType") {
                req.extra.insert("taskType".into(), t.clone());
            }
            let got = if method == "embedContent" {
                p.embed_one(&req, &inputs[0], &ctx).await.map(|v| vec![v])
            } else {
                match p.call(&Request::Embeddings(req), &ctx).await {
                    Ok(Response::Embeddings(e)) => Ok(e.embeddings),
                    Ok(other) => return Err(format!("{:?}", other.operation())),
                    Err(e) => Err(e),
                }
            };
            match got {
                Ok(vectors) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let recorded: Vec<Vec<f32>> = v["embeddings"]
                        .as_array()
                        .cloned()
                        .unwrap_or_else(|| vec![v["embedding"].clone()])
                        .iter()
                        .map(|e| {
                            e["values"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|x| x.as_f64().unwrap() as f32)
                                .collect()
                        })
                        .collect();
                    (vectors == recorded)
                        .then_some(())
                        .ok_or_else(|| "vectors differ from the recording".to_owned())
                }
                Err(e) => check_error(status, &e),
            }
        }
        "countTokens" => {
            let req = wire::chat_request_from_json(&model, &req_json).map_err(|e| e.to_string())?;
            match p.count_tokens(&req, &ctx).await {
                Ok(n) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    (Some(n) == v["totalTokens"].as_u64())
                        .then_some(())
                        .ok_or_else(|| format!("{n} != {}", v["totalTokens"]))
                }
                Err(e) => check_error(status, &e),
            }
        }
        _ if path.ends_with("/models") => match p.call(&Request::Models, &ctx).await {
            Ok(Response::Models(m)) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                (m.models.len() == v["models"].as_array().unwrap().len())
                    .then_some(())
                    .ok_or_else(|| "model count differs".to_owned())
            }
            Ok(other) => Err(format!("{:?}", other.operation())),
            Err(e) => check_error(status, &e),
        },
        other => Err(format!("no route for {other}")),
    };
    outcome?;
    server.verify()
}

#[tokio::test]
async fn every_shared_gemini_interaction_replays() {
    let Some(dir) = corpus() else {
        eprintln!("skipping: ../shared/fixtures/cassettes/gemini is absent");
        return;
    };
    let (mut passed, mut failed) = (0, Vec::new());
    for (n, path) in cassettes(&dir).iter().enumerate() {
        let c = Cassette::load(path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        for (i, it) in c.interactions.iter().enumerate() {
            let chunk = [None, Some(7), Some(64)][(n + i) % 3];
            match replay_one(it, chunk).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}#{i}: {e}")),
            }
        }
    }
    eprintln!(
        "gemini shared cassettes: {passed} passed, {} failed, 0 out of scope",
        failed.len()
    );
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
    assert!(passed > 0);
}
