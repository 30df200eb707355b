//! TGI's messages API answers tool calls with numeric ids (`"id": 0`) and arguments as a JSON
//! object: they decode, plain and streamed in any chunking, on the crate's own written
//! cassette (`tests/fixtures/tool_calls_numeric_ids.yaml`, shaped after TGI 2.0's answers).

use std::path::PathBuf;

use infermux_core::{
    ChatRequest, Message, Provider, Request, RequestContext, Response, StreamAccumulator, Tool,
};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer};
use serde_json::json;

use crate::tgi;

fn interaction(i: usize) -> Cassette {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tool_calls_numeric_ids.yaml");
    let mut c = Cassette::load(path).unwrap();
    c.interactions = vec![c.interactions.remove(i)];
    c
}

fn request() -> Request {
    Request::Chat(
        ChatRequest::new("tgi", vec![Message::user("Weather in Brooklyn?")]).with_tools(vec![
            Tool::new(
                "get_current_weather",
                "Current weather",
                json!({"type": "object", "properties": {"location": {"type": "string"}, "format": {"type": "string"}}}),
            ),
        ]),
    )
}

#[tokio::test]
async fn a_tool_call_with_a_numeric_id_decodes() {
    let r = answer_of(interaction(0)).await;
    // TGI's own `eos_token` on a tool call's answer: tool calls (it was an unknown reason)
    assert_eq!(
        r.finish_reason,
        Some(infermux_core::FinishReason::ToolCalls)
    );
    let call = &r.tool_calls()[0];
    assert_eq!(call.id, "0");
    assert_eq!(call.name, "get_current_weather");
    assert_eq!(
        call.parsed_arguments().unwrap(),
        json!({"format": "celsius", "location": "Brooklyn, NY"})
    );
    // and the id goes back on the tool result as text
    let mut next = ChatRequest::new("tgi", vec![Message::user("Weather in Brooklyn?")]);
    next.messages.push(r.message.clone());
    next.messages
        .push(Message::tool_result(call.id.clone(), "18C"));
    let body = infermux_openai_compat::wire::chat_body(&next, false);
    assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "0");
    assert_eq!(body["messages"][2]["tool_call_id"], "0");
}

#[tokio::test]
async fn a_streamed_tool_call_with_numeric_ids_decodes_in_any_chunking() {
    for chunk in [None, Some(1), Some(13), Some(300)] {
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(interaction(1), opts)
            .await
            .unwrap();
        let stream = tgi(&server.url())
            .stream(&request(), &RequestContext::new())
            .await
            .unwrap();
        let r = StreamAccumulator::collect(stream).await.unwrap();
        server.verify().unwrap();
        assert_eq!(
            r.finish_reason,
            Some(infermux_core::FinishReason::ToolCalls),
            "{chunk:?}"
        );
        let call = &r.tool_calls()[0];
        assert_eq!(call.id, "0", "{chunk:?}");
        assert_eq!(call.name, "get_current_weather");
        assert_eq!(
            call.parsed_arguments().unwrap(),
            json!({"format": "celsius", "location": "Brooklyn, NY"})
        );
    }
}

/// TGI 3.x finishes a tool call's answer with `stop` (its server's own snapshot
/// `test_tools_llama_test_flash_llama_grammar_tools_nostream`, 3.1.2): tool calls, as TGI 2.0's
/// `eos_token` on the same answer reads (it was a stop: a caller checking the finish reason
/// for tool calls missed them).
#[tokio::test]
async fn tgi_3_s_stop_with_tool_calls_finishes_with_tool_calls() {
    let body = r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"location\":\"Brooklyn, NY\",\"format\":\"fahrenheit\"}","description":null,"name":"get_current_weather"},"id":"0","type":"function"}]}}],"created":1741372335,"id":"","model":"meta-llama/Llama-3.1-8B-Instruct","object":"chat.completion","system_fingerprint":"3.1.2-dev0-native","usage":{"completion_tokens":29,"prompt_tokens":501,"total_tokens":530}}"#;
    let r = answer_to(body).await;
    assert_eq!(
        r.finish_reason,
        Some(infermux_core::FinishReason::ToolCalls)
    );
    assert_eq!(r.tool_calls()[0].name, "get_current_weather");
    // with no tool call, `stop` stays a stop
    let plain = body.replace(
        r#""content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"location\":\"Brooklyn, NY\",\"format\":\"fahrenheit\"}","description":null,"name":"get_current_weather"},"id":"0","type":"function"}]"#,
        r#""content":"Hi","role":"assistant""#,
    );
    assert_ne!(plain, body);
    let r = answer_to(&plain).await;
    assert_eq!(r.finish_reason, Some(infermux_core::FinishReason::Stop));
}

/// The chat answer decoded from `body` served as a Messages API answer.
async fn answer_to(body: &str) -> infermux_core::ChatResponse {
    answer_of(crate::cassette(&[(
        "POST",
        "/v1/chat/completions",
        200,
        "application/json",
        body,
    )]))
    .await
}

/// The chat answer to [`request`] replayed from `cassette` (every interaction of it used).
async fn answer_of(cassette: Cassette) -> infermux_core::ChatResponse {
    let server = ReplayServer::start(cassette).await.unwrap();
    let Response::Chat(r) = tgi(&server.url())
        .call(&request(), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not chat")
    };
    server.verify().unwrap();
    r
}

/// TGI's message is either content or tool calls (`MessageBody` in its OpenAPI: `oneOf`, read
/// content first): an assistant turn with both — another provider's "Let me check." before
/// its call, after a fallback — was read as text and its call lost. The call is sent, its
/// words left out; a turn of text alone is unchanged.
#[test]
fn an_assistant_turn_with_text_and_calls_is_sent_as_its_calls() {
    let mut turn = Message::assistant_tool_calls(vec![infermux_core::ToolCall::new(
        "toolu_1",
        "get_current_weather",
        r#"{"location":"Paris"}"#,
    )]);
    turn.content = vec![infermux_core::ContentPart::text("Let me check.")];
    let req = ChatRequest::new(
        "tgi",
        vec![
            Message::user("Weather in Paris?"),
            turn,
            Message::tool_result("toolu_1", "18C"),
            Message::assistant("It is 18C."),
        ],
    );
    let body = infermux_hf_tgi::messages_body(&req, false);
    let m = &body["messages"][1];
    assert_eq!(
        m["tool_calls"][0]["function"]["name"],
        "get_current_weather"
    );
    assert!(m.get("content").is_none(), "{m}");
    assert_eq!(body["messages"][3]["content"], "It is 18C.");
}
