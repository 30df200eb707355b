//! Parameters a model refuses: a server that answers as OpenAI's reasoning models do
//! (`400 unsupported_parameter` / `unsupported_value` naming the parameter) to a request
//! carrying one of them, and as a chat model otherwise. The provider sends the request again
//! without it and leaves it out of that model's later requests.

use infermux_core::{
    ChatRequest, ErrorKind, Message, Provider, Request, RequestContext, Response, StreamAccumulator,
};
use infermux_openai::OpenAi;
use infermux_testkit::{IncomingRequest, Reply, Scripted};
use serde_json::{Value, json};

use crate::openai;

/// OpenAI's answer refusing the token limit's name, as recorded (Vercel AI SDK fixture
/// `reasoning-model-legacy-parameter-error.json`).
const MAX_TOKENS_REFUSED: &str = r#"{
  "error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error",
    "param": "max_tokens",
    "code": "unsupported_parameter"
  }
}"#;

fn refusal(param: &str, value: &Value) -> Reply {
    let (message, code) = if param == "temperature" || param == "top_p" {
        (
            format!(
                "Unsupported value: '{param}' does not support {value} with this model. Only the default (1) value is supported."
            ),
            "unsupported_value",
        )
    } else {
        (
            format!("Unsupported parameter: '{param}' is not supported with this model."),
            "unsupported_parameter",
        )
    };
    Reply::json(
        400,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

fn answer(req: &IncomingRequest, body: &Value) -> Reply {
    if req.path.ends_with("/responses") {
        return Reply::json(
            200,
            &json!({"id": "resp_1", "object": "response", "status": "completed", "model": body["model"],
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}]}),
        );
    }
    if body["stream"] == true {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "model": body["model"],
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]});
        return Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: format!("data: {chunk}\n\ndata: [DONE]\n\n").into(),
        };
    }
    Reply::json(
        200,
        &json!({"id": "c", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}),
    )
}

/// A server whose model `o3` refuses each of `refuses` (checked in order) and answers
/// otherwise; every other model takes everything.
async fn reasoning_server(refuses: &'static [&'static str]) -> Scripted {
    Scripted::start(move |req| {
        let body = req.json().unwrap_or(Value::Null);
        if body["model"] == "o3" {
            for p in refuses {
                if *p == "max_tokens" && body.get("max_tokens").is_some() {
                    return Reply::Full {
                        status: 400,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: MAX_TOKENS_REFUSED.into(),
                    };
                }
                if let Some(v) = body.get(*p) {
                    return refusal(p, v);
                }
            }
        }
        answer(req, &body)
    })
    .await
    .unwrap()
}

fn sampled(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("Name three fruits.")])
        .with_max_tokens(16)
        .with_temperature(0.2)
        .with_stop(vec!["\n\n".into()])
}

async fn chat(p: &OpenAi, req: ChatRequest) -> infermux_core::Result<String> {
    match p.call(&Request::Chat(req), &RequestContext::new()).await? {
        Response::Chat(c) => Ok(c.text()),
        other => panic!("{other:?}"),
    }
}

fn bodies(server: &Scripted) -> Vec<Value> {
    server
        .requests()
        .iter()
        .map(|r| r.json().expect("a JSON body"))
        .collect()
}

#[tokio::test]
async fn a_refused_sampling_parameter_is_left_out_then_and_for_the_models_later_requests() {
    let server = reasoning_server(&["temperature", "stop"]).await;
    let p = openai(&format!("{}/v1", server.url()));
    assert_eq!(chat(&p, sampled("o3")).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 3, "one refusal each, then the answer: {sent:?}");
    assert_eq!(sent[0]["temperature"], 0.2f32 as f64);
    assert!(sent[1].get("temperature").is_none() && sent[1]["stop"] == json!(["\n\n"]));
    assert!(sent[2].get("temperature").is_none() && sent[2].get("stop").is_none());
    // the rest of the request is untouched
    assert_eq!(sent[2]["max_completion_tokens"], 16);
    assert_eq!(sent[2]["messages"], sent[0]["messages"]);

    // learned: the model's next request (through a clone too) goes without them at once
    let clone = p.clone();
    assert_eq!(chat(&clone, sampled("o3")).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 4);
    assert!(sent[3].get("temperature").is_none() && sent[3].get("stop").is_none());

    // another model on the same client still gets its parameters
    assert_eq!(chat(&p, sampled("gpt-4o")).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[4]["temperature"], 0.2f32 as f64);
    assert_eq!(sent[4]["stop"], json!(["\n\n"]));
}

#[tokio::test]
async fn turned_off_the_refusal_is_the_calls_error_and_one_request_is_sent() {
    let server = reasoning_server(&["temperature"]).await;
    let p = openai(&format!("{}/v1", server.url())).with_drop_refused_params(false);
    let e = chat(&p, sampled("o3")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.provider_code(), Some("unsupported_value"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_parameter_named_in_extra_is_never_left_out() {
    let server = reasoning_server(&["top_p"]).await;
    let p = openai(&format!("{}/v1", server.url()));
    let mut req = sampled("o3");
    // set as a typed field too: only `extra` naming it keeps it from being left out
    req.top_p = Some(0.9);
    req.extra.insert("top_p".into(), json!(0.5));
    let e = chat(&p, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.requests().len(), 1, "asked for by name: not dropped");
}

#[tokio::test]
async fn another_bad_request_is_not_sent_again() {
    let server = Scripted::start(|_| {
        Reply::json(
            400,
            &json!({"error": {"message": "Invalid 'messages[0].content': string too long.", "type": "invalid_request_error", "param": "messages[0].content", "code": "string_above_max_length"}}),
        )
    })
    .await
    .unwrap();
    let p = openai(&format!("{}/v1", server.url()));
    let e = chat(&p, sampled("o3")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.requests().len(), 1);
}

/// An Azure deployment of `o3` on `server`, and a request with only a token limit.
fn azure_o3(server: &Scripted) -> (OpenAi, ChatRequest) {
    let mut b = infermux_openai::OpenAiBuilder::azure(&server.url(), "o3", "2024-10-21");
    b.api_key = Some(infermux_core::ApiKey::new("azure-key"));
    let mut req = sampled("o3");
    req.temperature = None;
    req.stop.clear();
    (b.build().unwrap(), req)
}

#[tokio::test]
async fn an_azure_deployment_moves_the_token_limit_to_the_name_the_model_reads() {
    let server = reasoning_server(&["max_tokens"]).await;
    let (p, req) = azure_o3(&server);
    assert_eq!(chat(&p, req.clone()).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["max_tokens"], 16);
    assert_eq!(sent[1]["max_completion_tokens"], 16);
    assert!(sent[1].get("max_tokens").is_none());
    // and from the start afterwards
    assert_eq!(chat(&p, req).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2]["max_completion_tokens"], 16);
}

#[tokio::test]
async fn a_learned_limit_name_does_not_add_a_second_limit_to_one_named_in_extra() {
    let server = reasoning_server(&["max_tokens"]).await;
    let (p, mut req) = azure_o3(&server);
    assert_eq!(chat(&p, req.clone()).await.unwrap(), "ok");
    assert_eq!(
        bodies(&server).len(),
        2,
        "learned: the limit goes as max_completion_tokens"
    );
    // a request naming the limit itself in `extra`: sent as named, and only that one (the
    // model refuses it, and a name the caller chose is not changed)
    req.extra.insert("max_tokens".into(), json!(30));
    let e = chat(&p, req).await.unwrap_err();
    assert_eq!(e.provider_code(), Some("unsupported_parameter"));
    let sent = bodies(&server);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2]["max_tokens"], 30);
    assert!(
        sent[2].get("max_completion_tokens").is_none(),
        "{}",
        sent[2]
    );
}

#[tokio::test]
async fn refusals_at_one_reasoning_effort_are_not_applied_at_another() {
    let server = reasoning_server(&["temperature"]).await;
    let p = openai(&format!("{}/v1", server.url()));
    let mut medium = sampled("o3");
    medium
        .extra
        .insert("reasoning_effort".into(), json!("medium"));
    assert_eq!(chat(&p, medium.clone()).await.unwrap(), "ok");
    assert_eq!(bodies(&server).len(), 2);
    // learned for this effort: left out at once
    assert_eq!(chat(&p, medium).await.unwrap(), "ok");
    assert_eq!(bodies(&server).len(), 3);
    // another effort is asked as it is: its own refusal, its own learning
    let mut none = sampled("o3");
    none.extra.insert("reasoning_effort".into(), json!("none"));
    assert_eq!(chat(&p, none).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[3]["temperature"], 0.2f32 as f64);
}

#[tokio::test]
async fn a_stream_is_opened_again_without_the_refused_parameter() {
    let server = reasoning_server(&["temperature"]).await;
    let p = openai(&format!("{}/v1", server.url()));
    let s = p
        .stream(&Request::Chat(sampled("o3")), &RequestContext::new())
        .await
        .unwrap();
    let answer = StreamAccumulator::collect(s).await.unwrap();
    assert_eq!(answer.text(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["stream"], true);
    assert!(sent[1].get("temperature").is_none());
}

#[tokio::test]
async fn the_responses_api_leaves_the_refused_parameter_out_too() {
    let server = reasoning_server(&["temperature"]).await;
    let p = openai(&format!("{}/v1", server.url())).with_responses_api(true);
    assert_eq!(chat(&p, sampled("o3")).await.unwrap(), "ok");
    let sent = bodies(&server);
    assert_eq!(sent.len(), 2);
    assert!(server.requests()[1].path.ends_with("/responses"));
    assert!(sent[1].get("temperature").is_none());
    assert_eq!(sent[1]["max_output_tokens"], 16);
}

#[test]
fn a_responses_body_leaving_fields_out_is_the_body_of_the_request_without_them() {
    use infermux_openai::responses::ResponsesBody;
    use infermux_openai_compat::wire::Omitted;
    let mut req = sampled("o3").with_tools(vec![crate::weather_tool()]);
    req.top_p = Some(0.9);
    req.parallel_tool_calls = Some(true);
    for bits in 0..32 {
        let o = Omitted::from_bits(bits);
        let mut cleared = req.clone();
        if o.contains(Omitted::TEMPERATURE) {
            cleared.temperature = None;
        }
        if o.contains(Omitted::TOP_P) {
            cleared.top_p = None;
        }
        if o.contains(Omitted::PARALLEL_TOOL_CALLS) {
            cleared.parallel_tool_calls = None;
        }
        for stream in [false, true] {
            let left_out = serde_json::to_string(&ResponsesBody::new(&req, stream).omitting(o));
            let without = serde_json::to_string(&ResponsesBody::new(&cleared, stream));
            assert_eq!(left_out.unwrap(), without.unwrap(), "{o:?}");
        }
    }
}
