//! Endpoint configuration: base URL, key, timeouts and limits.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::id::EndpointId;
use crate::secret::ApiKey;

/// Per-attempt timeouts, enforced by the transport (which sees the bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing the connection (TCP + TLS). Default 10 s.
    pub connect: Duration,
    /// From sending the request to the first byte of the response body. Default 60 s (a
    /// non-streamed answer is generated before its first byte).
    pub first_byte: Duration,
    /// Between two chunks of a streamed body. Default 30 s.
    pub idle: Duration,
    /// The whole attempt, or `None`. Default 10 min.
    pub total: Option<Duration>,
}

impl Timeouts {
    /// The defaults listed on each field.
    pub const fn standard() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            total: Some(Duration::from_secs(600)),
        }
    }
    /// Sets the connect timeout.
    pub fn with_connect(mut self, d: Duration) -> Self {
        self.connect = d;
        self
    }
    /// Sets the first-byte timeout.
    pub fn with_first_byte(mut self, d: Duration) -> Self {
        self.first_byte = d;
        self
    }
    /// Sets the idle timeout.
    pub fn with_idle(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }
    /// Sets the whole-attempt timeout.
    pub fn with_total(mut self, d: Option<Duration>) -> Self {
        self.total = d;
        self
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::standard()
    }
}

/// Limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest response body accepted, after decompression; for a stream, the largest event
    /// (a stream is bounded by its idle timeout and deadline, not by its whole length).
    /// Default 32 MiB.
    pub max_body_bytes: usize,
}

impl Limits {
    /// The defaults listed on each field.
    pub const fn standard() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
    /// Sets the body size limit.
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::standard()
    }
}

/// One endpoint: a base URL, an optional key bound to that URL's origin, timeouts and limits.
///
/// `Debug` never shows the key nor the URL's query string.
///
/// ```
/// use infermux_core::{ApiKey, EndpointConfig};
/// let cfg = EndpointConfig::new("local", "http://127.0.0.1:8080/v1")
///     .unwrap()
///     .with_api_key(ApiKey::new("sk-local"));
/// assert_eq!(cfg.origin(), "http://127.0.0.1:8080");
/// assert!(!format!("{cfg:?}").contains("sk-local"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The endpoint's name.
    pub id: EndpointId,
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// The key, sent only to `base_url`'s origin.
    pub api_key: Option<ApiKey>,
    /// Per-attempt timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Extra headers sent with every request (never auth headers: use `api_key`).
    pub headers: Vec<(String, String)>,
}

impl EndpointConfig {
    /// An endpoint with default timeouts and limits. Fails with [`ErrorKind::Config`] when the URL
    /// is not `http://` or `https://` with a host, carries an `@` before its query
    /// (credentials), or has a host or port no URL parser takes.
    pub fn new(id: impl AsRef<str>, base_url: impl AsRef<str>) -> Result<Self> {
        let base_url = base_url.as_ref().trim().trim_end_matches('/').to_owned();
        let cfg = EndpointConfig {
            id: EndpointId::new(id),
            base_url,
            api_key: None,
            timeouts: Timeouts::standard(),
            limits: Limits::standard(),
            headers: Vec::new(),
        };
        if cfg.scheme_and_rest().is_none() {
            let before_query = cfg.base_url.split(['?', '#']).next().unwrap_or("");
            let message = if before_query.contains('@') {
                "base URL must not carry credentials (user:password@) or an `@` before its \
                 query: the key goes in `api_key`"
            } else {
                "base URL must start with http:// or https:// and name a host"
            };
            return Err(Error::new(ErrorKind::Config, message).with_endpoint(cfg.id.clone()));
        }
        if !cfg.authority_is_valid() {
            return Err(Error::new(
                ErrorKind::Config,
                "base URL's host or port is not valid (a name, an IPv4 address or an IPv6 \
                 address in brackets, and a port up to 65535)",
            )
            .with_endpoint(cfg.id.clone()));
        }
        Ok(cfg)
    }

    /// Whether the base URL's `host[:port]` is one a URL parser takes: a host of letters,
    /// digits, `-`, `.`, `_` and non-ASCII (an IDN) or an IPv6 address in brackets, and a port of 1 to 5 digits
    /// up to 65535.
    fn authority_is_valid(&self) -> bool {
        let Some((_, rest)) = self.scheme_and_rest() else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return false;
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => ("v6", None),
                p => match p.strip_prefix(':') {
                    Some(port) => ("v6", Some(port)),
                    None => return false,
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') || b >= 0x80);
        let port_ok = port.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        });
        host_ok && port_ok
    }

    fn scheme_and_rest(&self) -> Option<(&str, &str)> {
        let (scheme, rest) = self.base_url.split_once("://")?;
        let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        // no `@` before the query: not in the host (`user:password@`), nor after a `/` that a
        // password may hold (`user:ab/cd@host`, which would read as host `user`)
        let before_query = rest.split(['?', '#']).next().unwrap_or("");
        (scheme_ok && !host.is_empty() && !before_query.contains('@')).then_some((scheme, rest))
    }

    /// `scheme://host[:port]` of the base URL, lower-cased: the origin the key is bound to.
    pub fn origin(&self) -> String {
        match self.scheme_and_rest() {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                format!(
                    "{}://{}",
                    scheme.to_ascii_lowercase(),
                    host.to_ascii_lowercase()
                )
            }
            None => String::new(),
        }
    }

    /// The base URL without its query string or a `user:password@` in it (safe to print).
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// let mut cfg = EndpointConfig::new("e", "http://127.0.0.1:8080/v1?key=k-secret")?;
    /// assert_eq!(cfg.display_url(), "http://127.0.0.1:8080/v1");
    /// // `new` refuses a URL with credentials in it; the field can still be set by hand
    /// cfg.base_url = "http://user:pw-secret@127.0.0.1:8080/v1".to_owned();
    /// assert_eq!(cfg.display_url(), "http://127.0.0.1:8080/v1");
    /// # Ok::<(), infermux_core::Error>(())
    /// ```
    pub fn display_url(&self) -> Cow<'_, str> {
        let url = self
            .base_url
            .split_once('?')
            .map_or(&*self.base_url, |(a, _)| a);
        url_without_userinfo(url)
    }

    /// Sets the key.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
    /// Sets the key from the environment variable `var`. Fails with [`ErrorKind::Config`]
    /// (naming the variable as [`crate::shown_var_name`] shows it, never a value) when it is
    /// unset or empty.
    ///
    /// ```
    /// use infermux_core::{EndpointConfig, ErrorKind};
    /// let err = EndpointConfig::new("e", "http://127.0.0.1:8080")
    ///     .unwrap()
    ///     .with_api_key_from_env("INFERMUX_DOC_SURELY_UNSET_KEY")
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.message().contains("INFERMUX_DOC_SURELY_UNSET_KEY"));
    /// ```
    pub fn with_api_key_from_env(self, var: &str) -> Result<Self> {
        self.with_api_key_from_any_env(&[var])
    }

    /// Sets the key from the first of `vars` that is set and not empty; fails with
    /// [`ErrorKind::Config`] when none is.
    pub fn with_api_key_from_any_env(mut self, vars: &[&str]) -> Result<Self> {
        match vars.iter().find_map(|v| ApiKey::from_env(v)) {
            Some(key) => {
                self.api_key = Some(key);
                Ok(self)
            }
            None => Err(Error::new(
                ErrorKind::Config,
                match vars {
                    [one] => format!(
                        "environment variable {} is not set",
                        crate::shown_var_name(one)
                    ),
                    many => format!(
                        "none of the environment variables {} is set",
                        many.iter()
                            .map(|v| crate::shown_var_name(v))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            )
            .with_endpoint(self.id.clone())),
        }
    }

    /// Sets the key from the first of `vars` that is set and not empty, and leaves the endpoint
    /// without a key when none is (for servers where a key is optional).
    pub fn with_optional_api_key_from_env(mut self, vars: &[&str]) -> Self {
        if let Some(key) = vars.iter().find_map(|v| ApiKey::from_env(v)) {
            self.api_key = Some(key);
        }
        self
    }

    /// An endpoint named `id` at the URL in the environment variable `url_var` when it is set
    /// and not empty, else at `default_url`: the one helper behind every provider's `from_env`.
    /// Fails with [`ErrorKind::Config`] when the variable is unset and there is no default, or
    /// when the URL is invalid.
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// let cfg = EndpointConfig::from_env("tgi", "INFERMUX_DOC_UNSET_URL", Some("http://127.0.0.1:8080"))
    ///     .unwrap()
    ///     .with_optional_api_key_from_env(&["INFERMUX_DOC_UNSET_KEY"]);
    /// assert_eq!(cfg.base_url, "http://127.0.0.1:8080");
    /// assert!(cfg.api_key.is_none());
    /// assert!(EndpointConfig::from_env("x", "INFERMUX_DOC_UNSET_URL", None).is_err());
    /// ```
    pub fn from_env(id: impl AsRef<str>, url_var: &str, default_url: Option<&str>) -> Result<Self> {
        let from_var = std::env::var(url_var).ok().filter(|v| !v.trim().is_empty());
        match from_var.as_deref().or(default_url) {
            Some(url) => Self::new(id, url),
            None => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "environment variable {} is not set",
                    crate::shown_var_name(url_var)
                ),
            )
            .with_endpoint(EndpointId::new(id))),
        }
    }
    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Adds a header sent with every request to the endpoint's own origin (never to another
    /// one a redirect leads to). A credential header (`authorization`, `x-api-key`,
    /// `x-goog-api-key`, `api-key`, `proxy-authorization`) is left out: the key goes in
    /// [`EndpointConfig::with_api_key`].
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// `url` without the `user:password@` of its authority, if it has one (for showing a URL that
/// may carry credentials).
///
/// ```
/// use infermux_core::url_without_userinfo;
/// assert_eq!(url_without_userinfo("http://me:pw@h:9000/x"), "http://h:9000/x");
/// assert_eq!(url_without_userinfo("http://h/a@b"), "http://h/a@b");
/// // a password holding a `/`
/// assert_eq!(url_without_userinfo("https://me:ab/cd@h/v1?x=1"), "https://h/v1?x=1");
/// assert_eq!(url_without_userinfo("https://me:/x@h/v1"), "https://h/v1");
/// assert_eq!(url_without_userinfo("http://[::1]/a@b"), "http://[::1]/a@b");
/// ```
pub fn url_without_userinfo(url: &str) -> Cow<'_, str> {
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let rest = &url[start..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            return Cow::Owned(format!("{}{}", &url[..start], &rest[at + 1..]));
        }
        // a password holding a `/` (`user:ab/cd@host`): the authority ends early, at a
        // `user:ab` that is no host (a port of letters); the userinfo runs to the last `@`
        // before the query
        let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        let port_is_not_a_number = !authority.starts_with('[')
            && authority.rsplit_once(':').is_some_and(|(_, port)| {
                port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())
            });
        if port_is_not_a_number && let Some(at) = before_query.rfind('@') {
            return Cow::Owned(format!("{}{}", &url[..start], &rest[at + 1..]));
        }
    }
    Cow::Borrowed(url)
}

/// A server's root from a base URL that may name one of its APIs: `url` without trailing
/// slashes and without each of `suffixes` in turn, where it ends the URL's path (never part of
/// the host: `http://v1` is a host named `v1`).
///
/// ```
/// use infermux_core::server_root;
/// assert_eq!(server_root("http://h:8080/v1/", &["/v1"]), "http://h:8080");
/// assert_eq!(server_root("http://h/api/v1", &["/v1", "/api"]), "http://h");
/// assert_eq!(server_root("http://v1", &["/v1"]), "http://v1");
/// assert_eq!(server_root("http://h/x/v1", &["/v1"]), "http://h/x");
/// assert_eq!(server_root("http://h/v1x", &["/v1"]), "http://h/v1x");
/// ```
pub fn server_root(url: &str, suffixes: &[&str]) -> String {
    let path_start = url
        .find("://")
        .map(|i| i + 3)
        .map(|start| start + url[start..].find('/').unwrap_or(url.len() - start))
        .unwrap_or(0);
    let mut root = url.trim_end_matches('/');
    for suffix in suffixes {
        if let Some(r) = root.strip_suffix(suffix)
            && r.len() >= path_start
        {
            root = r.trim_end_matches('/');
        }
    }
    // never below the authority (`http://h/` with the slash trimmed is still `http://h`)
    if root.len() < path_start {
        root = &url[..path_start];
    }
    root.to_owned()
}

/// Whether `url` is on one of Hugging Face's own hosts (`huggingface.co` and its subdomains,
/// Inference Endpoints' `*.huggingface.cloud`, Spaces' `*.hf.space`): where a Hugging Face
/// account token (`HF_TOKEN`) may go.
///
/// ```
/// use infermux_core::is_hugging_face_url;
/// assert!(is_hugging_face_url("https://router.huggingface.co/hf-inference"));
/// assert!(is_hugging_face_url("https://x1.us-east-1.aws.endpoints.huggingface.cloud"));
/// assert!(!is_hugging_face_url("http://127.0.0.1:8080"));
/// assert!(!is_hugging_face_url("https://huggingface.co.evil.example/"));
/// assert!(!is_hugging_face_url("https://evil.example/?huggingface.co"));
/// assert!(!is_hugging_face_url("https://evil.example\\.huggingface.co"));
/// ```
pub fn is_hugging_face_url(url: &str) -> bool {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return false;
    };
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    // anything but a plain host name (a `\\`, which URL parsers read as `/`, say) is not one
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return false;
    }
    ["huggingface.co", "huggingface.cloud", "hf.space"]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("id", &self.id)
            .field("base_url", &self.display_url())
            .field("api_key", &self.api_key)
            .field("timeouts", &self.timeouts)
            .field("limits", &self.limits)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "ftp://x",
            "http://",
            "localhost:8080",
            "https://user:pw@host",
            // a host or port no URL parser takes (they passed, and failed at build)
            "http://localhost:80800/v1",
            "http://:8080/v1",
            "http://my host/v1",
            "http://host:/v1",
            "http://host:8a/v1",
            "http://[::1/v1",
            "http://[not-v6]:80/v1",
        ] {
            let err = EndpointConfig::new("e", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
        for good in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]:8080/v1",
            "http://[::1]",
            "https://api.openai.com/v1",
            "http://my_host.local:65535",
            "https://bücher.example/v1",
            "http://h?x=1",
        ] {
            assert!(EndpointConfig::new("e", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn credentials_in_a_base_url_are_refused_even_past_a_slash() {
        for url in [
            "https://me:pw@h/v1",
            "https://me:ab/cd@h/v1",
            "https://me:ab/cd@h/v1?x=1",
        ] {
            let err = EndpointConfig::new("e", url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            assert!(!err.to_string().contains("cd@"), "{err}");
            assert!(err.message().contains("credentials"), "{err}");
        }
        // an `@` in the query is no credential
        assert!(EndpointConfig::new("e", "https://h/v1?who=a@b").is_ok());
    }

    #[test]
    fn a_key_from_an_unset_variable_is_a_config_error() {
        let cfg = EndpointConfig::new("e", "http://127.0.0.1:1").unwrap();
        let err = cfg
            .clone()
            .with_api_key_from_env("INFERMUX_TEST_SURELY_UNSET_KEY_1")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.message(),
            "environment variable INFERMUX_TEST_SURELY_UNSET_KEY_1 is not set"
        );
        assert_eq!(err.endpoint().map(|e| e.to_string()).as_deref(), Some("e"));
        let err = cfg
            .clone()
            .with_api_key_from_any_env(&["INFERMUX_TEST_UNSET_A", "INFERMUX_TEST_UNSET_B"])
            .unwrap_err();
        assert!(
            err.message()
                .contains("INFERMUX_TEST_UNSET_A, INFERMUX_TEST_UNSET_B")
        );
        // a key pasted in place of the variable's name is not printed back
        let pasted = "sk-proj-AbC123xyz789pasted";
        let err = cfg.clone().with_api_key_from_env(pasted).unwrap_err();
        assert!(!err.to_string().contains(pasted), "{err}");
        let err = EndpointConfig::from_env("e", pasted, None).unwrap_err();
        assert!(!err.to_string().contains(pasted), "{err}");
        // optional keys stay optional
        assert!(
            cfg.with_optional_api_key_from_env(&["INFERMUX_TEST_UNSET_A"])
                .api_key
                .is_none()
        );
        // PATH is set everywhere tests run
        let cfg = EndpointConfig::new("e", "http://127.0.0.1:1")
            .unwrap()
            .with_api_key_from_any_env(&["INFERMUX_TEST_UNSET_A", "PATH"])
            .unwrap();
        assert!(cfg.api_key.is_some());
    }

    #[test]
    fn from_env_falls_back_to_the_default_and_needs_one() {
        let cfg =
            EndpointConfig::from_env("e", "INFERMUX_TEST_UNSET_URL", Some("http://h:1/")).unwrap();
        assert_eq!(cfg.base_url, "http://h:1");
        let err = EndpointConfig::from_env("e", "INFERMUX_TEST_UNSET_URL", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("INFERMUX_TEST_UNSET_URL"));
    }

    #[test]
    fn debug_hides_key_query_and_header_values() {
        let cfg = EndpointConfig::new("e", "https://API.example.com/v1/?key=sk-query")
            .unwrap()
            .with_api_key(ApiKey::new("sk-abc"))
            .with_header("x-extra", "hidden-value");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("sk-abc"));
        assert!(!dbg.contains("sk-query"));
        assert!(!dbg.contains("hidden-value"));
        assert_eq!(cfg.origin(), "https://api.example.com");
        // nor a password written into the URL
        let mut cfg = EndpointConfig::new("e", "http://h:1/v1").unwrap();
        cfg.base_url = "http://user:pw-secret@h:1/v1".to_owned();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("pw-secret"), "{dbg}");
        assert!(dbg.contains("http://h:1/v1"), "{dbg}");
    }
}
