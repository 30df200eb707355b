//! vcrpy cassettes: the YAML format real provider recordings come in.
//!
//! `interactions: [{request: {method, uri, body, headers}, response: {status: {code, message},
//! headers, body: {string}}}]`, where a `!!binary` body is base64 of the exact wire bytes and
//! `parsed_body` (pydantic-ai) is a JSON body stored as YAML.

use std::path::Path;

use base64::Engine;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// A cassette: recorded interactions in order.
#[derive(Debug, Clone, Default)]
pub struct Cassette {
    /// The interactions.
    pub interactions: Vec<Interaction>,
}

/// One request and its response.
#[derive(Debug, Clone)]
pub struct Interaction {
    /// The request.
    pub request: RecordedRequest,
    /// The response.
    pub response: RecordedResponse,
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method, upper-case.
    pub method: String,
    /// The full URI as recorded.
    pub uri: String,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Body>,
}

/// A recorded response.
#[derive(Debug, Clone)]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub message: String,
    /// Headers (lower-case names), in recorded order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// A body as stored in a cassette.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Exact bytes (a `string` or a `!!binary`).
    Raw(Vec<u8>),
    /// A JSON body stored parsed (`parsed_body`): re-serialised when served.
    Parsed(Json),
}

impl Body {
    /// The bytes to put on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Body::Raw(b) => b.clone(),
            Body::Parsed(v) => serde_json::to_vec(v).unwrap_or_default(),
        }
    }
    /// Whether the bytes are exactly as they were on the wire.
    pub fn is_raw(&self) -> bool {
        matches!(self, Body::Raw(_))
    }
}

impl RecordedRequest {
    /// The path of the URI (`/v1/chat/completions`).
    pub fn path(&self) -> &str {
        split_uri(&self.uri).1
    }
    /// The host of the URI.
    pub fn host(&self) -> &str {
        split_uri(&self.uri).0
    }
    /// The query string without credentials, sorted (for matching).
    pub fn query_without_keys(&self) -> String {
        query_without_keys(split_uri(&self.uri).2)
    }
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Json> {
        match &self.body {
            Some(Body::Parsed(v)) => Some(v.clone()),
            Some(Body::Raw(b)) => serde_json::from_slice(b).ok(),
            None => None,
        }
    }
}

impl RecordedResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a URI into host, path and query.
pub fn split_uri(uri: &str) -> (&str, &str, &str) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path_q) = match rest.find('/') {
        Some(i) if uri.contains("://") => (&rest[..i], &rest[i..]),
        _ if uri.contains("://") => (rest, "/"),
        _ => ("", rest),
    };
    let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
    (host, path, query)
}

/// Query parameters that carry credentials and are ignored when matching.
pub const KEY_PARAMS: [&str; 5] = ["key", "api_key", "api-key", "apikey", "access_token"];

/// A query string without credential parameters, its pairs sorted.
pub fn query_without_keys(query: &str) -> String {
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !KEY_PARAMS.iter().any(|k| name.eq_ignore_ascii_case(k))
        })
        .collect();
    pairs.sort_unstable();
    pairs.join("&")
}

/// The error of loading a cassette.
#[derive(Debug)]
pub struct CassetteError(pub String);

impl std::fmt::Display for CassetteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CassetteError {}

fn err(msg: impl Into<String>) -> CassetteError {
    CassetteError(msg.into())
}

fn yaml_to_json(v: &Yaml) -> Json {
    match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(s) => Json::Array(s.iter().map(yaml_to_json).collect()),
        Yaml::Mapping(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => serde_norway::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Tagged(t) => yaml_to_json(&t.value),
    }
}

fn body_of(node: &Yaml, parsed: Option<&Yaml>) -> Result<Option<Body>, CassetteError> {
    if let Some(p) = parsed {
        return Ok(Some(Body::Parsed(yaml_to_json(p))));
    }
    let node = match node {
        Yaml::Mapping(m) => match m.get("string") {
            Some(s) => s,
            None => return Ok(None),
        },
        other => other,
    };
    match node {
        Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(Body::Raw(s.as_bytes().to_vec()))),
        Yaml::Tagged(t) if t.tag == "infermux_binary" || t.tag == "binary" => {
            let b64: String = match &t.value {
                Yaml::String(s) => s.chars().filter(|c| !c.is_whitespace()).collect(),
                _ => return Err(err("!!binary body is not a string")),
            };
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(|b| Some(Body::Raw(b)))
                .map_err(|e| err(format!("bad base64 in !!binary body: {e}")))
        }
        other => Ok(Some(Body::Parsed(yaml_to_json(other)))),
    }
}

fn headers_of(node: Option<&Yaml>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(Yaml::Mapping(m)) = node {
        for (k, v) in m {
            let Some(name) = k.as_str() else { continue };
            let values: Vec<String> = match v {
                Yaml::Sequence(vs) => vs.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            };
            for value in values {
                out.push((name.to_ascii_lowercase(), value));
            }
        }
    }
    out
}

fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Cassette {
    /// Parses a cassette from YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, CassetteError> {
        // The YAML loader resolves the core `!!binary` tag to a plain string; rename it to a
        // local tag so binary bodies stay recognisable.
        let text = text
            .replace(": !!binary", ": !infermux_binary")
            .replace("- !!binary", "- !infermux_binary");
        let doc: Yaml = serde_norway::from_str(&text).map_err(|e| err(format!("not YAML: {e}")))?;
        let list = doc
            .get("interactions")
            .and_then(Yaml::as_sequence)
            .ok_or_else(|| err("no `interactions` list"))?;
        let mut interactions = Vec::with_capacity(list.len());
        for (n, it) in list.iter().enumerate() {
            let req = it
                .get("request")
                .ok_or_else(|| err(format!("interaction {n}: no request")))?;
            let resp = it
                .get("response")
                .ok_or_else(|| err(format!("interaction {n}: no response")))?;
            let request = RecordedRequest {
                method: req
                    .get("method")
                    .and_then(Yaml::as_str)
                    .unwrap_or("GET")
                    .to_ascii_uppercase(),
                uri: req
                    .get("uri")
                    .and_then(Yaml::as_str)
                    .ok_or_else(|| err(format!("interaction {n}: no uri")))?
                    .to_owned(),
                headers: headers_of(req.get("headers")),
                body: body_of(
                    req.get("body").unwrap_or(&Yaml::Null),
                    req.get("parsed_body"),
                )?,
            };
            let status = resp.get("status");
            let response = RecordedResponse {
                status: status
                    .and_then(|s| s.get("code"))
                    .and_then(Yaml::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .ok_or_else(|| err(format!("interaction {n}: no status code")))?,
                message: status
                    .and_then(|s| s.get("message"))
                    .and_then(Yaml::as_str)
                    .unwrap_or("")
                    .to_owned(),
                headers: headers_of(resp.get("headers")),
                body: body_of(
                    resp.get("body").unwrap_or(&Yaml::Null),
                    resp.get("parsed_body"),
                )?
                .unwrap_or(Body::Raw(Vec::new())),
            };
            interactions.push(Interaction { request, response });
        }
        Ok(Cassette { interactions })
    }

    /// Loads a cassette file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CassetteError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|e| err(format!("{}: {e}", path.display())))
    }

    /// Writes the cassette as vcrpy YAML (text bodies as `string`, others as `!!binary`).
    pub fn to_yaml(&self) -> String {
        use serde_norway::Mapping;
        use serde_norway::value::{Tag, TaggedValue};
        fn body(b: &Body) -> Yaml {
            let mut m = Mapping::new();
            let v = match b {
                Body::Raw(bytes) => match std::str::from_utf8(bytes) {
                    Ok(s) => Yaml::String(s.to_owned()),
                    Err(_) => Yaml::Tagged(Box::new(TaggedValue {
                        tag: Tag::new("binary"),
                        value: Yaml::String(
                            base64::engine::general_purpose::STANDARD.encode(bytes),
                        ),
                    })),
                },
                Body::Parsed(j) => Yaml::String(j.to_string()),
            };
            m.insert("string".into(), v);
            Yaml::Mapping(m)
        }
        fn headers(h: &[(String, String)]) -> Yaml {
            let mut m = Mapping::new();
            for (k, v) in h {
                let entry = m
                    .entry(Yaml::String(k.clone()))
                    .or_insert_with(|| Yaml::Sequence(Vec::new()));
                if let Yaml::Sequence(s) = entry {
                    s.push(Yaml::String(v.clone()));
                }
            }
            Yaml::Mapping(m)
        }
        let mut list = Vec::new();
        for it in &self.interactions {
            let mut req = Mapping::new();
            req.insert("method".into(), it.request.method.clone().into());
            req.insert("uri".into(), it.request.uri.clone().into());
            req.insert("headers".into(), headers(&it.request.headers));
            req.insert(
                "body".into(),
                match &it.request.body {
                    Some(Body::Raw(b)) => Yaml::String(String::from_utf8_lossy(b).into_owned()),
                    Some(Body::Parsed(j)) => Yaml::String(j.to_string()),
                    None => Yaml::Null,
                },
            );
            let mut status = Mapping::new();
            status.insert("code".into(), Yaml::Number(it.response.status.into()));
            status.insert("message".into(), it.response.message.clone().into());
            let mut resp = Mapping::new();
            resp.insert("status".into(), Yaml::Mapping(status));
            resp.insert("headers".into(), headers(&it.response.headers));
            resp.insert("body".into(), body(&it.response.body));
            let mut m = Mapping::new();
            m.insert("request".into(), Yaml::Mapping(req));
            m.insert("response".into(), Yaml::Mapping(resp));
            list.push(Yaml::Mapping(m));
        }
        let mut doc = Mapping::new();
        doc.insert("interactions".into(), Yaml::Sequence(list));
        doc.insert("version".into(), Yaml::Number(1.into()));
        serde_norway::to_string(&Yaml::Mapping(doc)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
interactions:
- request:
    body: '{"model": "m"}'
    headers:
      host:
      - api.example.com
    method: POST
    uri: https://api.example.com/v1/chat/completions?key=secret&alt=sse
  response:
    body:
      string: !!binary |
        H4sIAAAAAAAAA6tWyk0tLk5MT1WyUkrOz0vOTE5VqgUA5f9KhBgAAAA=
    headers:
      Content-Encoding:
      - gzip
    status:
      code: 200
      message: OK
- request:
    method: GET
    uri: https://api.example.com/v1/models
    parsed_body: null
  response:
    parsed_body:
      data:
      - id: m
        n: 1.5
    status:
      code: 200
      message: OK
version: 1
"#;

    #[test]
    fn parses_binary_and_parsed_bodies() {
        let c = Cassette::from_yaml(SAMPLE).unwrap();
        assert_eq!(c.interactions.len(), 2);
        let first = &c.interactions[0];
        assert_eq!(first.request.path(), "/v1/chat/completions");
        assert_eq!(first.request.query_without_keys(), "alt=sse");
        assert_eq!(first.request.host(), "api.example.com");
        assert_eq!(first.response.header("content-encoding"), Some("gzip"));
        match &first.response.body {
            Body::Raw(b) => assert_eq!(&b[..2], &[0x1f, 0x8b]),
            other => panic!("{other:?}"),
        }
        let second = &c.interactions[1];
        assert_eq!(
            second.response.body.to_bytes(),
            br#"{"data":[{"id":"m","n":1.5}]}"#
        );
    }

    #[test]
    fn yaml_round_trip() {
        let c = Cassette::from_yaml(SAMPLE).unwrap();
        let again = Cassette::from_yaml(&c.to_yaml()).unwrap();
        assert_eq!(again.interactions.len(), 2);
        assert_eq!(
            again.interactions[0].response.body,
            c.interactions[0].response.body
        );
        assert_eq!(
            again.interactions[1].response.body.to_bytes(),
            c.interactions[1].response.body.to_bytes()
        );
    }

    #[test]
    fn uri_splitting() {
        assert_eq!(split_uri("https://h/a/b?x=1"), ("h", "/a/b", "x=1"));
        assert_eq!(split_uri("https://h"), ("h", "/", ""));
        assert_eq!(query_without_keys("b=2&key=s&a=1"), "a=1&b=2");
    }
}
