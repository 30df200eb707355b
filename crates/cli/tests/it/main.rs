//! Integration tests of the `infermux` binary: the `conformance` subcommand's command line and
//! output (the runner is tested in `infermux-conformance`), and `chat` against any provider.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh folder under the system temp dir, unique to this test.
fn temp_corpus(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "infermux-conformance-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cassette(uri: &str, request_body: &str, status: u16, content_type: &str, body: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "interactions:\n- request:\n    method: POST\n    uri: {}\n    body: {}\n    headers: {{}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\nversion: 1\n",
        q(uri),
        q(request_body),
        q(content_type),
        q(body)
    )
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run(corpus: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["conformance", "--json", "--corpus"])
        .arg(corpus)
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const CHAT_REQ: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// The subcommand keeps its command line and its JSON-line format; the runner itself is
/// tested in `infermux-conformance`.
#[test]
fn conformance_subcommand_prints_json_lines_and_fails_on_failures() {
    let dir = temp_corpus("cli");
    write(
        &dir,
        "openai/chat.yaml",
        &cassette(
            "https://api.openai.com/v1/chat/completions",
            CHAT_REQ,
            200,
            "application/json",
            r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ),
    );
    let out = run(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 passed, 0 failed, 0 unsupported"),
        "{stderr}"
    );
    let lines = lines(&out);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    for key in [
        "file",
        "interaction",
        "provider",
        "operation",
        "status",
        "outcome",
        "error_kind",
        "text",
        "tool_calls",
        "finish_reason",
        "usage",
        "embeddings",
        "pass",
        "reason",
    ] {
        assert!(l.get(key).is_some(), "{key} missing from {l}");
    }
    assert_eq!(l["text"], "Hi there");
    assert_eq!(l["pass"], true);
    // a recorded answer the decoder cannot read fails the command
    write(
        &dir,
        "openai/bad.yaml",
        &cassette(
            "https://api.openai.com/v1/chat/completions",
            CHAT_REQ,
            200,
            "application/json",
            r#"{"choices": "#,
        ),
    );
    let out = run(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 passed, 1 failed, 0 unsupported"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chat_reaches_any_provider_by_name() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(infermux_testkit::Simulator::start(
            infermux_testkit::FaultPlan::none(),
        ))
        .unwrap();
    let chat = |provider: &str, base: String, model: &str| {
        Command::new(env!("CARGO_BIN_EXE_infermux"))
            .args([
                "chat",
                "--provider",
                provider,
                "--base-url",
                &base,
                "--model",
                model,
                "hello there",
            ])
            .output()
            .unwrap()
    };
    // streamed, over the OpenAI protocol
    let out = chat("openai-compat", format!("{}/v1", sim.url()), "m");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Echo: hello there"
    );
    // a protocol without streaming answers in one piece
    let out = chat("llvm", sim.url(), "llvm-gen-1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello there"));
    let out = chat("nonsense", sim.url(), "m");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown provider"));
}
