//! Canonical request keys: [`CacheKey`] (the exact tier) and the semantic tier's namespace.
//!
//! A key is the XXH3-128 hash of the canonical JSON of everything that changes the answer:
//! a format version, the caller's namespace (deployment group or provider), the tenant, and
//! the whole request (operation, model, parameters, system prompt, tools, the conversation,
//! provider-specific `extra` fields). Canonical means object keys sorted by their bytes at
//! every depth, no whitespace, numbers as serde_json prints them: the same request gives the
//! same key in every process and version, whatever order a map kept its keys in — keys are
//! shared through Redis.
//!
//! Whether the answer was streamed is **not** in the key: one entry serves both (see
//! [`Cache`](crate::Cache)).

use std::fmt;

use infermux_core::{ContentPart, Request, RequestContext, Role};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::canon::Canon;

/// Bumped when the canonical form changes, so old entries in a shared store are never read
/// as new ones.
const FORMAT: &str = "infermux-cache/1";

/// The exact tier's key of one request: a 128-bit hash of its canonical form.
///
/// ```
/// use infermux_cache::CacheKey;
/// use infermux_core::{ChatRequest, Message, Request, RequestContext};
/// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
/// let ctx = RequestContext::new();
/// let k = CacheKey::exact(&req, &ctx, "group-a").unwrap();
/// assert_eq!(k, CacheKey::exact(&req.clone(), &RequestContext::new(), "group-a").unwrap());
/// assert_ne!(k, CacheKey::exact(&req, &ctx, "group-b").unwrap());
/// assert_ne!(k, CacheKey::exact(&req, &ctx.with_tenant("t"), "group-a").unwrap());
/// assert_eq!(k.to_string().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(u128);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl CacheKey {
    /// The exact key of `request` for the tenant of `ctx` under the caller's `namespace`
    /// (deployment group or provider). `None` for a request no cache holds (a model list).
    pub fn exact(request: &Request, ctx: &RequestContext, namespace: &str) -> Option<CacheKey> {
        if matches!(request, Request::Models) {
            return None;
        }
        hash_parts(namespace, ctx.tenant(), "exact", "", request)
    }

    /// The 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// This semantic namespace for vectors of `dimension`: an embedder behind a group that
    /// falls back to a model of another size keeps each size's rows apart, rather than one
    /// size's rows being dropped or replacing the other's.
    pub(crate) fn with_dimension(self, dimension: usize) -> CacheKey {
        // odd multiplier: a bijection for each dimension
        const MIX: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;
        CacheKey(self.0 ^ (dimension as u128 + 1).wrapping_mul(MIX))
    }
}

/// The hash of one canonical record, `None` when `request` has no canonical form.
///
/// The record is written into this thread's reused buffer by the canonical writer (no
/// `serde_json::Value` tree, no allocation once warm) and hashed in one pass.
fn hash_parts(
    namespace: &str,
    tenant: Option<&str>,
    tier: &str,
    extra: &str,
    request: &(impl Serialize + ?Sized),
) -> Option<CacheKey> {
    Canon::with(|w| {
        // a fixed-shape record, written canonically like the request
        w.put(b"{\"format\":");
        w.put_str(FORMAT);
        w.put(b",\"namespace\":");
        w.put_str(namespace);
        w.put(b",\"tenant\":");
        match tenant {
            Some(t) => w.put_str(t),
            None => w.put(b"null"),
        }
        w.put(b",\"tier\":");
        w.put_str(tier);
        w.put(b",\"extra\":");
        w.put_str(extra);
        w.put(b",\"request\":");
        w.put_value(request).ok()?;
        w.put(b"}");
        Some(CacheKey(xxh3_128(&w.out)))
    })
}

/// The canonical JSON text of `value`: object keys sorted by their bytes at every depth, no
/// whitespace, numbers and strings as `serde_json` prints them — the text
/// `serde_json::to_value` and a sorted print would give, without the `Value`. What
/// [`CacheKey`] hashes. `None` for a value with no JSON form (a map key that is not a
/// string, an integer past 64 bits).
///
/// ```
/// use serde_json::json;
/// let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
/// assert_eq!(
///     infermux_cache::canonical_json(&a).unwrap(),
///     r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
/// );
/// ```
pub fn canonical_json(value: &(impl Serialize + ?Sized)) -> Option<String> {
    Canon::with(|w| {
        w.put_value(value).ok()?;
        String::from_utf8(w.out.clone()).ok()
    })
}

/// What the semantic tier needs of a request: its namespace and the text it embeds.
#[derive(Debug, Clone)]
pub(crate) struct SemanticProbe {
    /// The exact key of the request without its last user turn (the earlier turns, the
    /// system prompt, parameters, tools, model, tenant, caller's namespace) and the embedder.
    pub(crate) namespace: CacheKey,
    /// The last user turn's text.
    pub(crate) text: String,
}

/// Why a request is not for the semantic tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SemanticSkip {
    /// Not a chat, or no user turn last, or a last turn that is not text alone.
    Shape,
    /// Sampling with temperature > 0.
    Sampled,
    /// Tools offered or used.
    Tools,
    /// A last turn longer than the tier compares.
    Long,
}

/// The semantic namespace and text of `request`, or why it has none.
pub(crate) fn semantic_probe(
    request: &Request,
    ctx: &RequestContext,
    namespace: &str,
    embedder_id: &str,
    allow_sampled: bool,
    allow_tools: bool,
    max_chars: usize,
) -> Result<SemanticProbe, SemanticSkip> {
    let Request::Chat(chat) = request else {
        return Err(SemanticSkip::Shape);
    };
    let Some((last, earlier)) = chat.messages.split_last() else {
        return Err(SemanticSkip::Shape);
    };
    if last.role != Role::User
        || last.name.is_some()
        || last.content.is_empty()
        || !last
            .content
            .iter()
            .all(|p| matches!(p, ContentPart::Text { .. }))
    {
        return Err(SemanticSkip::Shape);
    }
    // (a field of `extra` is written over the typed one: a temperature or tools given there
    // are what the provider gets)
    let extra_temperature = chat
        .extra
        .get("temperature")
        .and_then(serde_json::Value::as_f64);
    if !allow_sampled
        && extra_temperature
            .or(chat.temperature.map(f64::from))
            .is_some_and(|t| t > 0.0)
    {
        return Err(SemanticSkip::Sampled);
    }
    let extra_tools = [
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "toolConfig",
        "tool_config",
    ]
    .iter()
    .any(|k| {
        chat.extra
            .get(*k)
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
    });
    let uses_tools = !chat.tools.is_empty()
        || chat.tool_choice.is_some()
        || extra_tools
        || earlier
            .iter()
            .any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool);
    if !allow_tools && uses_tools {
        return Err(SemanticSkip::Tools);
    }
    let text = last.text();
    // nothing an embedder reads: whitespace, control and format characters (a zero-width
    // space) only — skipped, not sent to fail as an embedder error
    if !text
        .chars()
        .any(|c| !c.is_whitespace() && !c.is_control() && !is_format(c))
    {
        return Err(SemanticSkip::Shape);
    }
    if text.chars().count() > max_chars {
        return Err(SemanticSkip::Long);
    }
    let mut rest = chat.clone();
    rest.messages.pop();
    let rest = Request::Chat(rest);
    Ok(SemanticProbe {
        namespace: hash_parts(namespace, ctx.tenant(), "semantic", embedder_id, &rest)
            .ok_or(SemanticSkip::Shape)?,
        text,
    })
}

/// A Unicode format character (general category Cf) of the kinds a text carries unseen:
/// zero-width space, joiners and marks, the byte order mark, soft hyphen, bidi controls.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}' | '\u{FEFF}'
    )
}
