//! TGI's own routes on small cassettes shaped like its answers: `/generate_stream` with special
//! tokens, `/info`, `/health`, `/metrics`, and chat rendered with a prompt format for a server
//! without the messages API.

use infermux_core::{
    ChatRequest, CompletionRequest, FinishReason, Message, Provider, Request, RequestContext,
    Response, StreamAccumulator,
};
use infermux_hf_tgi::PromptFormat;
use infermux_testkit::ReplayServer;
use serde_json::json;

use crate::{cassette, sse, tgi};

fn stream_body() -> String {
    sse(&[
        json!({"index":1,"token":{"id":415,"text":" Deep","logprob":-0.1,"special":false},"generated_text":null,"details":null}),
        json!({"index":2,"token":{"id":5168,"text":" learning","logprob":-0.2,"special":false},"generated_text":null,"details":null}),
        json!({"index":3,"token":{"id":2,"text":"</s>","logprob":-0.3,"special":true},"generated_text":" Deep learning","details":{"finish_reason":"eos_token","generated_tokens":3,"input_length":7,"seed":null}}),
    ])
}

#[tokio::test]
async fn generate_stream_tokens_end_with_generated_text_and_details() {
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate_stream",
        200,
        "text/event-stream",
        &stream_body(),
    )]))
    .await
    .unwrap();
    let req = Request::Completion(CompletionRequest::new("tgi", "What is"));
    let s = tgi(&server.url())
        .stream(&req, &RequestContext::new())
        .await
        .unwrap();
    let r = StreamAccumulator::collect(s).await.unwrap();
    assert_eq!(r.text(), " Deep learning");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (7, 3));
    server.verify().unwrap();
}

#[tokio::test]
async fn info_health_and_metrics() {
    let info = r#"{"model_id":"bigscience/bloom-560m","model_sha":"e985a63cdc139290c5f700ff1929f0b5942cced2","model_pipeline_tag":"text-generation","max_concurrent_requests":128,"max_best_of":2,"max_stop_sequences":4,"max_input_tokens":1024,"max_total_tokens":2048,"validation_workers":2,"max_client_batch_size":4,"router":"text-generation-router","version":"3.0.0","sha":null,"docker_label":null}"#;
    let metrics = "# TYPE tgi_queue_size gauge\ntgi_queue_size 2\n# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 5\ntgi_batch_current_max_tokens 4096\n# TYPE tgi_request_count counter\ntgi_request_count 17\ntgi_request_success 15\n";
    let server = ReplayServer::start(cassette(&[
        ("GET", "/health", 200, "text/plain", ""),
        ("GET", "/info", 200, "application/json", info),
        ("GET", "/metrics", 200, "text/plain; version=0.0.4", metrics),
    ]))
    .await
    .unwrap();
    let p = tgi(&server.url());
    let ctx = RequestContext::new();
    p.health(&ctx).await.unwrap();
    let i = p.info(&ctx).await.unwrap();
    assert_eq!(i.model_id, "bigscience/bloom-560m");
    assert_eq!(i.max_input_tokens, Some(1024));
    let m = p.metrics(&ctx).await.unwrap();
    assert_eq!(m.queue_size, Some(2.0));
    assert_eq!(m.batch_current_size, Some(5.0));
    assert_eq!(m.request_count, Some(17.0));
    assert_eq!(m.request_failure, None);
    server.verify().unwrap();
}

#[tokio::test]
async fn chat_without_a_messages_api_uses_the_prompt_format() {
    let body = r#"{"generated_text":"Paris.","details":{"finish_reason":"stop_sequence","generated_tokens":3,"seed":null,"prefill":[],"tokens":[]}}"#;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate",
        200,
        "application/json",
        body,
    )]))
    .await
    .unwrap();
    let p = tgi(&server.url()).with_prompt_format(PromptFormat::ChatMl);
    let req = Request::Chat(ChatRequest::new(
        "tgi",
        vec![
            Message::system("Be brief."),
            Message::user("Capital of France?"),
        ],
    ));
    let Response::Chat(r) = p.call(&req, &RequestContext::new()).await.unwrap() else {
        panic!("not chat")
    };
    assert_eq!(r.text(), "Paris.");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    let Request::Chat(c) = &req else {
        unreachable!()
    };
    let (prompt, stop) = PromptFormat::ChatMl.render(c);
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(stop, "<|im_end|>");
    let (plain, _) = PromptFormat::Plain.render(c);
    assert_eq!(
        plain,
        "System: Be brief.\nUser: Capital of France?\nAssistant:"
    );
    server.verify().unwrap();
}

fn token(text: &str, last: Option<(&str, &str)>) -> serde_json::Value {
    let (generated, details) = match last {
        Some((text, reason)) => (
            json!(text),
            json!({"finish_reason": reason, "generated_tokens": 5, "input_length": 9, "seed": null}),
        ),
        None => (json!(null), json!(null)),
    };
    json!({"index":1,"token":{"id":1,"text":text,"logprob":-0.1,"special":false},"generated_text":generated,"details":details})
}

/// The deltas a stream of `chunks` gives a request with stop sequences `stop`.
async fn streamed_deltas(chunks: &[serde_json::Value], stop: &[&str]) -> Vec<String> {
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate_stream",
        200,
        "text/event-stream",
        &sse(chunks),
    )]))
    .await
    .unwrap();
    let mut c = CompletionRequest::new("tgi", "Q: capital of France?");
    c.stop = stop.iter().map(|s| (*s).to_owned()).collect();
    let mut s = tgi(&server.url())
        .stream(&Request::Completion(c), &RequestContext::new())
        .await
        .unwrap();
    let mut deltas = Vec::new();
    while let Some(ev) = futures_util::StreamExt::next(&mut s).await {
        if let infermux_core::StreamEvent::TextDelta { text } = ev.unwrap() {
            deltas.push(text);
        }
    }
    server.verify().unwrap();
    deltas
}

#[tokio::test]
async fn the_stop_sequence_tgi_ends_with_is_left_out_of_answers_and_streams() {
    // chat rendered as a plain prompt: TGI's text ends with the `\nUser:` that stopped it
    let body = r#"{"generated_text":"Paris.\nUser:","details":{"finish_reason":"stop_sequence","generated_tokens":4,"seed":null,"prefill":[],"tokens":[]}}"#;
    let server = ReplayServer::start(cassette(&[
        ("POST", "/generate", 200, "application/json", body),
        ("POST", "/generate", 200, "application/json", body),
    ]))
    .await
    .unwrap();
    let p = tgi(&server.url()).with_prompt_format(PromptFormat::Plain);
    let chat = Request::Chat(ChatRequest::new("tgi", vec![Message::user("Capital?")]));
    let Response::Chat(r) = p.call(&chat, &RequestContext::new()).await.unwrap() else {
        panic!("not chat")
    };
    assert_eq!(r.text(), "Paris.");
    // a completion with the caller's own stop sequence
    let mut c = CompletionRequest::new("tgi", "Capital?");
    c.stop = vec!["\nUser:".into()];
    let Response::Completion(r) = p
        .call(&Request::Completion(c), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not a completion")
    };
    assert_eq!(r.text, "Paris.");
    server.verify().unwrap();

    // streamed, the stop sequence arrives in pieces and is never sent on
    let deltas = streamed_deltas(
        &[
            token("Paris", None),
            token(".", None),
            token("\n", None),
            token("User", None),
            token(":", Some(("Paris.\nUser:", "stop_sequence"))),
        ],
        &["\nUser:"],
    )
    .await;
    assert_eq!(deltas.concat(), "Paris.");
}

#[tokio::test]
async fn text_held_back_as_a_possible_stop_sequence_is_sent_when_it_is_not_one() {
    // `\nUs` could start `\nUser:`, then `ual` shows it does not
    let deltas = streamed_deltas(
        &[
            token("A", None),
            token("\n", None),
            token("Us", None),
            token("ual", None),
            token(".", Some(("A\nUsual.", "eos_token"))),
        ],
        &["\nUser:"],
    )
    .await;
    assert_eq!(deltas.concat(), "A\nUsual.");
    assert_eq!(
        deltas[0], "A",
        "text that cannot start a stop sequence goes on at once"
    );
    // a generation that ends for another reason on a possible start keeps it
    let deltas = streamed_deltas(
        &[token("B", None), token("\nUs", Some(("B\nUs", "length")))],
        &["\nUser:"],
    )
    .await;
    assert_eq!(deltas.concat(), "B\nUs");
    // without stop sequences every token goes on as it came
    let deltas = streamed_deltas(
        &[
            token("\n", None),
            token("User:", Some(("\nUser:", "eos_token"))),
        ],
        &[],
    )
    .await;
    assert_eq!(deltas, ["\n", "User:"]);
}

/// A chat rendered as a prompt cannot carry an image: it is refused (`Unsupported`) before
/// anything is sent, plain and streamed; before, the image was dropped and the model answered
/// without it.
#[tokio::test]
async fn an_image_in_a_chat_rendered_as_a_prompt_is_refused() {
    use infermux_core::{
        ChatRequest, ContentPart, ErrorKind, Message, Provider, Request, RequestContext,
    };
    let p = tgi("http://127.0.0.1:9").with_prompt_format(PromptFormat::ChatMl);
    let req = Request::Chat(ChatRequest::new(
        "tgi",
        vec![Message::user_parts(vec![
            ContentPart::text("What is in this picture?"),
            ContentPart::image_base64("image/png", "iVBORw0KGgo="),
        ])],
    ));
    let e = p.call(&req, &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = p.stream(&req, &RequestContext::new()).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// Nor tools, tool calls or tool results (a conversation that fell back here from a
/// tool-using provider): refused (`Unsupported`) before anything is sent, plain and streamed;
/// before, a call rendered as an empty assistant turn and its result as text after nothing.
#[tokio::test]
async fn tools_in_a_chat_rendered_as_a_prompt_are_refused() {
    use infermux_core::{ErrorKind, Tool, ToolCall};
    let p = tgi("http://127.0.0.1:9").with_prompt_format(PromptFormat::ChatMl);
    let with_tools =
        ChatRequest::new("tgi", vec![Message::user("Weather?")]).with_tools(vec![Tool::new(
            "get_weather",
            "Weather",
            json!({"type": "object"}),
        )]);
    let with_history = ChatRequest::new(
        "tgi",
        vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls(vec![ToolCall::new("c1", "get_weather", "{}")]),
            Message::tool_result("c1", "sunny"),
        ],
    );
    for req in [with_tools, with_history] {
        let req = Request::Chat(req);
        let e = p.call(&req, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = p.stream(&req, &RequestContext::new()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
}

/// A chat rendered as a prompt keeps what `/generate` takes: `top_p`, the response format as
/// TGI's grammar and `extra`, in `parameters` (all were dropped); the template's end of turn
/// joins the caller's stops only where TGI takes one more (four by default: five was a 422).
#[tokio::test]
async fn a_prompt_format_chat_keeps_top_p_its_json_format_and_extra() {
    let server = infermux_testkit::Scripted::start(|_| {
        infermux_testkit::Reply::json(
            200,
            &json!({"generated_text": "{}", "details": {"finish_reason": "eos_token", "generated_tokens": 1}}),
        )
    })
    .await
    .unwrap();
    let p = tgi(&server.url()).with_prompt_format(PromptFormat::ChatMl);
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let mut req = ChatRequest::new("tgi", vec![Message::user("Where?")]).with_response_format(
        infermux_core::ResponseFormat::JsonSchema {
            name: "place".into(),
            schema: schema.clone(),
            strict: None,
        },
    );
    req.top_p = Some(0.5);
    req.extra.insert("repetition_penalty".into(), json!(1.1));
    p.call(&Request::Chat(req.clone()), &RequestContext::new())
        .await
        .unwrap();
    let four = req
        .clone()
        .with_stop(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
    p.call(&Request::Chat(four), &RequestContext::new())
        .await
        .unwrap();
    let sent = server.requests();
    let params = sent[0].json().unwrap()["parameters"].clone();
    assert_eq!(params["top_p"], json!(0.5));
    assert_eq!(params["grammar"], json!({"type": "json", "value": schema}));
    assert_eq!(params["repetition_penalty"], 1.1);
    assert_eq!(params["stop"], json!(["<|im_end|>"]));
    let params = sent[1].json().unwrap()["parameters"].clone();
    assert_eq!(params["stop"], json!(["a", "b", "c", "d"]));
    // a top_p of 1 (TGI refuses it, and it changes nothing) is left out; 0.9 goes as written
    for (top, want) in [(1.0, serde_json::Value::Null), (0.9, json!(0.9))] {
        let mut r = req.clone();
        r.top_p = Some(top);
        p.call(&Request::Chat(r), &RequestContext::new())
            .await
            .unwrap();
        let last = server.requests().last().unwrap().json().unwrap();
        assert_eq!(last["parameters"]["top_p"], want, "{top}");
    }
}
