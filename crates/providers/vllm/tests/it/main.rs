//! Integration tests of infermux-vllm: replay of its own fixtures recorded from the real
//! llama.cpp server through this crate (re-record with `INFERMUX_RECORD=1`), the LoRA and
//! metrics routes on small cassettes shaped like vLLM's answers, and the testkit conformance
//! suite against the simulator and live against llama.cpp.

mod connections;

use std::path::PathBuf;
use std::sync::Arc;

use infermux_core::{
    ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext, Response,
    StreamAccumulator,
};
use infermux_testkit::{
    Cassette, FaultPlan, RecordingProxy, ReplayOptions, ReplayServer, Simulator, SuiteConfig,
    conformance, server_url,
};
use infermux_vllm::{MetricsSnapshot, Vllm};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn vllm(base: &str) -> Vllm {
    Vllm::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

fn chat_request() -> ChatRequest {
    ChatRequest::new("smollm2", vec![Message::user("Name a colour.")])
        .with_max_tokens(12)
        .with_temperature(0.0)
        .with_seed(3)
}

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let proxy = RecordingProxy::start(&url).await.unwrap();
    let p = vllm(&proxy.url());
    let ctx = RequestContext::new();
    p.health(&ctx).await.unwrap();
    p.call(&Request::Chat(chat_request()), &ctx).await.unwrap();
    let s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    StreamAccumulator::collect(s).await.unwrap();
    assert!(p.lora_adapters(&ctx).await.unwrap().is_empty());
    proxy.save(fixture("llama.yaml")).unwrap();
}

#[tokio::test]
async fn replays_health_chat_stream_and_models() {
    for chunk in [None, Some(1), Some(11)] {
        let cassette = Cassette::load(fixture("llama.yaml")).unwrap();
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(cassette, opts).await.unwrap();
        // the root URL, or the same with `/v1`
        let p = vllm(&format!("{}/v1", server.url()));
        let ctx = RequestContext::new();
        p.health(&ctx).await.unwrap();
        let Response::Chat(plain) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap()
        else {
            panic!("not a chat answer")
        };
        assert!(!plain.text().trim().is_empty());
        let s = p
            .stream(&Request::Chat(chat_request()), &ctx)
            .await
            .unwrap();
        let streamed = StreamAccumulator::collect(s).await.unwrap();
        assert!(!streamed.text().trim().is_empty());
        assert!(streamed.usage.is_some());
        assert!(p.lora_adapters(&ctx).await.unwrap().is_empty());
        server.verify().unwrap();
    }
}

fn lora_cassette() -> Cassette {
    Cassette::from_yaml(r#"
interactions:
- request: {method: POST, uri: "http://vllm:8000/v1/load_lora_adapter", body: '{"lora_name":"sql-lora","lora_path":"/adapters/sql"}', headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [text/plain; charset=utf-8]}
    body: {string: "Success: LoRA adapter 'sql-lora' added successfully."}
- request: {method: POST, uri: "http://vllm:8000/v1/load_lora_adapter", body: '{"lora_name":"sql-lora","lora_path":"/adapters/sql"}', headers: {}}
  response:
    status: {code: 400, message: Bad Request}
    headers: {content-type: [application/json]}
    body: {string: '{"object":"error","message":"The lora adapter ''sql-lora'' has already been loaded.","type":"InvalidUserInput","param":null,"code":400}'}
- request: {method: GET, uri: "http://vllm:8000/v1/models", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"object":"list","data":[{"id":"meta-llama/Llama-2-7b-hf","object":"model","created":1715644056,"owned_by":"vllm","root":"meta-llama/Llama-2-7b-hf","parent":null,"max_model_len":4096,"permission":[]},{"id":"sql-lora","object":"model","created":1715644056,"owned_by":"vllm","root":"/adapters/sql","parent":"meta-llama/Llama-2-7b-hf","max_model_len":null,"permission":[]}]}'}
- request: {method: POST, uri: "http://vllm:8000/v1/unload_lora_adapter", body: '{"lora_name":"sql-lora"}', headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [text/plain; charset=utf-8]}
    body: {string: "Success: LoRA adapter 'sql-lora' removed successfully."}
"#).unwrap()
}

#[tokio::test]
async fn lora_adapters_load_list_and_unload() {
    let server = ReplayServer::start(lora_cassette()).await.unwrap();
    let p = vllm(&server.url());
    let ctx = RequestContext::new();
    p.load_lora_adapter("sql-lora", "/adapters/sql", &ctx)
        .await
        .unwrap();
    let e = p
        .load_lora_adapter("sql-lora", "/adapters/sql", &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.to_string().contains("already been loaded"), "{e}");
    let adapters = p.lora_adapters(&ctx).await.unwrap();
    assert_eq!(adapters.len(), 1);
    assert_eq!(adapters[0].id, "sql-lora");
    assert_eq!(
        adapters[0].parent.as_deref(),
        Some("meta-llama/Llama-2-7b-hf")
    );
    p.unload_lora_adapter("sql-lora", &ctx).await.unwrap();
    server.verify().unwrap();
}

const METRICS: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4375
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12345.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 6789.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 42.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 88.5
python_info{implementation="CPython",major="3",minor="12",patchlevel="3",version="3.12.3"} 1.0
odd_label{text="a \"quoted\", back\\slash\nnewline"} NaN 1715644056000
"#;

#[tokio::test]
async fn metrics_are_parsed_into_a_typed_snapshot() {
    let yaml = format!(
        "interactions:\n- request: {{method: GET, uri: 'http://vllm:8000/metrics', body: null, headers: {{}}}}\n  response:\n    status: {{code: 200, message: OK}}\n    headers: {{content-type: ['text/plain; version=0.0.4; charset=utf-8']}}\n    body: {{string: {}}}\n",
        serde_json::to_string(METRICS).unwrap()
    );
    let server = ReplayServer::start(Cassette::from_yaml(&yaml).unwrap())
        .await
        .unwrap();
    let snap = vllm(&server.url())
        .metrics(&RequestContext::new())
        .await
        .unwrap();
    let m = snap.vllm();
    assert_eq!(m.requests_running, Some(2));
    assert_eq!(m.requests_waiting, Some(5));
    assert_eq!(m.kv_cache_usage, Some(0.4375));
    assert_eq!(m.prompt_tokens_total, Some(12345));
    assert_eq!(m.generation_tokens_total, Some(6789));
    assert_eq!(m.requests_finished_total, Some(42));
    assert_eq!(m.preemptions_total, None);
    let inf = snap
        .samples("vllm:e2e_request_latency_seconds_bucket")
        .find(|s| s.label("le") == Some("+Inf"))
        .unwrap();
    assert_eq!(inf.value, 42.0);
    let odd = snap.samples("odd_label").next().unwrap();
    assert_eq!(
        odd.label("text"),
        Some("a \"quoted\", back\\slash\nnewline")
    );
    assert!(odd.value.is_nan());
}

#[test]
fn malformed_metrics_are_decode_errors() {
    for bad in [
        "vllm:x{a=\"1\"} notanumber",
        "vllm:x{a=1} 2",
        "vllm:x{a=\"1} 2",
        "lonely",
    ] {
        let e = MetricsSnapshot::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "{bad}");
    }
    // the older name of the KV-cache gauge
    let snap = MetricsSnapshot::parse("vllm:gpu_cache_usage_perc 0.5\n").unwrap();
    assert_eq!(snap.vllm().kv_cache_usage, Some(0.5));
    // two engines: the fullest one's fraction, not a sum past 1
    let snap = MetricsSnapshot::parse(
        "vllm:kv_cache_usage_perc{engine=\"0\"} 0.6\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.7\n",
    )
    .unwrap();
    assert_eq!(snap.vllm().kv_cache_usage, Some(0.7));
}

#[tokio::test]
async fn simulator_conformance() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("sim-embed")
        .deterministic(true);
    let report = conformance::run(Arc::new(vllm(&sim.url())), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
}

#[tokio::test]
async fn live_health_and_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let p = vllm(&url);
    p.health(&RequestContext::new()).await.unwrap();
    // llama.cpp ignores the requested tool choice for this model's template
    let cfg = SuiteConfig::new("smollm2").with_tools(false);
    let report = conformance::run(Arc::new(p), &cfg).await;
    report.assert_ok();
}

#[test]
fn a_host_named_v1_is_a_host_not_a_version_suffix() {
    // only a `/v1` path segment after the host is stripped from the base URL
    let debug = format!("{:?}", vllm("http://v1:8000"));
    assert!(debug.contains("http://v1:8000"), "{debug}");
    let debug = format!("{:?}", vllm("http://v1"));
    assert!(debug.contains("http://v1"), "{debug}");
}
