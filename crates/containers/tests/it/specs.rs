//! The backends' command lines, with the flags their projects document, and the specs'
//! validation.

use infermux_containers::{
    Error, Gpus, LlamaCppSpec, OvmsSpec, Quantize, ServerSpec, TeiSpec, TgiSpec, VllmSpec, Volume,
};

fn cmd(spec: &ServerSpec) -> String {
    spec.command_line().join(" ")
}

#[test]
fn tgi_writes_its_launcher_flags_and_is_ready_on_health() {
    let spec = TgiSpec::new("HuggingFaceTB/SmolLM2-135M-Instruct")
        .port(3001)
        .max_input_length(1024)
        .max_total_tokens(2048)
        .quantize(Quantize::BitsandbytesNf4)
        .server_spec("tgi")
        .unwrap();
    assert_eq!(
        cmd(&spec),
        "text-generation-launcher --model-id HuggingFaceTB/SmolLM2-135M-Instruct --hostname 127.0.0.1 \
         --port 3001 \
         --max-input-tokens 1024 --max-total-tokens 2048 --quantize bitsandbytes-nf4"
    );
    assert_eq!(spec.readiness, "/health");
    assert_eq!(spec.base_url(), "http://127.0.0.1:3001");
    // in a container: every interface of the container (its port publishes on the loopback)
    assert!(
        spec.entrypoint_args()
            .join(" ")
            .contains("--hostname 0.0.0.0 --port 3001"),
        "{:?}",
        spec.entrypoint_args()
    );
    assert!(
        spec.image
            .as_deref()
            .unwrap()
            .starts_with("ghcr.io/huggingface/text-generation-inference")
    );
    let e = TgiSpec::new("m")
        .max_input_length(10)
        .max_total_tokens(10)
        .server_spec("tgi")
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(matches!(
        TgiSpec::new("").server_spec("tgi"),
        Err(Error::Config(_))
    ));
}

#[test]
fn tei_writes_its_router_flags_only_when_set() {
    let plain = TeiSpec::new("BAAI/bge-small-en-v1.5")
        .server_spec("tei")
        .unwrap();
    assert_eq!(
        cmd(&plain),
        "text-embeddings-router --model-id BAAI/bge-small-en-v1.5 --hostname 127.0.0.1 --port 3000"
    );
    let tuned = TeiSpec::new("BAAI/bge-small-en-v1.5")
        .port(3002)
        .max_client_batch_size(64)
        .max_batch_tokens(8192)
        .server_spec("tei")
        .unwrap();
    assert_eq!(
        cmd(&tuned),
        "text-embeddings-router --model-id BAAI/bge-small-en-v1.5 --hostname 127.0.0.1 --port 3002 \
         --max-client-batch-size 64 --max-batch-tokens 8192"
    );
    assert_eq!(tuned.readiness, "/health");
    assert!(
        tuned
            .entrypoint_args()
            .join(" ")
            .contains("--hostname 0.0.0.0")
    );
    assert!(matches!(
        TeiSpec::new("m").max_batch_tokens(0).server_spec("tei"),
        Err(Error::Config(_))
    ));
}

#[test]
fn vllm_serves_the_model_positionally_and_in_a_container_by_flag_with_its_lora_modules() {
    let spec = VllmSpec::new("meta-llama/Llama-3.2-1B")
        .lora_module("sql", "/adapters/sql")
        .lora_module("chat", "/adapters/chat")
        .server_spec("vllm")
        .unwrap();
    assert_eq!(
        cmd(&spec),
        "vllm serve meta-llama/Llama-3.2-1B --host 127.0.0.1 --port 8000 --enable-lora --lora-modules \
         sql=/adapters/sql chat=/adapters/chat"
    );
    assert_eq!(
        spec.entrypoint_args().join(" "),
        "--model meta-llama/Llama-3.2-1B --host 0.0.0.0 --port 8000 --enable-lora --lora-modules \
         sql=/adapters/sql chat=/adapters/chat"
    );
    assert_eq!(spec.readiness, "/health");
    let plain = VllmSpec::new("m").enable_lora().server_spec("v").unwrap();
    assert_eq!(
        cmd(&plain),
        "vllm serve m --host 127.0.0.1 --port 8000 --enable-lora"
    );
    assert!(matches!(
        VllmSpec::new("m").lora_module("a=b", "/p").server_spec("v"),
        Err(Error::Config(_))
    ));
}

#[test]
fn ovms_takes_a_config_file_or_one_model_and_is_ready_on_the_kserve_route() {
    let one = OvmsSpec::model("/models/resnet", "resnet")
        .rest_port(8001)
        .grpc_port(9001)
        .server_spec("ovms")
        .unwrap();
    assert_eq!(
        cmd(&one),
        "ovms --rest_bind_address 127.0.0.1 --rest_port 8001 --port 9001 --model_path /models/resnet --model_name resnet"
    );
    assert_eq!(one.readiness, "/v2/health/ready");
    assert!(
        one.entrypoint_args()
            .join(" ")
            .contains("--rest_bind_address 0.0.0.0")
    );
    let many = OvmsSpec::config("/models/config.json")
        .server_spec("ovms")
        .unwrap();
    assert_eq!(
        cmd(&many),
        "ovms --rest_bind_address 127.0.0.1 --rest_port 8000 --config_path /models/config.json"
    );
    assert!(matches!(
        OvmsSpec::model("/m", "m")
            .rest_port(9000)
            .grpc_port(9000)
            .server_spec("o"),
        Err(Error::Config(_))
    ));
}

#[test]
fn llama_server_writes_its_flags_and_listens_on_every_interface_in_a_container() {
    let spec = LlamaCppSpec::new("/models/m.gguf")
        .port(18099)
        .embeddings()
        .ctx_size(2048)
        .alias("smollm2")
        .server_spec("llama")
        .unwrap();
    assert_eq!(
        cmd(&spec),
        "llama-server -m /models/m.gguf --host 127.0.0.1 --port 18099 --embeddings --ctx-size \
         2048 --alias smollm2"
    );
    assert_eq!(
        spec.entrypoint_args().join(" "),
        "-m /models/m.gguf --host 0.0.0.0 --port 18099 --embeddings --ctx-size 2048 --alias \
         smollm2"
    );
    assert_eq!(spec.readiness, "/health");
    assert_eq!(spec.base_url(), "http://127.0.0.1:18099");
}

#[test]
fn a_spec_refuses_a_bad_name_port_or_route_and_a_process_sees_its_gpus() {
    assert!(matches!(
        ServerSpec::new("a/b", "x", 1, "/"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        ServerSpec::new("a", "", 1, "/"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        ServerSpec::new("a", "x", 0, "/"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        ServerSpec::new("a", "x", 1, "health"),
        Err(Error::Config(_))
    ));
    let spec = ServerSpec::new("a", "x", 1, "/health")
        .unwrap()
        .with_wrapper(["chroot", "/root"])
        .with_args(["--flag"])
        .with_gpus(Gpus::Count(2))
        .with_env("A", "1")
        .with_volume(Volume::new("/cache", "/data").read_only());
    assert_eq!(spec.command_line(), ["chroot", "/root", "x", "--flag"]);
    assert_eq!(
        spec.process_env(),
        [
            ("A".into(), "1".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0,1".into())
        ]
    );
    assert_eq!(spec.volumes[0].bind(), "/cache:/data:ro");
}

/// A llama.cpp server on an IPv6 address is probed at a URL with the address in brackets, and
/// one on every IPv6 interface at `::1` (it waited out its whole ready timeout, then was
/// stopped: `http://::1:8080` is no URL).
#[test]
fn llama_on_ipv6_is_probed_at_a_bracketed_url() {
    let url = |host: &str| {
        LlamaCppSpec::new("/models/m.gguf")
            .host(host)
            .server_spec("llama")
            .unwrap()
            .base_url()
    };
    assert_eq!(
        url("::1"),
        format!("http://[::1]:{}", LlamaCppSpec::DEFAULT_PORT)
    );
    assert_eq!(
        url("::"),
        format!("http://[::1]:{}", LlamaCppSpec::DEFAULT_PORT)
    );
    assert_eq!(
        url("0.0.0.0"),
        format!("http://127.0.0.1:{}", LlamaCppSpec::DEFAULT_PORT)
    );
    assert_eq!(
        url("10.0.0.2"),
        format!("http://10.0.0.2:{}", LlamaCppSpec::DEFAULT_PORT)
    );
}
