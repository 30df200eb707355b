//! Replays every interaction of `/work/shared/fixtures/cassettes/tei` (HF Inference API
//! feature extraction) and decodes TEI's server outputs under `fixtures/snapshots/tei`,
//! comparing vectors with a naive reading of the recorded bodies.

use std::path::{Path, PathBuf};

use infermux_core::{
    EmbeddingRequest, EndpointConfig, Provider, Request, RequestContext, Response,
};
use infermux_hf_tei::HfTei;
use infermux_testkit::{Cassette, Interaction, ReplayServer};
use serde_json::Value;

use crate::{cassette, tei};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/cassettes/tei"
);
const SNAPSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/snapshots/tei"
);

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
}

/// Out of scope: Hugging Face Hub metadata (`GET huggingface.co/api/models/...`), which the
/// Python client reads to pick a provider; it is not part of the TEI or Inference API protocol.
fn out_of_scope(it: &Interaction) -> bool {
    it.request.host().ends_with("huggingface.co") && it.request.path().starts_with("/api/models/")
}

/// Naive reading: a vector, vectors, or token vectors averaged.
fn naive_vectors(body: &[u8]) -> Vec<Vec<f64>> {
    let v: Value = serde_json::from_slice(body).unwrap();
    let to_vec = |x: &Value| -> Vec<f64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap())
            .collect()
    };
    let first = &v[0];
    if first.is_number() {
        return vec![to_vec(&v)];
    }
    if first[0].is_number() {
        return v.as_array().unwrap().iter().map(to_vec).collect();
    }
    v.as_array()
        .unwrap()
        .iter()
        .map(|tokens| {
            let rows: Vec<Vec<f64>> = tokens.as_array().unwrap().iter().map(to_vec).collect();
            let mut mean = vec![0.0; rows[0].len()];
            for r in &rows {
                for (m, x) in mean.iter_mut().zip(r) {
                    *m += x / rows.len() as f64;
                }
            }
            mean
        })
        .collect()
}

fn close(a: &[Vec<f32>], b: &[Vec<f64>]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} vectors, recorded {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            return Err(format!("dimension {} != recorded {}", x.len(), y.len()));
        }
        if let Some((i, (p, q))) = x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (p, q))| (f64::from(**p) - **q).abs() > 1e-4 * q.abs().max(1.0))
        {
            return Err(format!("component {i}: {p} != recorded {q}"));
        }
    }
    Ok(())
}

async fn replay_one(server: &str, it: &Interaction) -> Result<(), String> {
    let path = it.request.path();
    let (prefix, model) = path
        .split_once("/pipeline/feature-extraction/")
        .ok_or_else(|| format!("no route for {path}"))?;
    let cfg = EndpointConfig::new("replay", format!("{server}{prefix}")).unwrap();
    let p = HfTei::inference_api(cfg, model).unwrap();
    let body = it.request.json().unwrap_or(Value::Null);
    let inputs: Vec<String> = match &body["inputs"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => return Err("no inputs recorded".into()),
    };
    let req = Request::Embeddings(EmbeddingRequest::new(model, inputs));
    let out = p.call(&req, &RequestContext::new()).await;
    let status = it.response.status;
    if status >= 400 {
        let want = infermux_hf_tei::wire::error_from_response(
            status,
            &Default::default(),
            &it.response.body.to_bytes(),
        )
        .kind();
        return match out {
            Err(e) if e.kind() == want => Ok(()),
            other => Err(format!("{status} gave {other:?}")),
        };
    }
    let Response::Embeddings(e) = out.map_err(|e| format!("{:?}: {e}", e.kind()))? else {
        return Err("not embeddings".into());
    };
    close(&e.embeddings, &naive_vectors(&it.response.body.to_bytes()))
}

#[tokio::test]
async fn every_recorded_tei_interaction_replays() {
    let mut paths = Vec::new();
    files(Path::new(CORPUS), "yaml", &mut paths);
    if paths.is_empty() {
        eprintln!("skipping: no cassettes under {CORPUS}");
        return;
    }
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for f in &paths {
        let mut c = Cassette::load(f).unwrap();
        skipped += c.interactions.iter().filter(|it| out_of_scope(it)).count();
        c.interactions.retain(|it| !out_of_scope(it));
        let server = ReplayServer::start(c.clone()).await.unwrap();
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
        "tei replay: {passed} passed, {} failed, {skipped} out of scope (Hub metadata)",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 2);
}

#[tokio::test]
async fn tei_server_snapshots_decode() {
    let mut paths = Vec::new();
    files(Path::new(SNAPSHOTS), "snap", &mut paths);
    if paths.is_empty() {
        eprintln!("skipping: no snapshots under {SNAPSHOTS}");
        return;
    }
    for f in &paths {
        let text = std::fs::read_to_string(f).unwrap();
        // insta: a `---` header block, then the YAML value
        let yaml = text.splitn(3, "---\n").nth(2).unwrap();
        let naive: Vec<Vec<f64>> = serde_norway::from_str(yaml).unwrap();
        let json = serde_json::to_string(&naive).unwrap();
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/embed",
            200,
            "application/json",
            &json,
        )]))
        .await
        .unwrap();
        let inputs = vec!["What is Deep Learning?".to_owned(); naive.len()];
        let p = tei(&server.url()).with_max_client_batch_size(32);
        let req = Request::Embeddings(EmbeddingRequest::new("tei", inputs));
        let Response::Embeddings(e) = p.call(&req, &RequestContext::new()).await.unwrap() else {
            panic!("not embeddings")
        };
        close(&e.embeddings, &naive).unwrap_or_else(|m| panic!("{}: {m}", f.display()));
        server.verify().unwrap();
    }
}
