//! Replays every interaction of `/work/shared/fixtures/cassettes/tgi` (HF Inference API:
//! generation plain and streamed, the messages API plain and streamed, validation errors)
//! through the provider, comparing with a naive reading of the recorded bodies.

use std::path::{Path, PathBuf};

use infermux_core::{
    CompletionRequest, EndpointConfig, Provider, Request, RequestContext, Response,
    StreamAccumulator, Usage,
};
use infermux_hf_tgi::HfTgi;
use infermux_openai_compat::wire as oai;
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/cassettes/tgi"
);

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
}

/// Out of scope: Hugging Face Hub metadata (`GET huggingface.co/api/models/...`), read by the
/// Python client to pick a provider; not part of the TGI or Inference API protocol.
fn out_of_scope(it: &Interaction) -> bool {
    it.request.host().ends_with("huggingface.co") && it.request.path().starts_with("/api/models/")
}

/// `data:` payloads of an SSE body, read naively.
fn sse_payloads(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

struct Naive {
    text: String,
    usage: Option<Usage>,
}

fn naive(body: &[u8], chat: bool, streamed: bool) -> Naive {
    if streamed {
        let events = sse_payloads(body);
        let text = events
            .iter()
            .map(|e| {
                if chat {
                    e["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                } else if e["token"]["special"] == Value::Bool(true) {
                    String::new()
                } else {
                    e["token"]["text"].as_str().unwrap_or("").to_owned()
                }
            })
            .collect();
        let usage = events.iter().rev().find_map(|e| {
            let u = &e["usage"];
            u.is_object().then(|| {
                Usage::new(
                    u["prompt_tokens"].as_u64().unwrap_or(0),
                    u["completion_tokens"].as_u64().unwrap_or(0),
                )
            })
        });
        return Naive { text, usage };
    }
    let v: Value = serde_json::from_slice(body).unwrap();
    if chat {
        let u = &v["usage"];
        return Naive {
            text: v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            usage: u.is_object().then(|| {
                Usage::new(
                    u["prompt_tokens"].as_u64().unwrap_or(0),
                    u["completion_tokens"].as_u64().unwrap_or(0),
                )
            }),
        };
    }
    let one = if v.is_array() { &v[0] } else { &v };
    Naive {
        text: one["generated_text"].as_str().unwrap_or("").to_owned(),
        usage: None,
    }
}

async fn replay_one(server: &str, it: &Interaction) -> Result<(), String> {
    let path = it.request.path();
    let body = it.request.json().unwrap_or(Value::Null);
    let (api_path, chat) = match path.strip_suffix("/v1/chat/completions") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let (prefix, model) = api_path
        .split_once("/models/")
        .ok_or_else(|| format!("no route for {path}"))?;
    let cfg = EndpointConfig::new("replay", format!("{server}{prefix}")).unwrap();
    let p = HfTgi::inference_api(cfg, model).unwrap();
    let ctx = RequestContext::new();
    let (request, streamed) = if chat {
        let req = oai::chat_request_from_json(&body).map_err(|e| e.to_string())?;
        (Request::Chat(req), oai::request_streams(&body))
    } else {
        let prompt = match &body["inputs"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut req = CompletionRequest::new(model, prompt);
        req.max_tokens = body["parameters"]["max_new_tokens"]
            .as_u64()
            .map(|n| n as u32);
        (
            Request::Completion(req),
            body["stream"] == Value::Bool(true),
        )
    };
    let out = if streamed {
        match p.stream(&request, &ctx).await {
            Ok(s) => StreamAccumulator::collect(s)
                .await
                .map(|r| (r.text(), r.usage)),
            Err(e) => Err(e),
        }
    } else {
        p.call(&request, &ctx).await.map(|r| match r {
            Response::Chat(c) => (c.text(), c.usage),
            Response::Completion(c) => (c.text, c.usage),
            _ => (String::new(), None),
        })
    };
    let status = it.response.status;
    let recorded = it.response.body.to_bytes();
    if status >= 400 {
        let want =
            infermux_hf_tgi::wire::error_from_response(status, &Default::default(), &recorded)
                .kind();
        return match out {
            Err(e) if e.kind() == want => Ok(()),
            other => Err(format!("{status} gave {other:?}")),
        };
    }
    let (text, usage) = out.map_err(|e| format!("{:?}: {e}", e.kind()))?;
    let n = naive(&recorded, chat, streamed);
    if text != n.text {
        return Err(format!("text {text:?} != recorded {:?}", n.text));
    }
    if let Some(u) = n.usage {
        let got = usage.ok_or("no usage")?;
        if (got.input_tokens, got.output_tokens) != (u.input_tokens, u.output_tokens) {
            return Err(format!("usage {got:?} != recorded {u:?}"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_recorded_tgi_interaction_replays() {
    let mut paths = Vec::new();
    files(Path::new(CORPUS), &mut paths);
    if paths.is_empty() {
        eprintln!("skipping: no cassettes under {CORPUS}");
        return;
    }
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    // whole bodies, and bodies cut in 5-byte chunks (events split across reads)
    for (f, chunk) in paths.iter().flat_map(|f| [(f, None), (f, Some(5))]) {
        let mut c = Cassette::load(f).unwrap();
        if chunk.is_none() {
            skipped += c.interactions.iter().filter(|it| out_of_scope(it)).count();
        }
        c.interactions.retain(|it| !out_of_scope(it));
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(c.clone(), opts).await.unwrap();
        for (i, it) in c.interactions.iter().enumerate() {
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
        "tgi replay: {} interactions passed (each whole and in 5-byte chunks: {passed} runs), {} failed, {skipped} out of scope (Hub metadata)",
        passed / 2,
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 26, "only {passed} replays");
}
