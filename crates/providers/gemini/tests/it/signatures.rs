//! Thought signatures reach the caller and go back on the next turn, on recorded traffic: the
//! shared corpus's `llm-gemini/test_tools.yaml` (recorded from the real API: a streamed
//! function call with a `thoughtSignature`, then the turn answering it) is replayed, the
//! stream accumulated, and the next turn built from the accumulated message carries the
//! signature on its `functionCall` part, as the recorded second request did.

use infermux_core::{
    ChatRequest, ContentPart, EndpointConfig, Message, Provider, Request, RequestContext,
    StreamAccumulator, Tool,
};
use infermux_gemini::{Gemini, wire};
use infermux_testkit::helpers::shared_cassette;
use infermux_testkit::{ReplayServer, capture};
use serde_json::{Value, json};

use crate::{response_bytes, stream_chunks};

fn first_turn() -> ChatRequest {
    ChatRequest::new(
        "gemini-2.5-flash",
        vec![Message::user("Two names for a pet pelican")],
    )
    .with_tools(vec![Tool::new(
        "pelican_name_generator",
        "",
        json!({"type": "object", "properties": {}}),
    )])
    .with_extra(
        "generationConfig",
        json!({"thinkingConfig": {"includeThoughts": true}}),
    )
}

#[tokio::test]
async fn a_recorded_function_call_signature_goes_back_on_the_next_turn() {
    let Some(cassette) = shared_cassette("gemini/llm-gemini/test_tools.yaml") else {
        return;
    };
    // what was recorded: the signature on the streamed functionCall part, and the part the
    // client sent back in its second request
    let chunks = stream_chunks(&response_bytes(&cassette.interactions[0].response));
    let parts: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"].as_array())
        .flatten()
        .collect();
    let recorded_sig = parts
        .iter()
        .find_map(|p| {
            p.get("functionCall")
                .and(p["thoughtSignature"].as_str().map(str::to_owned))
        })
        .unwrap();
    let recorded_thought: String = parts
        .iter()
        .filter(|p| p["thought"] == true)
        .filter_map(|p| p["text"].as_str())
        .collect();
    let sent_back: Value = cassette.interactions[1].request.json().unwrap();
    let sent_part = &sent_back["contents"][1]["parts"][0];
    assert_eq!(sent_part["thoughtSignature"], recorded_sig.as_str());

    // the first turn streamed (a JSON-array stream: recorded without alt=sse)
    let mut first = cassette.clone();
    first.interactions.truncate(1);
    let server = ReplayServer::start(first).await.unwrap();
    let p = Gemini::new(EndpointConfig::new("replay", format!("{}/v1beta", server.url())).unwrap())
        .unwrap()
        .with_sse(false);
    let stream = p
        .stream(&Request::Chat(first_turn()), &RequestContext::new())
        .await
        .unwrap();
    let answer = StreamAccumulator::collect(stream).await.unwrap();
    server.verify().unwrap();
    assert_eq!(
        answer.message.content,
        [ContentPart::Thinking {
            text: recorded_thought,
            signature: None
        }]
    );
    let call = answer.tool_calls()[0].clone();
    assert_eq!(call.name, "pelican_name_generator");
    assert_eq!(call.signature.as_deref(), Some(recorded_sig.as_str()));

    // the next turn, answering the call, on the wire
    let mut next = first_turn();
    next.messages.push(answer.message.clone());
    next.messages.push(Message::tool_result(
        call.id.clone(),
        r#"{"output": "Charles"}"#,
    ));
    let (url, seen) = capture(r#"{"candidates":[]}"#).await;
    let _ = Gemini::new(EndpointConfig::new("capture", format!("{url}/v1beta")).unwrap())
        .unwrap()
        .with_sse(false)
        .stream(&Request::Chat(next.clone()), &RequestContext::new())
        .await;
    let body = seen.await.unwrap().json().unwrap();
    assert_eq!(body, wire::generate_body(&next));
    let model_turn = &body["contents"][1];
    assert_eq!(model_turn["role"], "model");
    let call_part = model_turn["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    // as the recorded client sent it: the same call, the same signature on its part
    assert_eq!(call_part["thoughtSignature"], sent_part["thoughtSignature"]);
    assert_eq!(
        call_part["functionCall"]["name"],
        sent_part["function_call"]["name"]
    );
    assert_eq!(
        call_part["functionCall"]["args"],
        sent_part["function_call"]["args"]
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["response"]["output"],
        "Charles"
    );
}

#[test]
fn a_signature_on_a_text_part_goes_back_on_that_part() {
    let chunk = r#"{"candidates": [{"content": {"parts": [{"text": "Charles and Sammy.", "thoughtSignature": "Ct0B"}], "role": "model"}, "finishReason": "STOP"}]}"#;
    let answer = wire::parse_generate(chunk.as_bytes()).unwrap();
    let mut next = ChatRequest::new("gemini-2.5-flash", vec![Message::user("Names?")]);
    next.messages.push(answer.message);
    next.messages.push(Message::user("More?"));
    let body = wire::generate_body(&next);
    assert_eq!(
        body["contents"][1]["parts"],
        json!([{"text": "Charles and Sammy.", "thoughtSignature": "Ct0B"}])
    );
}
