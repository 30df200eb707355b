//! A conversation that moves between providers (a fallback): each provider's answer says
//! whose signed or opaque data it carries (`Message::signer`), plain or streamed, and another
//! provider leaves that data out — Anthropic refuses a signature it did not make, and a
//! model's private reasoning is not part of the conversation for another.

use infermux::anthropic::wire as anthropic;
use infermux::gemini::wire as gemini;
use infermux::{ChatRequest, ContentPart, Message, Signer, StreamAccumulator, StreamEvent};

/// A Gemini 2.5 answer: a thought summary, and the text with its thought signature.
const GEMINI_ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Weighing the options","thought":true},{"text":"Paris.","thoughtSignature":"CiQBcsjafGeminiSig"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2,"totalTokenCount":7}}"#;

/// An Anthropic answer with extended thinking: a signed thinking block and the text.
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"Let me think.","signature":"EqQBAnthropicSig"},{"type":"text","text":"Rome."}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":9}}"#;

fn next_turn(answer: Message) -> ChatRequest {
    ChatRequest::new(
        "m",
        vec![
            Message::user("capital of france?"),
            answer,
            Message::user("and of italy?"),
        ],
    )
}

#[test]
fn answers_say_whose_data_they_carry_plain_and_streamed() {
    let plain = gemini::parse_generate(GEMINI_ANSWER.as_bytes()).unwrap();
    assert_eq!(plain.message.signer, Some(Signer::Gemini));
    let mut st = gemini::GenerateState::new();
    let mut events = st.on_chunk(GEMINI_ANSWER).unwrap();
    events.extend(st.on_end().unwrap());
    let at = events
        .iter()
        .position(|e| matches!(e, StreamEvent::SignedBy { .. }))
        .expect("a SignedBy event");
    assert!(
        events[at + 1].carries_provider_data(),
        "right before the first signature"
    );
    let mut acc = StreamAccumulator::new();
    events.iter().for_each(|e| acc.push(e));
    assert_eq!(acc.finish().message, plain.message, "streamed as plain");

    let plain = anthropic::parse_chat(ANTHROPIC_ANSWER.as_bytes()).unwrap();
    assert_eq!(plain.message.signer, Some(Signer::Anthropic));
    let mut st = anthropic::ChatStreamState::new();
    let mut acc = StreamAccumulator::new();
    for (event, data) in [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBAnthropicSig"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Rome."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ] {
        st.on_event(Some(event), data)
            .unwrap()
            .iter()
            .for_each(|e| acc.push(e));
    }
    assert_eq!(acc.finish().message.signer, Some(Signer::Anthropic));
    // an answer with nothing signed names no signer (nothing to leave out)
    let bare = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}"#;
    assert_eq!(
        gemini::parse_generate(bare.as_bytes())
            .unwrap()
            .message
            .signer,
        None
    );
}

#[test]
fn a_fallback_leaves_the_other_providers_reasoning_and_signatures_out() {
    // Gemini's turn, sent to Anthropic: no thinking block with Gemini's signature
    let from_gemini = gemini::parse_generate(GEMINI_ANSWER.as_bytes())
        .unwrap()
        .message;
    let body = anthropic::chat_body(&next_turn(from_gemini.clone()), false);
    let turn = &body["messages"][1]["content"];
    assert_eq!(turn.as_array().map(Vec::len), Some(1), "{body:#}");
    assert_eq!(
        (&turn[0]["type"], &turn[0]["text"]),
        (&"text".into(), &"Paris.".into())
    );
    assert!(!body.to_string().contains("GeminiSig"));
    // ... and back to Gemini, its own turn keeps its signature
    let body = gemini::generate_body(&next_turn(from_gemini));
    assert!(body.to_string().contains("CiQBcsjafGeminiSig"), "{body:#}");

    // Anthropic's turn, sent to Gemini: no thought part with Anthropic's signature
    let from_claude = anthropic::parse_chat(ANTHROPIC_ANSWER.as_bytes())
        .unwrap()
        .message;
    let body = gemini::generate_body(&next_turn(from_claude.clone()));
    let parts = &body["contents"][1]["parts"];
    assert_eq!(parts.as_array().map(Vec::len), Some(1), "{body:#}");
    assert_eq!(parts[0]["text"], "Rome.");
    assert!(!body.to_string().contains("AnthropicSig"), "{body:#}");
    // ... and back to Anthropic, its own turn keeps its thinking block
    let body = anthropic::chat_body(&next_turn(from_claude), false);
    assert_eq!(
        body["messages"][1]["content"][0]["signature"],
        "EqQBAnthropicSig"
    );

    // a history whose signer is not known is sent as it is (as before)
    let mut unknown = Message::assistant("Paris.");
    unknown.content.insert(
        0,
        ContentPart::Thinking {
            text: "hmm".into(),
            signature: Some("EqQBAnthropicSig".into()),
        },
    );
    let body = anthropic::chat_body(&next_turn(unknown), false);
    assert_eq!(body["messages"][1]["content"][0]["type"], "thinking");
}

/// An OpenAI Responses answer with an item only OpenAI reads back (a web search call, kept
/// whole) names OpenAI as its signer, plain and streamed; a conversation going on with
/// Anthropic leaves the item out (it went as a raw block, which Anthropic refuses).
#[test]
fn a_responses_answer_with_opaque_items_names_openai_and_anthropic_leaves_them_out() {
    use infermux::openai::responses;
    const ANSWER: &str = r#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"capital of france"}},{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Paris.","annotations":[]}]}],"usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}}"#;
    let plain = responses::parse_response(ANSWER.as_bytes()).unwrap();
    assert_eq!(plain.message.signer, Some(Signer::OpenAi));
    assert!(
        plain
            .message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::Other { .. }))
    );
    let mut st = responses::ResponsesStreamState::new();
    let mut acc = StreamAccumulator::new();
    for data in [
        r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-4.1","status":"in_progress","output":[]}}"#,
        r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"capital of france"}}}"#,
        r#"{"type":"response.output_text.delta","output_index":1,"content_index":0,"delta":"Paris."}"#,
        &format!(r#"{{"type":"response.completed","response":{ANSWER}}}"#),
    ] {
        st.on_event(None, data)
            .unwrap()
            .iter()
            .for_each(|e| acc.push(e));
    }
    let streamed = acc.finish().message;
    assert_eq!(streamed.signer, Some(Signer::OpenAi));
    // and Anthropic leaves the web search item out, the text goes
    let body = anthropic::chat_body(&next_turn(plain.message), false);
    let turn = &body["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert!(!turn.to_string().contains("web_search_call"), "{turn}");
    assert!(turn.to_string().contains("Paris."), "{turn}");
    // an answer with text only names no signer
    let bare = r#"{"id":"r","object":"response","status":"completed","model":"m","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi"}]}]}"#;
    assert_eq!(
        responses::parse_response(bare.as_bytes())
            .unwrap()
            .message
            .signer,
        None
    );
}
