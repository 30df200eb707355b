//! Thinking signatures reach the caller and go back on the next turn: a recorded streamed
//! answer with extended thinking (from the shared corpus, recorded from the real API) and the
//! crate's own written stream with a signed thinking block, a redacted one and a tool call are
//! replayed, accumulated, and the next turn built from the accumulated message carries the
//! signature and the redacted data on the wire.

use infermux_anthropic::{Anthropic, wire};
use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, EndpointConfig, Message, Provider, Request,
    RequestContext, StreamAccumulator, Tool,
};
use infermux_testkit::helpers::shared_cassette;
use infermux_testkit::{Cassette, ReplayServer, capture};
use serde_json::{Value, json};

use crate::{fixture, response_bytes};

/// The `(thinking, signature)` of every thinking block of a recorded SSE body, read naively.
fn recorded_thinking(body: &[u8]) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in String::from_utf8_lossy(body).lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let v: Value = serde_json::from_str(data.trim()).unwrap();
        match (v["type"].as_str(), v["delta"]["type"].as_str()) {
            (Some("content_block_start"), _) if v["content_block"]["type"] == "thinking" => {
                blocks.push((String::new(), String::new()));
            }
            (_, Some("thinking_delta")) => {
                blocks.last_mut().unwrap().0 += v["delta"]["thinking"].as_str().unwrap();
            }
            (_, Some("signature_delta")) => {
                blocks.last_mut().unwrap().1 += v["delta"]["signature"].as_str().unwrap();
            }
            _ => {}
        }
    }
    blocks
}

/// The answer `p` accumulates from its stream for `req`, once `server` has served every
/// interaction.
async fn streamed(p: &Anthropic, req: &ChatRequest, server: &ReplayServer) -> ChatResponse {
    let stream = p
        .stream(&Request::Chat(req.clone()), &RequestContext::new())
        .await
        .unwrap();
    let answer = StreamAccumulator::collect(stream).await.unwrap();
    server.verify().unwrap();
    answer
}

/// Sends `req` streamed to a capture server and returns the JSON body that went on the wire.
async fn next_turn_on_the_wire(req: ChatRequest, beta_query: bool) -> Value {
    let (url, seen) = capture(r#"{"type":"message","content":[]}"#).await;
    let p = Anthropic::new(EndpointConfig::new("capture", format!("{url}/v1")).unwrap())
        .unwrap()
        .with_beta_query(beta_query);
    // the capture server's answer is not a stream: only what was sent matters here
    let _ = p.stream(&Request::Chat(req), &RequestContext::new()).await;
    seen.await.unwrap().json().unwrap()
}

#[tokio::test]
async fn a_recorded_thinking_signature_goes_back_on_the_next_turn() {
    let Some(cassette) =
        shared_cassette("anthropic/pydantic-ai/test_anthropic_model_thinking_part_stream.yaml")
    else {
        return;
    };
    let recorded = recorded_thinking(&response_bytes(&cassette.interactions[0].response));
    assert_eq!(recorded.len(), 1);
    assert!(!recorded[0].1.is_empty(), "the recording has a signature");
    let server = ReplayServer::start(cassette).await.unwrap();
    let p = Anthropic::new(EndpointConfig::new("replay", format!("{}/v1", server.url())).unwrap())
        .unwrap()
        .with_beta_query(true);
    let ask = Message::user("How do I cross the street?");
    let req = wire::with_thinking(
        ChatRequest::new("claude-sonnet-4-0", vec![ask.clone()]).with_max_tokens(4096),
        1024,
    );
    let answer = streamed(&p, &req, &server).await;
    assert_eq!(
        answer.message.content[0],
        ContentPart::Thinking {
            text: recorded[0].0.clone(),
            signature: Some(recorded[0].1.clone()),
        }
    );

    let mut next = req;
    next.messages = vec![ask, answer.message, Message::user("And at night?")];
    let body = next_turn_on_the_wire(next, true).await;
    let assistant = &body["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0],
        json!({"type": "thinking", "thinking": recorded[0].0, "signature": recorded[0].1})
    );
}

#[tokio::test]
async fn a_streamed_tool_call_with_thinking_round_trips_signature_and_redacted_data() {
    let server = ReplayServer::start(Cassette::load(fixture("thinking_tool_use.yaml")).unwrap())
        .await
        .unwrap();
    let p = crate::provider(&format!("{}/v1", server.url()));
    let ask = Message::user("What is the weather in Paris?");
    let req = wire::with_thinking(
        ChatRequest::new("claude-sonnet-4-5", vec![ask.clone()]).with_tools(vec![Tool::new(
            "get_weather",
            "Current weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )]),
        2048,
    );
    let answer = streamed(&p, &req, &server).await;
    let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
    let redacted = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP";
    assert_eq!(
        answer.message.content,
        [
            ContentPart::Thinking {
                text: "The user wants the weather; I should call get_weather.".into(),
                signature: Some(signature.into()),
            },
            ContentPart::RedactedThinking {
                data: redacted.into()
            },
        ]
    );
    let call = &answer.tool_calls()[0];
    assert_eq!(call.arguments, r#"{"city": "Paris"}"#);

    let mut next = req;
    next.messages = vec![
        ask,
        answer.message.clone(),
        Message::tool_result(call.id.clone(), r#"{"temperature": 18}"#),
    ];
    let body = next_turn_on_the_wire(next, false).await;
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants the weather; I should call get_weather.", "signature": signature},
            {"type": "redacted_thinking", "data": redacted},
            {"type": "tool_use", "id": "toolu_01Weather", "name": "get_weather", "input": {"city": "Paris"}},
        ])
    );
    assert_eq!(
        body["messages"][2]["content"][0]["tool_use_id"],
        "toolu_01Weather"
    );
}
