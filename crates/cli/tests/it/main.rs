//! Integration tests of the `infermux` binary: the `conformance` subcommand's command line and
//! output (the runner is tested in `infermux-conformance`), and `chat` against any provider.

use std::path::Path;
use std::process::{Command, Output};

use infermux_testkit::helpers::{Exchange, temp_corpus};
use serde_json::Value;

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

/// The subcommand keeps its command line and its JSON-line format; the runner itself is
/// tested in `infermux-conformance`.
#[test]
fn conformance_subcommand_prints_json_lines_and_fails_on_failures() {
    let dir = temp_corpus("cli");
    let chat = Exchange {
        method: "POST",
        uri: "https://api.openai.com/v1/chat/completions",
        request_body: r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        status: 200,
        content_type: "application/json",
        body: r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
    };
    chat.write(&dir, "openai/chat.yaml");
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
    Exchange {
        body: r#"{"choices": "#,
        ..chat
    }
    .write(&dir, "openai/bad.yaml");
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
