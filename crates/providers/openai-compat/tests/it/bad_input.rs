//! Bad input from a server: each case is a typed error or a tolerated deviation, never a panic
//! or a hang.

use futures_util::StreamExt;
use infermux_core::{
    ErrorKind, FinishReason, Provider, Request, RequestContext, Response, StreamAccumulator,
};
use infermux_testkit::{Cassette, ReplayServer};

use crate::{chat_request, provider};

fn cassette(status: u16, content_type: &str, body: &str) -> Cassette {
    let yaml = format!(
        "interactions:\n- request: {{method: POST, uri: 'http://h/v1/chat/completions', body: null, headers: {{}}}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: ['{content_type}']}}\n    body: {{string: {}}}\n",
        serde_json::to_string(body).unwrap()
    );
    Cassette::from_yaml(&yaml).unwrap()
}

async fn call(status: u16, ct: &str, body: &str) -> infermux_core::Result<Response> {
    let server = ReplayServer::start(cassette(status, ct, body))
        .await
        .unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    p.call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
}

/// The provider's stream of `body` (the replay server lives as long as the stream is read:
/// it is returned with it).
async fn open_stream(
    body: &str,
) -> infermux_core::Result<(ReplayServer, infermux_core::EventStream)> {
    let server = ReplayServer::start(cassette(200, "text/event-stream", body))
        .await
        .unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await?;
    Ok((server, s))
}

async fn stream(body: &str) -> infermux_core::Result<infermux_core::ChatResponse> {
    let (_server, s) = open_stream(body).await?;
    StreamAccumulator::collect(s).await
}

#[tokio::test]
async fn deviations_are_tolerated() {
    // no `object`, no `id`, no usage, unknown fields, empty finish reason
    let r = call(200, "application/json", r#"{"choices":[{"message":{"content":"hi","extra":1},"finish_reason":"","logprobs":{"x":1}}],"weird":true}"#).await.unwrap();
    let Response::Chat(c) = r else { panic!() };
    assert_eq!(c.text(), "hi");
    assert_eq!(c.finish_reason, None);
    assert!(c.usage.is_none());
    // an unknown finish reason is kept
    let Response::Chat(c) = call(
        200,
        "application/json",
        r#"{"choices":[{"message":{"content":"x"},"finish_reason":"eos_token"}]}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        c.finish_reason,
        Some(FinishReason::Other("eos_token".into()))
    );
}

#[tokio::test]
async fn malformed_empty_and_html_bodies_are_typed_errors() {
    let e = call(200, "application/json", r#"{"choices": [{"message": "#)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let e = call(200, "application/json", "").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let e = call(200, "application/json", r#"{"choices": []}"#)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let e = call(
        502,
        "text/html",
        "<html><title>502 Bad Gateway</title></html>",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert!(e.message().contains("Bad Gateway"));
    let e = call(200, "application/json", r#"{"error":{"message":"context too long","code":"context_length_exceeded","type":"invalid_request_error"}}"#).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContextLength);
}

#[tokio::test]
async fn stream_without_done_is_decode_error_with_partial_text() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n";
    let e = stream(body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hello"));
}

/// The stream's own error carries the text so far, for a caller reading the stream itself
/// (not only through `StreamAccumulator::collect`, which adds it).
#[tokio::test]
async fn a_stream_error_read_directly_carries_the_text_so_far() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
                event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    let (_server, mut s) = open_stream(body).await.unwrap();
    let mut last = None;
    while let Some(item) = s.next().await {
        if let Err(e) = item {
            last = Some(e);
        }
    }
    let e = last.expect("the error event is an error");
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert_eq!(e.partial_text(), Some("Hello"));
}

#[tokio::test]
async fn error_inside_a_200_stream() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"I will\"}}]}\n\ndata: {\"error\":{\"message\":\"Failed to call a function\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}\n\n";
    let e = stream(body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.provider_code(), Some("tool_use_failed"));
    assert_eq!(e.partial_text(), Some("I will"));
    // an error before any event fails the stream call itself (so a retry layer sees it)
    let server = ReplayServer::start(cassette(
        200,
        "text/event-stream",
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
    ))
    .await
    .unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let e = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .err()
        .unwrap();
    // a server error saying it is overloaded is `Overloaded`, as the conformance oracle reads
    // it (it was `Server`)
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(
        e.kind(),
        infermux_testkit::oracle::embedded_error_kind(
            &serde_json::json!({"error": {"message": "overloaded", "type": "server_error"}})
        )
    );
}

/// llama.cpp's server before PR 16109 (September 2025) reports a failure mid-stream on an
/// `error:` line (not a standard SSE field), then `data: [DONE]`: an error with its message
/// and code and the text so far, not a clean answer cut short.
#[tokio::test]
async fn a_legacy_llama_cpp_error_line_is_an_error_not_a_clean_end() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Once\"}}]}\n\n\
                error: {\"code\":400,\"message\":\"the request exceeds the available context size\",\"type\":\"invalid_request_error\"}\n\n\
                data: [DONE]\n\n";
    let e = stream(body).await.unwrap_err();
    // llama.cpp's wording for a prompt past its context, typed 400 invalid_request_error
    // before it had a type of its own
    assert_eq!(e.kind(), ErrorKind::ContextLength, "{e}");
    assert!(
        e.message().contains("exceeds the available context size"),
        "{e}"
    );
    assert_eq!(e.partial_text(), Some("Once"));
}

#[tokio::test]
async fn split_tool_calls_and_parallel_calls_reassemble() {
    let mut body = String::from(
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}},{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]}}]}\n\n",
    );
    let args_a = r#"{"city": "Paris", "unit": "celsius"}"#;
    let args_b = r#"{"tz": "Europe/Paris"}"#;
    for (i, (a, b)) in args_a
        .chars()
        .zip(args_b.chars().chain(std::iter::repeat('\0')))
        .enumerate()
    {
        let piece_a = serde_json::to_string(&a.to_string()).unwrap();
        body.push_str(&format!("data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":{piece_a}}}}}]}}}}]}}\n\n"));
        if b != '\0' && i < args_b.len() {
            let piece_b = serde_json::to_string(&b.to_string()).unwrap();
            body.push_str(&format!("data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":1,\"function\":{{\"arguments\":{piece_b}}}}}]}}}}]}}\n\n"));
        }
    }
    body.push_str(
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
    );
    let r = stream(&body).await.unwrap();
    assert_eq!(r.tool_calls().len(), 2);
    assert_eq!(r.tool_calls()[0].id, "call_a");
    assert_eq!(r.tool_calls()[0].arguments, args_a);
    assert_eq!(r.tool_calls()[1].name, "get_time");
    assert_eq!(r.tool_calls()[1].arguments, args_b);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn dropping_a_stream_mid_way_is_fine() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n";
    let (_server, mut s) = open_stream(body).await.unwrap();
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
}

#[tokio::test]
async fn completion_choices_out_of_order_answer_the_first_prompt() {
    let yaml = "interactions:\n- request: {method: POST, uri: 'http://h/v1/completions', body: null, headers: {}}\n  response:\n    status: {code: 200, message: OK}\n    headers: {content-type: ['application/json']}\n    body: {string: '{\"choices\":[{\"index\":1,\"text\":\"second\"},{\"index\":0,\"text\":\"first\"}]}'}\n";
    let server = ReplayServer::start(Cassette::from_yaml(yaml).unwrap())
        .await
        .unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let req = infermux_core::CompletionRequest::new("m", "p");
    let Response::Completion(c) = p
        .call(&Request::Completion(req), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.text, "first");
}

#[tokio::test]
async fn azures_opening_chunk_of_empty_id_and_model_does_not_hide_the_real_ones() {
    let body = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}],\"created\":1,\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"created\":1,\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: [DONE]\n\n"
    );
    let r = stream(body).await.unwrap();
    assert_eq!(r.text(), "Hi");
    assert_eq!(r.model, "gpt-4o-2024-08-06");
    assert_eq!(r.id.as_deref(), Some("chatcmpl-9"));
}

/// A finish reason that says the server failed the generation (Mistral's `error`, vLLM's
/// `abort`) is a server error a policy may retry — with the text sent so far — never an
/// answer (which a cache would keep), plain or streamed.
#[tokio::test]
async fn finish_reasons_that_say_the_generation_failed_are_errors() {
    for reason in ["error", "abort"] {
        let body = format!(
            r#"{{"choices":[{{"message":{{"content":"hal"}},"finish_reason":"{reason}"}}]}}"#
        );
        let e = call(200, "application/json", &body).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server, "{reason}");
        assert_eq!(e.provider_code(), Some(reason));
        let sse = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"hal\"}}}}]}}\n\ndata: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{reason}\"}}]}}\n\ndata: [DONE]\n\n"
        );
        let e = stream(&sse).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server, "{reason}");
        assert_eq!(e.partial_text(), Some("hal"));
    }
}

/// An error event whose data is not JSON (`upstream connect error`) is a server error with
/// that text as its message (it was the literal `{"error":null}`), and the text so far.
#[tokio::test]
async fn an_error_event_that_is_not_json_keeps_its_text() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                event: error\ndata: upstream connect error or disconnect/reset before headers\n\n";
    let e = stream(body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert!(e.message().contains("upstream connect error"), "{e}");
    assert_eq!(e.partial_text(), Some("Hel"));
}

/// A named event other than `error` whose data is not JSON (a proxy's keep-alive) is passed
/// over; unnamed data that is not JSON is still a decode error.
#[tokio::test]
async fn a_named_event_whose_data_is_not_json_is_passed_over() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                event: ping\ndata: keep-alive\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
                data: [DONE]\n\n";
    assert_eq!(stream(body).await.unwrap().text(), "Hello");
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: keep-alive\n\n";
    assert_eq!(stream(body).await.unwrap_err().kind(), ErrorKind::Decode);
}

/// Embeddings whose `index` repeats or runs past the inputs (a proxy numbering each chunk from
/// 0) are a decode error, never a vector handed to another input; out of order, they are put
/// back in order.
#[test]
fn embedding_indices_that_repeat_or_run_past_the_inputs_are_errors() {
    use infermux_openai_compat::wire::parse_embeddings;
    let body = |indices: &[usize]| {
        let data: Vec<String> = indices
            .iter()
            .enumerate()
            .map(|(pos, i)| format!(r#"{{"index":{i},"embedding":[{pos}.0]}}"#))
            .collect();
        format!(r#"{{"data":[{}]}}"#, data.join(","))
    };
    for bad in [&[0, 0, 2][..], &[0, 1, 0, 1], &[0, 3, 1]] {
        let e = parse_embeddings(body(bad).as_bytes(), bad.len()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "{bad:?}");
    }
    let r = parse_embeddings(body(&[2, 0, 1]).as_bytes(), 3).unwrap();
    assert_eq!(r.embeddings, vec![vec![1.0], vec![2.0], vec![0.0]]);
}

/// Vectors of one answer of different lengths (a proxy that cut one short) are a decode
/// error, not a short vector handed to its caller as if it were of the same space.
#[test]
fn embeddings_of_different_lengths_in_one_answer_are_an_error() {
    use infermux_openai_compat::wire::parse_embeddings;
    let cut = br#"{"data":[{"index":0,"embedding":[0.1,0.2]},{"index":1,"embedding":[0.3]}]}"#;
    let e = parse_embeddings(cut, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.message().contains("differ in length"), "{e}");
    let whole =
        br#"{"data":[{"index":0,"embedding":[0.1,0.2]},{"index":1,"embedding":[0.3,0.4]}]}"#;
    assert_eq!(parse_embeddings(whole, 2).unwrap().dimension(), 2);
}

/// A chat answer reads as its stream would: the choice of `index` 0 whatever its place, an
/// empty id (TGI's `"id": ""`) as none.
#[test]
fn the_first_choice_is_index_zero_and_an_empty_id_is_none() {
    use infermux_openai_compat::wire::parse_chat;
    let r = parse_chat(br#"{"id":"","choices":[{"index":1,"message":{"content":"second"}},{"index":0,"message":{"content":"first"}}]}"#).unwrap();
    assert_eq!(r.text(), "first");
    assert_eq!(r.id, None);
    let r = parse_chat(br#"{"id":"c1","choices":[{"message":{"content":"only"}}]}"#).unwrap();
    assert_eq!((r.text(), r.id.as_deref()), ("only".to_owned(), Some("c1")));
}
