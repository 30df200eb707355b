//! Integration tests of the `infermux` binary: the `conformance` subcommand's command line and
//! output (the runner is tested in `infermux-conformance`), and `chat`/`models` against the
//! simulator: provider names with suggestions, `--no-stream`, the finish reason, the base URL
//! and key from the environment, and errors with their cause chain; `serve` with a real child
//! server and Ctrl-C.

use std::path::Path;
use std::process::{Command, Output};

use infermux_testkit::helpers::{Exchange, temp_corpus};
use serde_json::Value;

mod cache_eval;
#[cfg(feature = "s3")]
mod s3;
mod serve;

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
}

/// The simulator, on a runtime that lives as long as it.
fn simulator(
    plan: infermux_testkit::FaultPlan,
) -> (tokio::runtime::Runtime, infermux_testkit::Simulator) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(infermux_testkit::Simulator::start(plan))
        .unwrap();
    (rt, sim)
}

/// The binary with an empty environment plus `env` (no variable of the machine leaks in).
fn infermux(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_infermux"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_misspelt_provider_lists_the_values_and_suggests_the_closest() {
    let out = infermux(
        &[
            "chat",
            "--provider",
            "antropic",
            "--base-url",
            "http://127.0.0.1:1",
            "hi",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid value 'antropic' for '--provider <PROVIDER>'"),
        "{err}"
    );
    assert!(err.contains("possible values: openai-compat, openai, groq, vllm, opea, anthropic, gemini, ollama, hf-tgi, hf-tei, ovms, llvm"), "{err}");
    assert!(err.contains("a similar value exists: 'anthropic'"), "{err}");
    // the help says, for every provider, which variable and header carry its key
    let help = text(&infermux(&["chat", "--help"], &[]).stdout);
    for line in [
        "openai         OPENAI_API_KEY (sent as Authorization: Bearer, required)",
        "anthropic      ANTHROPIC_API_KEY (sent as x-api-key, required)",
        "gemini         GEMINI_API_KEY or GOOGLE_API_KEY (sent as x-goog-api-key, required)",
        "groq           GROQ_API_KEY (sent as Authorization: Bearer, required)",
        "ollama         OLLAMA_API_KEY (sent as Authorization: Bearer)",
    ] {
        assert!(help.contains(line), "{line} missing from\n{help}");
    }
}

#[test]
fn no_stream_asks_for_the_whole_answer_and_both_modes_print_the_finish_reason() {
    // every streamed request fails inside its stream; a non-streamed one cannot
    let (_rt, sim) = simulator(
        infermux_testkit::FaultPlan::seeded(1).with(infermux_testkit::Fault::ErrorInStream, 1.0),
    );
    let base = format!("{}/v1", sim.url());
    let args = [
        "chat",
        "--base-url",
        base.as_str(),
        "--model",
        "m",
        "hello there",
    ];
    let streamed = infermux(&args, &[]);
    assert!(!streamed.status.success(), "{}", text(&streamed.stdout));
    let out = infermux(&[&args[..], &["--no-stream"]].concat(), &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout).trim(), "Echo: hello there");
    assert!(err.contains("[finish: stop, "), "{err}");
    assert!(
        err.contains(" tokens in, ") && err.contains(" out]"),
        "{err}"
    );

    // streamed, the reason comes from the stream's end
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let base = format!("{}/v1", sim.url());
    let out = infermux(
        &["chat", "--base-url", &base, "--model", "m", "hello there"],
        &[],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout).trim(), "Echo: hello there");
    assert!(
        err.trim_end().ends_with(']') && err.contains("[finish: stop"),
        "{err}"
    );
}

#[test]
fn the_base_url_and_key_come_from_the_environment() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let base = format!("{}/v1", sim.url());
    // INFERMUX_BASE_URL for any provider
    let out = infermux(&["chat", "hi"], &[("INFERMUX_BASE_URL", &base)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Echo: hi");
    // none set, no default: an error naming the flag and the variables
    let out = infermux(&["models"], &[]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        "error: config: no base URL for provider openai-compat: pass --base-url or set INFERMUX_BASE_URL"
    );
    let out = infermux(&["models", "--provider", "opea"], &[]);
    assert!(text(&out.stderr).contains("pass --base-url or set INFERMUX_BASE_URL or OPEA_API_URL"));
    // the provider's own variables: OPENAI_BASE_URL, and OPENAI_API_KEY sent as Bearer
    sim.require_api_key("sk-from-env");
    let out = infermux(
        &["models", "--provider", "openai"],
        &[
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_API_KEY", "sk-from-env"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), sim.model());
    // a hosted provider without its key variable fails before any request, naming it
    let out = infermux(
        &["models", "--provider", "openai"],
        &[("OPENAI_BASE_URL", &base)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("OPENAI_API_KEY"),
        "{}",
        text(&out.stderr)
    );
    // --api-key-env names another variable
    let out = infermux(
        &["models", "--provider", "openai", "--api-key-env", "MY_KEY"],
        &[("OPENAI_BASE_URL", &base), ("MY_KEY", "sk-from-env")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ANTHROPIC_BASE_URL follows the SDKs' convention, without `/v1` (as Anthropic::from_env
    // reads it): the messages go to `/v1/messages`
    for url in [sim.url(), format!("{}/", sim.url()), base.clone()] {
        let out = infermux(
            &["chat", "--provider", "anthropic", "--no-stream", "hi"],
            &[
                ("ANTHROPIC_BASE_URL", &url),
                ("ANTHROPIC_API_KEY", "sk-from-env"),
            ],
        );
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "Echo: hi");
    }
}

/// A server `INFERMUX_BASE_URL` names gets `INFERMUX_API_KEY`, never a hosted provider's own
/// key: `ANTHROPIC_API_KEY` left in the shell beside a local server's URL is not sent there.
#[test]
fn a_server_named_by_infermux_base_url_never_gets_a_providers_own_key() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    sim.require_api_key("sk-infermux");
    let base = format!("{}/v1", sim.url());
    let hosted = [
        ("INFERMUX_BASE_URL", base.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-for-anthropic-only"),
    ];
    let out = infermux(
        &["chat", "--provider", "anthropic", "--no-stream", "hi"],
        &hosted,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("INFERMUX_API_KEY") && err.contains("INFERMUX_BASE_URL"),
        "{err}"
    );
    assert_eq!(sim.requests(), 0, "nothing is sent");
    let mut with_key = hosted.to_vec();
    with_key.push(("INFERMUX_API_KEY", "sk-infermux"));
    let out = infermux(
        &["chat", "--provider", "anthropic", "--no-stream", "hi"],
        &with_key,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Echo: hi");
    // a provider whose key is optional sends none rather than its own variable's
    let out = infermux(
        &["models", "--provider", "vllm"],
        &[
            ("INFERMUX_BASE_URL", base.as_str()),
            ("VLLM_API_KEY", "sk-infermux"),
        ],
    );
    assert!(
        !out.status.success(),
        "the simulator wants a key: none was sent"
    );
}

/// Output that cannot be written (a full disk: `/dev/full`) fails the command, naming the
/// error, streamed or not: lost output is never a success.
#[test]
fn output_that_cannot_be_written_fails_the_command() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let base = format!("{}/v1", sim.url());
    for args in [
        vec!["chat", "--base-url", &base, "hi"],
        vec!["chat", "--base-url", &base, "--no-stream", "hi"],
        vec!["models", "--base-url", &base],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
            .env_clear()
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("cannot write the output"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn errors_print_their_cause_chain_without_colour_off_a_terminal() {
    // nothing listens on port 1: the connect error's causes go down to the OS
    let out = infermux(&["models", "--base-url", "http://127.0.0.1:1/v1"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("error: connect"), "{err}");
    assert!(lines.len() >= 2, "{err}");
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  caused by: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour on a pipe: {err:?}");
}

/// `infermux demo` (the README's first command): every request succeeds through the pool, and
/// the report shows the rotation, the cooldowns, the breaker that opened and the fallbacks.
#[test]
fn the_demo_answers_every_request_and_reports_rotation_cooldowns_breaker_and_fallbacks() {
    let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("300 requests resolved (300 ok, 0 failed)"),
        "{text}"
    );
    // rotation: both keys of sim-a answered
    assert!(
        text.contains("sim-a/a1") && text.contains("sim-a/a2"),
        "{text}"
    );
    // the throttled key cooled down, the down endpoint's breaker opened, fallbacks were taken
    let number_after = |label: &str| -> u64 {
        let at = text
            .find(label)
            .unwrap_or_else(|| panic!("no `{label}` in {text}"));
        text[at + label.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(number_after("cooldowns") >= 1, "{text}");
    assert!(
        number_after("fallbacks taken (chat-large → chat):") >= 1,
        "{text}"
    );
    let sim_b = &text[text.find("endpoint sim-b").unwrap()..];
    assert!(sim_b.contains("breaker trips        1"), "{sim_b}");
    // the cache: every question asked again word for word is an exact hit, never sent
    assert!(
        text.contains("word for word  6 exact hits, 0 semantic hits, 0 sent to the server"),
        "{text}"
    );
    // the semantic tier: on with the model folder (a reworded question answered from the
    // cache), and saying it is off without it
    match std::env::var_os("INFERMUX_MINILM_DIR").filter(|d| !d.is_empty()) {
        Some(_) => {
            let reworded = &text[text.find("  reworded ").expect("a reworded round")..];
            let hits = reworded
                .split(" semantic hits")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            assert!(hits >= 1, "{text}");
        }
        None => {
            assert!(text.contains("semantic tier: off"), "{text}");
            infermux_testkit::skip(
                infermux_testkit::Need::Fixtures,
                "the demo's semantic tier: INFERMUX_MINILM_DIR is not set (the all-MiniLM-L6-v2 folder)",
            );
        }
    }
    // batching: 64 single-input calls went out as fewer requests, each caller its own vector
    assert!(
        text.contains("64/64 callers got their own vector"),
        "{text}"
    );
}

/// `chat --config FILE --model GROUP` routes through the file's pool and says who served;
/// `models --config FILE` lists the groups.
#[test]
fn chat_with_a_config_routes_by_group_and_says_who_served() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    sim.set_key("sk-bad", infermux_testkit::KeyBehaviour::Unauthorized);
    let dir = std::env::temp_dir().join(format!("infermux-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("infermux.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[endpoint]]
name = "sim"
provider = "openai-compat"
base_url = "{}/v1"
keys = [ {{ alias = "bad", value = "sk-bad" }}, {{ alias = "good", value = "sk-good" }} ]

[[group]]
name = "chat-fast"
deployments = [ {{ endpoint = "sim", model = "sim-echo-1" }} ]
"#,
            sim.url()
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for mode in [&["--no-stream"][..], &[][..]] {
        let args = [
            &["chat", "--config", p, "--model", "chat-fast", "hello there"][..],
            mode,
        ]
        .concat();
        let out = infermux(&args, &[]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(text(&out.stdout).trim(), "Echo: hello there");
        assert!(
            err.contains("[served by chat-fast/sim (sim, key good)"),
            "{err}"
        );
    }
    // each of the two processes tried the bad key once (401), then took it out
    assert_eq!(sim.requests_by_key("sk-bad"), 2);
    let out = infermux(&["models", "--config", p], &[]);
    assert_eq!(text(&out.stdout).trim(), "chat-fast: sim/sim-echo-1");
    // an unknown group is an error naming the groups
    let out = infermux(
        &[
            "chat",
            "--config",
            p,
            "--model",
            "nope",
            "--no-stream",
            "hi",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no model group named `nope`"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `infermux embed`: every line its own call, sent by the client's batcher as one request, each
/// line getting its own vector (equal to the vector it gets alone).
#[test]
fn embed_batches_every_line_and_each_gets_its_own_vector() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(infermux_testkit::Simulator::start(
            infermux_testkit::FaultPlan::none(),
        ))
        .unwrap();
    let run = |input: &str, extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_infermux"))
            .args([
                "embed",
                "--base-url",
                &format!("{}/v1", sim.url()),
                "--model",
                "e",
            ])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let lines: Vec<String> = (0..20).map(|i| format!("line number {i}")).collect();
    let before = sim.requests();
    let (out, err) = run(&lines.join("\n"), &["--max-wait-ms", "50"]);
    let vectors: Vec<&str> = out.lines().collect();
    assert_eq!(vectors.len(), 20, "{out}");
    assert!(err.contains("20 texts"), "{err}");
    assert!(sim.requests() - before < 20, "{err}");
    // each line's vector is the one it gets alone
    let (alone, _) = run(&lines[7], &[]);
    assert_eq!(alone.trim(), vectors[7]);
    let (other, _) = run(&lines[8], &[]);
    assert_ne!(other.trim(), vectors[7]);
}

/// A config file with one endpoint and no groups, written for this test.
fn config_file(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("infermux-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("infermux.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn flags_a_config_replaces_are_refused_with_it_not_ignored() {
    let path = config_file(
        "conflicts",
        "[[endpoint]]\nname = \"local\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    let p = path.to_str().unwrap();
    let out = infermux(
        &["chat", "--config", p, "--provider", "anthropic", "hi"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
    // without groups, `models --config` says where every model goes
    let out = infermux(&["models", "--config", p], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "(no [[group]]: every model goes to) local/*"
    );
}

/// A file without an `[[endpoint]]` (empty, or `[s3]` only) is an error naming the file for
/// `chat` and `models` (models listed nothing and succeeded); a file shared with `infermux
/// s3` does not need the S3 keys in `chat`'s environment.
#[test]
fn a_config_without_endpoints_is_an_error_naming_the_file() {
    let empty = config_file("empty", "");
    let p = empty.to_str().unwrap();
    for args in [
        vec!["models", "--config", p],
        vec!["chat", "--config", p, "hi"],
    ] {
        let out = infermux(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            text(&out.stderr).trim(),
            format!("error: config: {p}: no [[endpoint]]: a client needs at least one"),
            "{args:?}"
        );
    }
    let shared = config_file(
        "shared",
        "[[endpoint]]\nname = \"local\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [s3]\n[[s3.endpoint]]\nname = \"store\"\nurl = \"http://127.0.0.1:9\"\n\
         access_key_env = \"S3_ACCESS\"\nsecret_key_env = \"S3_SECRET\"\n",
    );
    let out = infermux(&["models", "--config", shared.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The binary run with `args` (and an empty environment) whose reader goes away before the
/// first line is written.
fn with_stdout_closed(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .env_clear()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// The conformance report ends as every command's output: a reader gone away is 141 and
/// nothing on stderr but the summary, a full disk is a failure naming the error.
#[test]
fn a_conformance_report_that_cannot_be_written_ends_as_any_output() {
    let dir = temp_corpus("cli-pipe");
    Exchange {
        method: "POST",
        uri: "https://api.openai.com/v1/chat/completions",
        request_body: r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        status: 200,
        content_type: "application/json",
        body: r#"{"id":"c1","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#,
    }
    .write(&dir, "openai/chat.yaml");
    let corpus = dir.to_str().unwrap();
    let out = with_stdout_closed(&["conformance", "--json", "--corpus", corpus]);
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("error"),
        "{}",
        text(&out.stderr)
    );
    let full = std::fs::File::create("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["conformance", "--json", "--corpus"])
        .arg(&dir)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: cannot write the output"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_closed_stdout_ends_the_program_quietly_not_with_a_panic() {
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!(
            "[[endpoint]]\nname = \"e{i}\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[group]]\nname = \"g{i}\"\ndeployments = [ {{ endpoint = \"e{i}\", model = \"m\" }} ]\n"
        ));
    }
    let path = config_file("pipe", &body);
    let out = with_stdout_closed(&["models", "--config", path.to_str().unwrap()]);
    // as a program SIGPIPE ended: 128 + 13
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn embed_refuses_a_blank_line_that_would_shift_every_vector_after_it() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .env_clear()
        .args([
            "embed",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "e",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\n\nthree\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stdin line 2 is blank"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn embed_flags_win_over_the_config_files_batching() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let path = config_file(
        "embed-batching",
        &format!(
            "[[endpoint]]\nname = \"sim\"\nprovider = \"openai-compat\"\nbase_url = \"{}/v1\"\n\n[batching]\nmax_items = 2\nmax_wait = \"1ms\"\nmax_queued = 4\n",
            sim.url()
        ),
    );
    let texts: Vec<String> = (0..40).map(|i| format!("text {i}")).collect();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["embed", "--config", path.to_str().unwrap(), "--model", "e"]
            .map(String::from)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(texts.iter().cloned());
        a
    };
    // the file's queue of 4 still takes all 40 texts, in batches of at most 2
    let before = sim.requests();
    let a = args(&[]);
    let out = infermux(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 40);
    assert!(sim.requests() - before >= 20, "batches of at most 2");
    // --max-batch and --max-wait-ms replace the file's
    let before = sim.requests();
    let a = args(&["--max-batch", "64", "--max-wait-ms", "200"]);
    let out = infermux(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        sim.requests() - before < 10,
        "{} requests: the flags were ignored",
        sim.requests() - before
    );
}

#[test]
fn chat_with_a_config_answers_in_one_piece_from_a_group_that_cannot_stream() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    // the first endpoint streams, the group's (LLVM) does not
    let path = config_file(
        "llvm-group",
        &format!(
            "[[endpoint]]\nname = \"chat\"\nprovider = \"openai-compat\"\nbase_url = \"{0}/v1\"\n\n[[endpoint]]\nname = \"gen\"\nprovider = \"llvm\"\nbase_url = \"{0}\"\n\n[[group]]\nname = \"g\"\ndeployments = [ {{ endpoint = \"gen\", model = \"llvm-gen-1\" }} ]\n",
            sim.url()
        ),
    );
    let out = infermux(
        &[
            "chat",
            "--config",
            path.to_str().unwrap(),
            "--model",
            "g",
            "hello there",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hello there"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_hugging_face_token_goes_only_to_hugging_faces_hosts() {
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let base = sim.url();
    let env = [
        ("HF_TOKEN", "hf-account-token"),
        ("TGI_API_KEY", "tgi-server-key"),
    ];
    let out = infermux(
        &[
            "chat",
            "--provider",
            "hf-tgi",
            "--base-url",
            base.as_str(),
            "--model",
            "m",
            "--no-stream",
            "hi",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        sim.requests_by_key("hf-account-token"),
        0,
        "the HF token left"
    );
    assert_eq!(sim.requests_by_key("tgi-server-key"), 1);
}

/// With the feature `redis`, a config's `[cache] redis_url` works from the command line: an
/// answer one `infermux chat` stored is the next process's exact hit, said on stderr, and the
/// server is asked once for each (plain and streamed answers are cached apart).
#[cfg(feature = "redis")]
#[test]
fn two_chat_processes_share_one_redis_cache() {
    let Some(redis) = infermux_testkit::server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let (_rt, sim) = simulator(infermux_testkit::FaultPlan::none());
    let prefix = format!(
        "cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let path = config_file(
        "redis",
        &format!(
            "[[endpoint]]\nname = \"local\"\nprovider = \"openai-compat\"\nbase_url = \"{}/v1\"\n\
             [cache]\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n",
            sim.url()
        ),
    );
    let p = path.to_str().unwrap();
    for (round, stream) in [false, true].into_iter().enumerate() {
        let mut args = vec!["chat", "--config", p, "hello there"];
        if !stream {
            args.push("--no-stream");
        }
        let first = infermux(&args, &[]);
        assert!(first.status.success(), "{}", text(&first.stderr));
        assert!(
            !text(&first.stderr).contains("cache hit"),
            "{}",
            text(&first.stderr)
        );
        let again = infermux(&args, &[]);
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert_eq!(text(&again.stdout), text(&first.stdout));
        assert!(
            text(&again.stderr).contains("[exact cache hit"),
            "stream {stream}: {}",
            text(&again.stderr)
        );
        assert_eq!(sim.requests(), round as u64 + 1, "the server answered once");
    }
}
