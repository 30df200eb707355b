//! Stream events, the accumulator that folds them into a [`ChatResponse`], and [`first_event`].

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::provider::EventStream;
use crate::types::{
    ChatResponse, ContentPart, FinishReason, Message, Role, Signer, ToolCall, Usage,
};

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// The answer started.
    Start {
        /// Provider id of the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Model answering.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// More answer text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More reasoning text.
    ReasoningDelta {
        /// The text.
        text: String,
    },
    /// More refusal text.
    RefusalDelta {
        /// The text.
        text: String,
    },
    /// A piece of a tool call; pieces with the same `index` belong together.
    ToolCallDelta {
        /// Which call.
        index: u32,
        /// The call's id (usually on the first piece).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool's name (usually on the first piece).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A fragment of the JSON arguments.
        arguments: String,
    },
    /// The provider's signature of the reasoning delivered since the last signature (Anthropic's
    /// `signature_delta`, Gemini's `thoughtSignature` on a thought or text part). It closes
    /// that reasoning block; send it back unchanged with it on the next turn (the
    /// [`StreamAccumulator`] puts it in the block's [`ContentPart::Thinking`]).
    ReasoningSignature {
        /// The opaque signature.
        signature: String,
    },
    /// The provider's signature of the tool call with this `index` (Gemini's `thoughtSignature`
    /// on a `functionCall` part); send it back with the call (the [`StreamAccumulator`] puts it
    /// in [`ToolCall::signature`]).
    ToolCallSignature {
        /// Which call (as in [`StreamEvent::ToolCallDelta`]).
        index: u32,
        /// The opaque signature.
        signature: String,
    },
    /// A content part that arrives whole: a server tool's call or result
    /// ([`ContentPart::ServerToolCall`], [`ContentPart::ServerToolResult`]), a
    /// [`ContentPart::Citation`], redacted reasoning ([`ContentPart::RedactedThinking`]), or a
    /// block this version does not model ([`ContentPart::Other`]).
    Part {
        /// The part, in answer order.
        part: ContentPart,
    },
    /// The provider whose signed or opaque data the answer carries (sent before the first
    /// signature or such part): the folded message's [`Message::signer`](crate::Message::signer).
    SignedBy {
        /// The provider.
        signer: Signer,
    },
    /// Token usage (may come before or after `Done`'s reason; the last one wins).
    Usage(Usage),
    /// The answer is complete.
    Done {
        /// Why generation stopped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finish_reason: Option<FinishReason>,
    },
}

impl StreamEvent {
    /// Whether the event carries signed or opaque provider data (a signature, or a part
    /// [`ContentPart::is_provider_data`] says is).
    pub fn carries_provider_data(&self) -> bool {
        match self {
            StreamEvent::ReasoningSignature { .. } | StreamEvent::ToolCallSignature { .. } => true,
            StreamEvent::Part { part } => part.is_provider_data(),
            _ => false,
        }
    }
}

/// Puts [`StreamEvent::SignedBy`] `signer` before the first of `events` that carries provider
/// data, unless `marked` says a stream's earlier events had it; sets `marked` when it does.
/// A provider's stream decoder calls it on each batch of events it makes.
///
/// ```
/// use infermux_core::{Signer, StreamEvent, mark_signer};
/// let mut marked = false;
/// let mut evs = vec![
///     StreamEvent::TextDelta { text: "hi".into() },
///     StreamEvent::ReasoningSignature { signature: "c2ln".into() },
/// ];
/// mark_signer(&mut evs, &Signer::Gemini, &mut marked);
/// assert_eq!(evs[1], StreamEvent::SignedBy { signer: Signer::Gemini });
/// assert!(marked);
/// let mut more = vec![StreamEvent::ReasoningSignature { signature: "c2ln".into() }];
/// mark_signer(&mut more, &Signer::Gemini, &mut marked);
/// assert_eq!(more.len(), 1, "once a stream");
/// ```
pub fn mark_signer(events: &mut Vec<StreamEvent>, signer: &Signer, marked: &mut bool) {
    if *marked {
        return;
    }
    if let Some(at) = events.iter().position(StreamEvent::carries_provider_data) {
        events.insert(at, StreamEvent::SignedBy { signer: *signer });
        *marked = true;
    }
}

/// Folds stream events into a [`ChatResponse`]: concatenates text, reasoning and refusals,
/// reassembles tool calls by index, and keeps signatures and whole parts where they belong.
///
/// Content parts keep the order they arrived in. A delta extends the last part when it is of
/// the same kind (a reasoning delta only while that block has no signature yet), and starts a
/// new part otherwise; so text after a server tool's result, or reasoning after a signed
/// reasoning block, is a part of its own. A [`StreamEvent::ReasoningSignature`] signs the open
/// reasoning block (or, when there is none, adds an empty signed one).
///
/// ```
/// use infermux_core::{ContentPart, StreamAccumulator, StreamEvent};
/// let mut acc = StreamAccumulator::new();
/// acc.push(&StreamEvent::ReasoningDelta { text: "Think".into() });
/// acc.push(&StreamEvent::ReasoningSignature { signature: "sig".into() });
/// acc.push(&StreamEvent::TextDelta { text: "Hel".into() });
/// acc.push(&StreamEvent::ToolCallDelta { index: 0, id: Some("c1".into()), name: Some("f".into()), arguments: "{\"a\":".into() });
/// acc.push(&StreamEvent::TextDelta { text: "lo".into() });
/// acc.push(&StreamEvent::ToolCallDelta { index: 0, id: None, name: None, arguments: "1}".into() });
/// acc.push(&StreamEvent::Done { finish_reason: None });
/// let resp = acc.finish();
/// assert_eq!(resp.text(), "Hello");
/// assert_eq!(resp.tool_calls()[0].arguments, "{\"a\":1}");
/// assert_eq!(
///     resp.message.content[0],
///     ContentPart::Thinking { text: "Think".into(), signature: Some("sig".into()) }
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamAccumulator {
    id: Option<String>,
    model: Option<String>,
    text: String,
    parts: Vec<ContentPart>,
    tools: Vec<(u32, ToolCall)>,
    /// Where in `tools` the latest call at each index is (a stream of many calls finds each
    /// without scanning the calls before it).
    latest: HashMap<u32, usize>,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    done: bool,
    signer: Option<Signer>,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The call at `index`: the latest one there (an index reused by a new call, see
    /// [`StreamEvent::ToolCallDelta`] in [`StreamAccumulator::push`]).
    fn tool(&mut self, index: u32) -> &mut ToolCall {
        let pos = match self.latest.get(&index) {
            Some(p) => *p,
            None => self.start_call(index),
        };
        &mut self.tools[pos].1
    }

    /// A new call at `index` (the latest there from now on); its place in `tools`.
    fn start_call(&mut self, index: u32) -> usize {
        self.tools
            .push((index, ToolCall::new(String::new(), String::new(), "")));
        let pos = self.tools.len() - 1;
        self.latest.insert(index, pos);
        pos
    }

    /// Adds one event.
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Start { id, model } => {
                if id.is_some() {
                    self.id.clone_from(id);
                }
                if model.is_some() {
                    self.model.clone_from(model);
                }
            }
            StreamEvent::TextDelta { text } => {
                self.text.push_str(text);
                match self.parts.last_mut() {
                    Some(ContentPart::Text { text: t }) => t.push_str(text),
                    _ if text.is_empty() => {}
                    _ => self.parts.push(ContentPart::text(text.clone())),
                }
            }
            StreamEvent::ReasoningDelta { text } => match self.parts.last_mut() {
                Some(ContentPart::Thinking {
                    text: t,
                    signature: None,
                }) => t.push_str(text),
                _ if text.is_empty() => {}
                _ => self.parts.push(ContentPart::Thinking {
                    text: text.clone(),
                    signature: None,
                }),
            },
            StreamEvent::RefusalDelta { text } => match self.parts.last_mut() {
                Some(ContentPart::Refusal { text: t }) => t.push_str(text),
                _ if text.is_empty() => {}
                _ => self.parts.push(ContentPart::Refusal { text: text.clone() }),
            },
            StreamEvent::ReasoningSignature { signature } => match self.parts.last_mut() {
                Some(ContentPart::Thinking { signature: s, .. }) if s.is_none() => {
                    *s = Some(signature.clone());
                }
                _ => self.parts.push(ContentPart::Thinking {
                    text: String::new(),
                    signature: Some(signature.clone()),
                }),
            },
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let id = id.as_ref().filter(|s| !s.is_empty());
                // a piece with another id and a name at an index already in use starts a new
                // call (some servers, Ollama's `/v1` among them, give every call index 0); a new
                // id without a name is the same call (some servers change the id mid-call)
                if let Some(id) = id
                    && name.as_ref().is_some_and(|n| !n.is_empty())
                    && self
                        .latest
                        .get(index)
                        .map(|p| &self.tools[*p].1)
                        .is_some_and(|c| !c.id.is_empty() && c.id != *id)
                {
                    self.start_call(*index);
                }
                let call = self.tool(*index);
                if let Some(id) = id {
                    call.id.clone_from(id);
                }
                if let Some(name) = name.as_ref().filter(|s| !s.is_empty()) {
                    // a name comes once, or in pieces; a server that sends the whole name
                    // with every piece sends it again, not more of it
                    if call.name != *name {
                        call.name.push_str(name);
                    }
                }
                call.arguments.push_str(arguments);
            }
            StreamEvent::ToolCallSignature { index, signature } => {
                self.tool(*index).signature = Some(signature.clone());
            }
            StreamEvent::Part { part } => self.parts.push(part.clone()),
            StreamEvent::SignedBy { signer } => self.signer = Some(*signer),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Done { finish_reason } => {
                self.done = true;
                if finish_reason.is_some() {
                    self.finish_reason.clone_from(finish_reason);
                }
            }
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `Done` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The answer so far.
    pub fn finish(self) -> ChatResponse {
        let mut tools = self.tools;
        tools.sort_by_key(|(i, _)| *i);
        let mut message =
            Message::assistant_tool_calls(tools.into_iter().map(|(_, c)| c).collect());
        message.role = Role::Assistant;
        message.content = self.parts;
        message.signer = self.signer;
        let mut resp = ChatResponse::new(self.model.unwrap_or_default(), message);
        resp.id = self.id;
        resp.usage = self.usage;
        resp.finish_reason = self.finish_reason;
        resp
    }

    /// Drains a stream into a response; a stream error is returned with the partial text
    /// attached.
    pub async fn collect(mut stream: EventStream) -> Result<ChatResponse> {
        let mut acc = StreamAccumulator::new();
        while let Some(item) = next(&mut stream).await {
            match item {
                Ok(ev) => acc.push(&ev),
                Err(e) => {
                    return Err(if e.partial_text().is_none() && !acc.text.is_empty() {
                        e.with_partial_text(acc.text)
                    } else {
                        e
                    });
                }
            }
        }
        if !acc.done {
            let text = acc.text.clone();
            return Err(
                Error::new(ErrorKind::Decode, "stream ended without a final event")
                    .with_partial_text(text),
            );
        }
        Ok(acc.finish())
    }
}

/// The next item of a stream (a runtime-free `StreamExt::next`).
pub(crate) async fn next<S: Stream + Unpin + ?Sized>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Waits for the first event of `stream`, then returns a stream that yields it and the rest.
///
/// A stream that fails or ends before its first event gives `Err` here, so the retry layer sees
/// it; once this resolves, the caller owns the answer.
pub async fn first_event(mut stream: EventStream) -> Result<EventStream> {
    match next(&mut stream).await {
        Some(Ok(first)) => Ok(Box::pin(Prepend {
            first: Some(first),
            rest: stream,
        })),
        Some(Err(e)) => Err(e),
        None => Err(Error::new(
            ErrorKind::Decode,
            "stream ended before its first event",
        )),
    }
}

struct Prepend {
    first: Option<StreamEvent>,
    rest: EventStream,
}

impl Stream for Prepend {
    type Item = Result<StreamEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.rest.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use futures_util::{StreamExt, stream};

    /// The signer an answer names reaches the folded message, and the event round-trips
    /// through JSON (a cache stores streams as events).
    #[test]
    fn the_signer_reaches_the_message_and_round_trips() {
        let ev = StreamEvent::SignedBy {
            signer: Signer::Gemini,
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(json, r#"{"type":"signed_by","signer":"gemini"}"#);
        assert_eq!(serde_json::from_str::<StreamEvent>(&json).unwrap(), ev);
        let mut acc = StreamAccumulator::new();
        acc.push(&ev);
        acc.push(&StreamEvent::ReasoningSignature {
            signature: "c2ln".into(),
        });
        acc.push(&StreamEvent::Done {
            finish_reason: None,
        });
        let m = acc.finish().message;
        assert_eq!(m.signer, Some(Signer::Gemini));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["signer"], "gemini");
        assert_eq!(serde_json::from_value::<Message>(json).unwrap(), m);
        // not known: nothing in the JSON; a newer version's provider is another's
        let plain = serde_json::to_value(Message::assistant("hi")).unwrap();
        assert!(plain.get("signer").is_none());
        let newer: Message =
            serde_json::from_str(r#"{"role":"assistant","content":[],"signer":"mistral"}"#)
                .unwrap();
        assert_eq!(newer.signer, Some(Signer::Other));
        assert!(newer.signed_by_other_than(&Signer::Gemini));
        assert_eq!(std::mem::size_of::<Option<Signer>>(), 1);
    }

    #[test]
    fn parallel_tool_calls_reassemble_by_index() {
        let mut acc = StreamAccumulator::new();
        let evs = [
            StreamEvent::ToolCallDelta {
                index: 1,
                id: Some("b".into()),
                name: Some("g".into()),
                arguments: "{\"y\"".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("a".into()),
                name: Some("f".into()),
                arguments: "{\"x\"".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: ":1}".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                id: None,
                name: None,
                arguments: ":2}".into(),
            },
            StreamEvent::Done {
                finish_reason: Some(FinishReason::ToolCalls),
            },
        ];
        evs.iter().for_each(|e| acc.push(e));
        let r = acc.finish();
        assert_eq!(r.tool_calls().len(), 2);
        assert_eq!(r.tool_calls()[0].name, "f");
        assert_eq!(r.tool_calls()[0].arguments, "{\"x\":1}");
        assert_eq!(r.tool_calls()[1].parsed_arguments().unwrap()["y"], 2);
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    }

    /// Two calls at one index (Ollama's `/v1` gives every call index 0) stay two calls, and
    /// a name sent again with every piece is not doubled.
    #[test]
    fn a_reused_index_with_a_new_id_is_a_new_call_and_a_repeated_name_is_not_doubled() {
        let mut acc = StreamAccumulator::new();
        let delta = |id: Option<&str>, name: Option<&str>, args: &str| StreamEvent::ToolCallDelta {
            index: 0,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        };
        let evs = [
            delta(Some("a"), Some("file_write"), "{\"a\""),
            delta(None, Some("file_write"), ":1}"),
            delta(Some("b"), Some("file_write"), "{\"b\":2}"),
            delta(Some("b"), None, ""),
            StreamEvent::Done {
                finish_reason: Some(FinishReason::ToolCalls),
            },
        ];
        evs.iter().for_each(|e| acc.push(e));
        let r = acc.finish();
        let calls: Vec<_> = r
            .tool_calls()
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("a", "file_write", "{\"a\":1}"),
                ("b", "file_write", "{\"b\":2}")
            ]
        );
        // an id that changes mid-call, without a name, is still the same call
        let mut acc = StreamAccumulator::new();
        acc.push(&delta(Some("x"), Some("f"), ""));
        acc.push(&delta(Some("y"), None, "{}"));
        acc.push(&StreamEvent::Done {
            finish_reason: None,
        });
        let r = acc.finish();
        assert_eq!(r.tool_calls().len(), 1);
        assert_eq!(
            (
                r.tool_calls()[0].name.as_str(),
                r.tool_calls()[0].arguments.as_str()
            ),
            ("f", "{}")
        );
        // a name in pieces is still joined
        let mut acc = StreamAccumulator::new();
        acc.push(&delta(Some("c"), Some("read_"), ""));
        acc.push(&delta(None, Some("file"), "{}"));
        acc.push(&StreamEvent::Done {
            finish_reason: None,
        });
        assert_eq!(acc.finish().tool_calls()[0].name, "read_file");
    }

    #[test]
    fn signatures_reach_the_parts_they_sign() {
        let mut acc = StreamAccumulator::new();
        let evs = [
            StreamEvent::ReasoningDelta { text: "a".into() },
            StreamEvent::ReasoningDelta { text: "b".into() },
            StreamEvent::ReasoningSignature {
                signature: "s1".into(),
            },
            StreamEvent::Part {
                part: ContentPart::RedactedThinking { data: "r".into() },
            },
            StreamEvent::ReasoningDelta { text: "c".into() },
            StreamEvent::ReasoningSignature {
                signature: "s2".into(),
            },
            StreamEvent::TextDelta { text: "t".into() },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallSignature {
                index: 0,
                signature: "s3".into(),
            },
            StreamEvent::Done {
                finish_reason: None,
            },
        ];
        evs.iter().for_each(|e| acc.push(e));
        let r = acc.finish();
        assert_eq!(
            r.message.content,
            vec![
                ContentPart::Thinking {
                    text: "ab".into(),
                    signature: Some("s1".into())
                },
                ContentPart::RedactedThinking { data: "r".into() },
                ContentPart::Thinking {
                    text: "c".into(),
                    signature: Some("s2".into())
                },
                ContentPart::text("t"),
            ]
        );
        assert_eq!(r.tool_calls()[0].signature.as_deref(), Some("s3"));
    }

    #[test]
    fn text_after_a_whole_part_is_a_part_of_its_own() {
        let mut acc = StreamAccumulator::new();
        acc.push(&StreamEvent::TextDelta {
            text: "I'll ".into(),
        });
        acc.push(&StreamEvent::TextDelta {
            text: "search.".into(),
        });
        acc.push(&StreamEvent::Part {
            part: ContentPart::ServerToolCall {
                id: "srv".into(),
                name: "web_search".into(),
                input: serde_json::json!({"query": "q"}),
            },
        });
        acc.push(&StreamEvent::TextDelta {
            text: "Found.".into(),
        });
        let r = acc.finish();
        assert_eq!(r.message.content.len(), 3);
        assert_eq!(r.text(), "I'll search.Found.");
        // a signature with no open reasoning block is a signed empty block
        let mut acc = StreamAccumulator::new();
        acc.push(&StreamEvent::TextDelta { text: "x".into() });
        acc.push(&StreamEvent::ReasoningSignature {
            signature: "s".into(),
        });
        assert_eq!(
            acc.finish().message.content[1],
            ContentPart::Thinking {
                text: String::new(),
                signature: Some("s".into())
            }
        );
    }

    #[test]
    fn first_event_errors_before_output_and_replays_after() {
        let s: EventStream = Box::pin(stream::iter(vec![Err(Error::new(ErrorKind::Server, "x"))]));
        assert_eq!(
            block_on(first_event(s)).err().map(|e| e.kind()),
            Some(ErrorKind::Server)
        );
        let s: EventStream = Box::pin(stream::iter(Vec::new()));
        assert_eq!(
            block_on(first_event(s)).err().map(|e| e.kind()),
            Some(ErrorKind::Decode)
        );
        let s: EventStream = Box::pin(stream::iter(vec![
            Ok(StreamEvent::TextDelta { text: "a".into() }),
            Ok(StreamEvent::Done {
                finish_reason: None,
            }),
        ]));
        let s = block_on(first_event(s)).unwrap();
        let all: Vec<_> = block_on(s.collect::<Vec<_>>());
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn collect_without_done_is_decode_error_with_partial_text() {
        let s: EventStream = Box::pin(stream::iter(vec![Ok(StreamEvent::TextDelta {
            text: "par".into(),
        })]));
        let err = block_on(StreamAccumulator::collect(s)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.partial_text(), Some("par"));
    }
}
