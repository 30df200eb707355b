//! Parameters a model refuses, learned from its answers.
//!
//! OpenAI's reasoning models (the o-series, gpt-5) answer `400` with code
//! `unsupported_parameter` or `unsupported_value` to sampling parameters they do not take
//! ("Unsupported value: 'temperature' does not support 0.2 with this model. Only the default
//! (1) value is supported."; "Unsupported parameter: 'stop' is not supported with this
//! model."), and to the token limit under the name they do not read ("Unsupported parameter:
//! 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
//! which Azure deployments meet: they keep `max_tokens` for older API versions). A group that
//! sends one request to a chat model and a reasoning model alike would fail on the latter
//! every time. The provider sends such a request again without the refused parameter (or with
//! the limit under the other name) and remembers the refusal per model, so later requests
//! leave it out from the start.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use infermux_core::{ChatRequest, Error};
use infermux_openai_compat::wire::Omitted;

/// The token limit's two names.
pub(crate) const MAX_TOKENS: &str = "max_tokens";
pub(crate) const MAX_COMPLETION_TOKENS: &str = "max_completion_tokens";

/// The most models whose refusals a client remembers.
pub(crate) const MAX_MODELS: usize = 1024;

/// How a model's requests are sent: typed fields left out, and the token limit's name when
/// a refusal chose it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Adapt {
    pub(crate) omitted: Omitted,
    pub(crate) max_tokens_key: Option<&'static str>,
}

/// Refusals learned per model (and reasoning effort), shared by a client's clones.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    /// Whether any refusal was learned: until then a request reads no map.
    any: AtomicBool,
    models: DashMap<String, Adapt>,
}

/// What refusals are learned under: the model, and the reasoning effort the request asks for
/// in `extra` (`reasoning_effort`, or the Responses API's `reasoning.effort`), since some
/// models take sampling parameters at one effort and refuse them at another.
pub(crate) fn learned_as(req: &ChatRequest) -> Cow<'_, str> {
    let effort = req
        .extra
        .get("reasoning_effort")
        .or_else(|| req.extra.get("reasoning").and_then(|r| r.get("effort")));
    match effort {
        None => Cow::Borrowed(req.model.as_str()),
        Some(e) => Cow::Owned(format!("{}\u{1f}{e}", req.model)),
    }
}

impl Learned {
    /// What `req`'s model (at its reasoning effort) was learned to refuse.
    pub(crate) fn get(&self, req: &ChatRequest) -> Adapt {
        if !self.any.load(Ordering::Acquire) {
            return Adapt::default();
        }
        self.models
            .get(learned_as(req).as_ref())
            .map(|a| *a)
            .unwrap_or_default()
    }

    /// Adds `adapt` to what `req`'s model (at its reasoning effort) leaves out; whether it is
    /// remembered. Past [`MAX_MODELS`] entries a new one is not (its requests are still sent
    /// again without the refused parameter, each time), so model names a caller makes up
    /// cannot grow the map without end (concurrent first refusals may pass the bound by a few).
    pub(crate) fn learn(&self, req: &ChatRequest, adapt: Adapt) -> bool {
        let key = learned_as(req);
        if self.models.len() >= MAX_MODELS && !self.models.contains_key(key.as_ref()) {
            return false;
        }
        let mut e = self.models.entry(key.into_owned()).or_default();
        e.omitted |= adapt.omitted;
        if adapt.max_tokens_key.is_some() {
            e.max_tokens_key = adapt.max_tokens_key;
        }
        drop(e);
        self.any.store(true, Ordering::Release);
        true
    }
}

/// The parameter a `400` says the model refuses, if `e` is such a refusal: its message starts
/// `Unsupported parameter: '<name>'` or `Unsupported value: '<name>'`, and its code, when it
/// has one, is `unsupported_parameter` or `unsupported_value`.
pub(crate) fn refused_param(e: &Error) -> Option<&str> {
    if e.status() != Some(400)
        || e.provider_code()
            .is_some_and(|c| c != "unsupported_parameter" && c != "unsupported_value")
    {
        return None;
    }
    let msg = e.message();
    let rest = msg
        .strip_prefix("Unsupported parameter: '")
        .or_else(|| msg.strip_prefix("Unsupported value: '"))?;
    rest.split_once('\'').map(|(name, _)| name)
}

/// After `e`, how to send `req` instead (sent as `current`, the token limit under
/// `limit_key`), and the refused parameter's name: `None` when `e` is no refusal, names a
/// parameter the request does not send or one that cannot be left out, or names one already
/// handled (each change is tried once, so the re-sends end).
pub(crate) fn next(
    e: &Error,
    req: &ChatRequest,
    current: Adapt,
    limit_key: Option<&'static str>,
) -> Option<(Adapt, &'static str)> {
    let param = refused_param(e)?;
    if let Some(flag) = Omitted::for_param(param) {
        if current.omitted.contains(flag) || !flag.is_set_in(req) || req.extra.contains_key(param) {
            return None;
        }
        let mut next = current;
        next.omitted |= flag;
        return Some((next, flag.param_name()));
    }
    // the token limit under the other name, once, when it was sent under the refused one
    if current.max_tokens_key.is_some() {
        return None;
    }
    let sent = limit_key?;
    if param != sent || req.max_tokens.is_none() || req.extra.contains_key(param) {
        return None;
    }
    let other = if sent == MAX_TOKENS {
        MAX_COMPLETION_TOKENS
    } else {
        MAX_TOKENS
    };
    Some((
        Adapt {
            max_tokens_key: Some(other),
            ..current
        },
        sent,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_core::{ErrorKind, Message};

    fn refusal(msg: &str) -> Error {
        Error::new(ErrorKind::InvalidRequest, msg.to_owned()).with_status(400)
    }

    fn req() -> ChatRequest {
        let mut r = ChatRequest::new("o3", vec![Message::user("hi")]);
        r.temperature = Some(0.2);
        r.max_tokens = Some(50);
        r
    }

    #[test]
    fn reads_the_refused_name_and_nothing_else() {
        let e = refusal(
            "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
        );
        assert_eq!(refused_param(&e), Some("temperature"));
        let e = refusal("Unsupported parameter: 'stop' is not supported with this model.");
        assert_eq!(refused_param(&e), Some("stop"));
        // another 400, the same words in another status, an unterminated name
        assert_eq!(refused_param(&refusal("Invalid 'messages': empty")), None);
        let e = Error::new(ErrorKind::Server, "Unsupported parameter: 'stop' x").with_status(500);
        assert_eq!(refused_param(&e), None);
        // the words with another code (a gateway's own error): not a refusal
        let e = refusal("Unsupported parameter: 'stop' x").with_provider_code("invalid_value");
        assert_eq!(refused_param(&e), None);
        let e =
            refusal("Unsupported parameter: 'stop' x").with_provider_code("unsupported_parameter");
        assert_eq!(refused_param(&e), Some("stop"));
        assert_eq!(
            refused_param(&refusal("Unsupported parameter: 'stop")),
            None
        );
    }

    #[test]
    fn each_change_once_and_only_for_what_the_request_sends() {
        let r = req();
        let e = refusal("Unsupported value: 'temperature' does not support 0.2 with this model.");
        let (a, name) = next(&e, &r, Adapt::default(), Some(MAX_COMPLETION_TOKENS)).unwrap();
        assert_eq!((a.omitted, name), (Omitted::TEMPERATURE, "temperature"));
        assert_eq!(
            next(&e, &r, a, Some(MAX_COMPLETION_TOKENS)),
            None,
            "not twice"
        );
        // a refusal of a field the request does not set: nothing to leave out
        let e = refusal("Unsupported parameter: 'top_p' is not supported with this model.");
        assert_eq!(next(&e, &r, Adapt::default(), None), None);
        // nor of a field named in `extra` (asked for by name)
        let mut x = req();
        x.extra.insert("temperature".into(), 0.5.into());
        let e = refusal("Unsupported value: 'temperature' does not support 0.5 with this model.");
        assert_eq!(next(&e, &x, Adapt::default(), None), None);
        // nor of one no body leaves out
        let e = refusal("Unsupported parameter: 'messages' is not supported with this model.");
        assert_eq!(next(&e, &r, Adapt::default(), None), None);
    }

    #[test]
    fn the_token_limit_moves_to_the_other_name_once() {
        let r = req();
        let e = refusal(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        );
        let (a, name) = next(&e, &r, Adapt::default(), Some(MAX_TOKENS)).unwrap();
        assert_eq!(
            (a.max_tokens_key, name),
            (Some(MAX_COMPLETION_TOKENS), MAX_TOKENS)
        );
        // the other name refused in turn: no flip back
        let e2 = refusal("Unsupported parameter: 'max_completion_tokens' is not supported.");
        assert_eq!(next(&e2, &r, a, Some(MAX_TOKENS)), None);
        // a refusal of the name not sent changes nothing
        assert_eq!(
            next(&e, &r, Adapt::default(), Some(MAX_COMPLETION_TOKENS)),
            None
        );
        // no limit set: nothing to rename
        let mut n = req();
        n.max_tokens = None;
        assert_eq!(next(&e, &n, Adapt::default(), Some(MAX_TOKENS)), None);
        // the Responses API's `max_output_tokens` has no other name
        let e3 = refusal("Unsupported parameter: 'max_output_tokens' is not supported.");
        assert_eq!(next(&e3, &r, Adapt::default(), None), None);
    }

    fn model(name: &str) -> ChatRequest {
        ChatRequest::new(name, vec![Message::user("hi")])
    }

    #[test]
    fn learned_refusals_add_up_per_model_and_reasoning_effort() {
        let l = Learned::default();
        let o3 = model("o3");
        assert_eq!(l.get(&o3), Adapt::default());
        let t = Adapt {
            omitted: Omitted::TEMPERATURE,
            max_tokens_key: None,
        };
        assert!(l.learn(&o3, t));
        let s = Adapt {
            omitted: Omitted::STOP,
            max_tokens_key: Some(MAX_COMPLETION_TOKENS),
        };
        assert!(l.learn(&o3, s));
        let a = l.get(&o3);
        assert!(a.omitted.contains(Omitted::TEMPERATURE | Omitted::STOP));
        assert_eq!(a.max_tokens_key, Some(MAX_COMPLETION_TOKENS));
        assert_eq!(l.get(&model("gpt-4o")), Adapt::default());
        // the same model at another reasoning effort learns apart (chat completions' and the
        // Responses API's ways of asking)
        let mut none = model("o3");
        none.extra.insert("reasoning_effort".into(), "none".into());
        assert_eq!(l.get(&none), Adapt::default());
        assert!(l.learn(&none, s));
        assert_eq!(l.get(&none).omitted, Omitted::STOP);
        let mut high = model("o3");
        high.extra
            .insert("reasoning".into(), serde_json::json!({"effort": "high"}));
        assert_eq!(l.get(&high), Adapt::default());
        assert_eq!(learned_as(&o3), "o3");
        assert_ne!(learned_as(&high), learned_as(&none));
    }

    #[test]
    fn no_more_than_max_models_are_remembered() {
        let l = Learned::default();
        let t = Adapt {
            omitted: Omitted::TEMPERATURE,
            max_tokens_key: None,
        };
        for i in 0..MAX_MODELS {
            assert!(l.learn(&model(&format!("m{i}")), t));
        }
        assert!(
            !l.learn(&model("one-more"), t),
            "past the bound: not remembered"
        );
        assert_eq!(l.models.len(), MAX_MODELS);
        assert_eq!(l.get(&model("one-more")), Adapt::default());
        // a model already remembered still learns more
        let s = Adapt {
            omitted: Omitted::STOP,
            max_tokens_key: None,
        };
        assert!(l.learn(&model("m0"), s));
        assert!(
            l.get(&model("m0"))
                .omitted
                .contains(Omitted::TEMPERATURE | Omitted::STOP)
        );
    }
}
