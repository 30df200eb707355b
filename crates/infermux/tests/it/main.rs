//! The facade's client against the testkit simulator: typed calls, counters that add up, the
//! call deadline, and cancelled streams.

mod config;
mod extras;
mod llama;
#[cfg(feature = "full")]
mod ops;
mod routing;
mod s3;
mod send;
#[cfg(feature = "full")]
mod signer;

use std::time::Duration;

use futures_util::StreamExt;
use infermux::openai_compat::OpenAiCompat;
use infermux::{
    ChatRequest, Client, EmbeddingRequest, EndpointConfig, ErrorKind, Message, RequestContext,
    StreamAccumulator,
};
use infermux_testkit::{Fault, FaultPlan, Simulator};

async fn setup() -> (Simulator, Client) {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider =
        OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
            .unwrap();
    (sim, Client::new(provider))
}

fn hello() -> ChatRequest {
    ChatRequest::new("sim-echo-1", vec![Message::user("hello world")])
}

#[tokio::test]
async fn typed_calls_and_counters_add_up() {
    let (sim, client) = setup().await;
    let r = client.chat(hello()).await.unwrap();
    assert_eq!(r.text(), "Echo: hello world");
    let s = client.stream_chat(hello()).await.unwrap();
    let streamed = StreamAccumulator::collect(s).await.unwrap();
    assert_eq!(streamed.text(), r.text());
    let e = client
        .embed(EmbeddingRequest::new("e", ["a", "b"]))
        .await
        .unwrap();
    assert_eq!(e.embeddings.len(), 2);
    assert_eq!(client.models().await.unwrap().models[0].id, sim.model());
    // one 503 is retried away; three exhaust the standard three attempts
    sim.push_fault(Fault::Unavailable);
    assert_eq!(
        client.chat(hello()).await.unwrap().text(),
        "Echo: hello world"
    );
    for _ in 0..3 {
        sim.push_fault(Fault::Unavailable);
    }
    let err = client.chat(hello()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(err.endpoint().unwrap().as_str(), "sim");
    let c = client.counters();
    assert_eq!(c.requests, 9);
    assert_eq!(c.retries, 3);
    assert_eq!(c.successes, 5);
    assert_eq!(c.failures(ErrorKind::Server), 4);
    assert!(
        client
            .prometheus()
            .contains("infermux_retries_total{endpoint=\"sim\"} 3")
    );
    assert_eq!(c.successes + c.failures_total(), c.requests);
    assert_eq!(c.in_flight, 0);
    assert!(c.tokens_in > 0 && c.tokens_out > 0);
    assert_eq!(c.latency.count, 9);
}

/// The typed calls are plain functions returning futures (not `async fn`s): a future made and
/// dropped unpolled sends nothing and leaves no count behind, and one awaited sends once.
#[tokio::test]
async fn typed_call_futures_do_nothing_until_polled() {
    let (sim, client) = setup().await;
    let unpolled = (
        client.chat(hello()),
        client.chat_with(hello(), RequestContext::new()),
        client.stream_chat(hello()),
        client.embed(EmbeddingRequest::new("e", ["a"])),
        client.complete(infermux::CompletionRequest::new("sim-echo-1", "hi")),
        client.models(),
    );
    tokio::task::yield_now().await;
    drop(unpolled);
    assert_eq!(sim.requests(), 0);
    assert_eq!(client.counters().requests, 0);
    let models = client.models();
    assert_eq!(sim.requests(), 0);
    assert_eq!(models.await.unwrap().models[0].id, sim.model());
    assert_eq!(sim.requests(), 1);
    assert_eq!(client.counters().requests, 1);
}

#[tokio::test]
async fn deadline_ends_a_stalled_stream_and_drops_count_as_cancelled() {
    let (sim, client) = setup().await;
    sim.push_fault(Fault::StallMidStream);
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(300));
    let mut s = client
        .stream(&infermux::Request::Chat(hello()), ctx)
        .await
        .unwrap();
    assert!(
        s.next().await.unwrap().is_ok(),
        "the first event arrives before the stall"
    );
    sim.wait_stalled(1).await;
    let e = loop {
        match s.next().await.unwrap() {
            Ok(_) => {} // the held Start, then the first content
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(s.next().await.is_none());
    sim.release_stalls();

    let mut s = client.stream_chat(hello()).await.unwrap();
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
    let c = client.counters();
    assert_eq!(c.failures(ErrorKind::Timeout), 1);
    assert_eq!(c.failures(ErrorKind::Cancelled), 1);
    assert_eq!(c.successes + c.failures_total(), c.requests);
}

#[tokio::test]
async fn builder_without_provider_is_a_config_error() {
    assert_eq!(
        Client::builder().build().unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn builder_with_a_nonsense_resilience_config_is_a_config_error() {
    use infermux::resilience::ResilienceConfig;
    use infermux::resilience::queue::QueueConfig;
    let provider =
        OpenAiCompat::new(EndpointConfig::new("sim", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    let err = Client::builder()
        .provider(provider)
        .resilience(
            ResilienceConfig::standard().with_queue(QueueConfig::standard().with_permits(0)),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn no_key_in_debug_of_config_client_or_error() {
    let key = "sk-facade-secret-0042";
    let cfg = EndpointConfig::new("k", "http://127.0.0.1:9/v1")
        .unwrap()
        .with_api_key(infermux::ApiKey::new(key));
    let client = Client::new(OpenAiCompat::new(cfg.clone()).unwrap());
    let err = client.chat(hello()).await.unwrap_err();
    for text in [
        format!("{cfg:?}"),
        format!("{client:?}"),
        format!("{err:?}"),
        err.to_string(),
    ] {
        assert!(!text.contains(key), "{text}");
    }
    assert_eq!(err.kind(), ErrorKind::Connect);
}
