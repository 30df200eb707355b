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
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

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
        let value = serde_json::to_value(request).ok()?;
        Some(hash_parts(namespace, ctx.tenant(), "exact", "", &value))
    }

    /// The 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

/// The hash of one canonical record.
fn hash_parts(
    namespace: &str,
    tenant: Option<&str>,
    tier: &str,
    extra: &str,
    request: &Value,
) -> CacheKey {
    let mut h = Xxh3::new();
    let mut w = HashWriter(&mut h);
    // a fixed-shape record, written canonically like the request
    w.put(b"{\"format\":");
    write_str(&mut w, FORMAT);
    w.put(b",\"namespace\":");
    write_str(&mut w, namespace);
    w.put(b",\"tenant\":");
    match tenant {
        Some(t) => write_str(&mut w, t),
        None => w.put(b"null"),
    }
    w.put(b",\"tier\":");
    write_str(&mut w, tier);
    w.put(b",\"extra\":");
    write_str(&mut w, extra);
    w.put(b",\"request\":");
    write_canonical(&mut w, request);
    w.put(b"}");
    CacheKey(h.digest128())
}

/// Where canonical bytes go: a hasher, or a buffer (for [`canonical_json`]).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct HashWriter<'a>(&'a mut Xxh3);

impl Sink for HashWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes `s` as a JSON string, escaped exactly as serde_json escapes it (`"`, `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`), without an
/// allocation.
fn write_str(w: &mut impl Sink, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    w.put(b"\"");
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        w.put(&bytes[start..i]);
        if short.is_empty() {
            w.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            w.put(short);
        }
        start = i + 1;
    }
    w.put(&bytes[start..]);
    w.put(b"\"");
}

/// Formats into a [`Sink`] without an allocation.
struct FmtSink<'a, S: Sink>(&'a mut S);

impl<S: Sink> fmt::Write for FmtSink<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

/// Writes `v` canonically: object keys sorted by their UTF-8 bytes at every depth.
fn write_canonical(w: &mut impl Sink, v: &Value) {
    match v {
        Value::Null => w.put(b"null"),
        Value::Bool(true) => w.put(b"true"),
        Value::Bool(false) => w.put(b"false"),
        Value::Number(n) => {
            let _ = fmt::Write::write_fmt(&mut FmtSink(w), format_args!("{n}"));
        }
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            w.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.put(b",");
                }
                write_canonical(w, item);
            }
            w.put(b"]");
        }
        Value::Object(map) => {
            w.put(b"{");
            // serde_json's map is a BTreeMap (keys already in byte order) unless some crate in
            // the build turns on `preserve_order`: sort only when they are not
            if map.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        w.put(b",");
                    }
                    write_str(w, k);
                    w.put(b":");
                    write_canonical(w, v);
                }
            } else {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        w.put(b",");
                    }
                    write_str(w, k);
                    w.put(b":");
                    write_canonical(w, &map[k.as_str()]);
                }
            }
            w.put(b"}");
        }
    }
}

/// The canonical JSON text of `value`: object keys sorted by their bytes at every depth, no
/// whitespace. What [`CacheKey`] hashes.
///
/// ```
/// use serde_json::json;
/// let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
/// assert_eq!(
///     infermux_cache::canonical_json(&a),
///     r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
/// );
/// ```
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
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
}

/// The semantic namespace and text of `request`, or why it has none.
pub(crate) fn semantic_probe(
    request: &Request,
    ctx: &RequestContext,
    namespace: &str,
    embedder_id: &str,
    allow_sampled: bool,
    allow_tools: bool,
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
    if !allow_sampled && chat.temperature.is_some_and(|t| t > 0.0) {
        return Err(SemanticSkip::Sampled);
    }
    let uses_tools = !chat.tools.is_empty()
        || chat.tool_choice.is_some()
        || earlier
            .iter()
            .any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool);
    if !allow_tools && uses_tools {
        return Err(SemanticSkip::Tools);
    }
    let text = last.text();
    if text.trim().is_empty() {
        return Err(SemanticSkip::Shape);
    }
    let mut rest = chat.clone();
    rest.messages.pop();
    let value = serde_json::to_value(Request::Chat(rest)).map_err(|_| SemanticSkip::Shape)?;
    Ok(SemanticProbe {
        namespace: hash_parts(namespace, ctx.tenant(), "semantic", embedder_id, &value),
        text,
    })
}
