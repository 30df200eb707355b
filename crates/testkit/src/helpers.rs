//! Small pieces the providers' and runners' tests share: the whole text of an error (to prove
//! a key never reaches it), the recorded files under a folder, a cassette of the shared corpus,
//! cassettes and corpora a test writes for itself.
//!
//! These are test helpers: where a test's expectation fails they panic with what they saw.
//!
//! ```
//! use infermux_core::{Error, ErrorKind};
//! use infermux_testkit::helpers;
//!
//! let err = Error::new(ErrorKind::Auth, "invalid key: sk-***");
//! helpers::assert_masked(&err, "sk-secret", "invalid key: sk-***");
//! assert!(helpers::error_text(&err).contains("Auth"));
//! ```

use std::path::{Path, PathBuf};

use infermux_core::Error;

use crate::Cassette;

/// Everything an error shows: `Display`, `Debug`, the partial text of a cut stream, and the
/// `Display` and `Debug` of every error in its source chain, one per line.
pub fn error_text(err: &Error) -> String {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    texts.extend(err.partial_text().map(str::to_owned));
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = src {
        texts.push(format!("{s} {s:?}"));
        src = s.source();
    }
    texts.join("\n")
}

/// Asserts that `key` appears nowhere in the [`error_text`] of `err` and that `masked` (what
/// the echo looks like once the key is masked) does.
///
/// # Panics
/// When the key is there or `masked` is not, with the whole text.
pub fn assert_masked(err: &Error, key: &str, masked: &str) {
    let text = error_text(err);
    assert!(!text.contains(key), "the key is in the error: {text}");
    assert!(
        text.contains(masked),
        "{masked:?} is not in the error: {text}"
    );
}

/// Every file below `dir` (in every sub-folder) whose extension is one of `extensions`,
/// sorted.
pub fn files_with(dir: &Path, extensions: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| extensions.iter().any(|x| e == *x))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The cassette `rel` of the shared corpus (`fixtures/cassettes/<rel>` under
/// [`shared_dir`](crate::shared_dir)), for a test that needs that very recording; `None` when the shared fixtures
/// are absent (the test is then skipped visibly, or fails under `INFERMUX_REQUIRE_FIXTURES=1`,
/// as with [`shared_fixture`](crate::shared_fixture)).
///
/// # Panics
/// When the shared corpus is there but this cassette is not, or does not parse.
pub fn shared_cassette(rel: &str) -> Option<Cassette> {
    let corpus = crate::shared_fixture("fixtures/cassettes")?;
    let path = corpus.join(rel);
    Some(
        Cassette::load(&path).unwrap_or_else(|e| panic!("shared cassette {}: {e}", path.display())),
    )
}

/// A fresh folder for a corpus a test writes, under the system temp dir, unique to the test
/// (`name`), the process and the moment.
///
/// # Panics
/// When the folder cannot be created.
pub fn temp_corpus(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "infermux-conformance-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// One recorded exchange, for a cassette a test writes: the request's method, URI and body,
/// the response's status, content type and body.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request's method (`POST`).
    pub method: &'a str,
    /// The request's full URI.
    pub uri: &'a str,
    /// The request's body.
    pub request_body: &'a str,
    /// The response's status.
    pub status: u16,
    /// The response's content type.
    pub content_type: &'a str,
    /// The response's body.
    pub body: &'a str,
}

/// One interaction of a vcrpy cassette (YAML, a list item); `None` is a request without a
/// body.
fn interaction(
    method: &str,
    uri: &str,
    request_body: Option<&str>,
    status: u16,
    content_type: &str,
    body: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "- request:\n    method: {method}\n    uri: {}\n    body: {}\n    headers: {{}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\n",
        q(uri),
        request_body.map_or_else(|| "null".to_owned(), q),
        q(content_type),
        q(body)
    )
}

impl Exchange<'_> {
    /// The exchange as a one-interaction vcrpy cassette (YAML).
    pub fn cassette(&self) -> String {
        let it = interaction(
            self.method,
            self.uri,
            Some(self.request_body),
            self.status,
            self.content_type,
            self.body,
        );
        format!("interactions:\n{it}version: 1\n")
    }

    /// Writes the exchange as a one-interaction cassette at `rel` under `dir` (creating the
    /// folders on the way).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, dir: &Path, rel: &str) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(&path, self.cassette())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// A cassette of `origin` answering `(method, path, status, content type, body)` rows in
/// order (requests without bodies).
///
/// # Panics
/// When a row does not make a cassette (an `origin` that is not a URI's start).
pub fn served(origin: &str, rows: &[(&str, &str, u16, &str, &str)]) -> Cassette {
    let mut yaml = String::from("interactions:\n");
    for &(method, path, status, content_type, body) in rows {
        let uri = format!("{origin}{path}");
        yaml.push_str(&interaction(method, &uri, None, status, content_type, body));
    }
    Cassette::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_core::ErrorKind;

    #[test]
    fn a_key_in_the_source_chain_is_found() {
        let inner = Error::new(ErrorKind::Auth, "bad key sk-secret-1");
        let outer = Error::new(ErrorKind::Server, "failed").with_source(inner);
        assert!(error_text(&outer).contains("sk-secret-1"));
        let fails = |err: &Error, masked: &str| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                assert_masked(err, "sk-secret-1", masked)
            }))
            .is_err()
        };
        assert!(fails(&outer, "failed"), "a key in the chain is caught");
        let cut = Error::new(ErrorKind::Server, "cut").with_partial_text("said sk-secret-1");
        assert!(fails(&cut, "cut"), "a key in the partial text is caught");
        let masked = Error::new(ErrorKind::Auth, "bad key ***");
        assert_masked(&masked, "sk-secret-1", "bad key ***");
        assert!(fails(&masked, "key: ***"), "the masked echo must be there");
    }

    #[test]
    fn a_written_exchange_is_a_cassette_with_that_exchange() {
        let dir = temp_corpus("helpers");
        let ex = Exchange {
            method: "POST",
            uri: "https://api.openai.com/v1/chat/completions",
            request_body: r#"{"model":"m"}"#,
            status: 429,
            content_type: "application/json",
            body: "{\"error\":\"a \\\"quoted\\\" line\nand another\"}",
        };
        ex.write(&dir, "a/b.yaml");
        Exchange {
            uri: "https://x/y",
            ..ex
        }
        .write(&dir, "c.yml");
        std::fs::write(dir.join("a/notes.txt"), "x").unwrap();
        let files = files_with(&dir, &["yaml", "yml"]).unwrap();
        assert_eq!(files, vec![dir.join("a/b.yaml"), dir.join("c.yml")]);
        let c = Cassette::load(&files[0]).unwrap();
        let it = &c.interactions[0];
        assert_eq!(
            (it.request.method.as_str(), it.request.uri.as_str()),
            ("POST", ex.uri)
        );
        assert_eq!(it.response.status, 429);
        assert_eq!(it.response.header("content-type"), Some("application/json"));
        assert_eq!(it.response.body.to_bytes(), ex.body.as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn served_rows_are_interactions_of_the_origin_in_order() {
        let c = served(
            "http://tgi:8080",
            &[
                ("GET", "/health", 200, "application/json", ""),
                ("POST", "/generate", 422, "text/plain", "bad 'input'\n"),
            ],
        );
        assert!(c.interactions.iter().all(|it| it.request.body.is_none()));
        let got: Vec<_> = c
            .interactions
            .iter()
            .map(|it| {
                (
                    it.request.method.as_str(),
                    it.request.uri.as_str(),
                    it.response.status,
                    it.response.header("content-type"),
                    it.response.body.to_bytes(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "GET",
                    "http://tgi:8080/health",
                    200,
                    Some("application/json"),
                    Vec::new()
                ),
                (
                    "POST",
                    "http://tgi:8080/generate",
                    422,
                    Some("text/plain"),
                    b"bad 'input'\n".to_vec()
                ),
            ]
        );
    }
}

/// A TCP relay on 127.0.0.1 to a server further away than it is: each connection it accepts
/// is held for a delay before it is relayed to the target (a server whose connection takes
/// that long to set up), and counted. Dropped, it accepts no more connections (those open
/// relay on until either side closes).
#[derive(Debug)]
pub struct SlowRelay {
    /// `host:port` it listens on.
    pub addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowRelay {
    /// Relays to `target` (`host:port`), holding each connection `delay` first.
    pub async fn start(target: &str, delay: std::time::Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::AcqRel);
                let target = target.clone();
                tokio::spawn(async move {
                    // the distance the relay stands for (a fault it injects, not a wait for
                    // another task)
                    tokio::time::sleep(delay).await;
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(SlowRelay {
            addr,
            accepted,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP relay on 127.0.0.1 whose connections can be black-holed: after [`freeze`], the
/// connections it carries stay open but pass nothing either way (a failover behind the same
/// name, a NAT flow dropped: no error ever closes them), while connections made afterwards
/// are relayed as before. Counts the connections it accepts. Dropped, it accepts no more
/// connections (those open relay on until either side closes). [`delay_replies`] holds what
/// the target sends back for a while (a server that does the work and answers late).
///
/// [`freeze`]: FreezableRelay::freeze
/// [`delay_replies`]: FreezableRelay::delay_replies
#[derive(Debug)]
pub struct FreezableRelay {
    /// `host:port` it listens on.
    pub addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections accepted before this generation are frozen.
    frozen_before: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// How long each read from the target is held before it is relayed (ms; 0: not held).
    reply_delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableRelay {
    /// Relays to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let frozen_before = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reply_delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (count, frozen, delay) = (
            accepted.clone(),
            frozen_before.clone(),
            reply_delay_ms.clone(),
        );
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let generation = count.fetch_add(1, Ordering::AcqRel);
                let (target, frozen, delay) = (target.clone(), frozen.clone(), delay.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    let pass = move || generation >= frozen.load(Ordering::Acquire);
                    let up = pump(ir, ow, pass.clone(), None);
                    let down = pump(or, iw, pass, Some(delay));
                    tokio::join!(up, down);
                });
            }
        });
        Ok(FreezableRelay {
            addr,
            accepted,
            frozen_before,
            reply_delay_ms,
            task,
        })
    }

    /// Holds each read from the target for `delay` before relaying it (on every connection,
    /// open or not; zero relays at once again): the target did what it was asked and its
    /// answer comes late.
    pub fn delay_replies(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.reply_delay_ms
            .store(ms, std::sync::atomic::Ordering::Release);
    }

    /// Black-holes every connection accepted so far; later ones are relayed.
    pub fn freeze(&self) {
        use std::sync::atomic::Ordering;
        self.frozen_before
            .store(self.accepted.load(Ordering::Acquire), Ordering::Release);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Copies `from` to `to` while `pass` says so; what arrives otherwise is read and dropped (the
/// sender never told), until either side closes. Each read is held for `delay` ms first.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pass: impl Fn() -> bool,
    delay: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let ms = delay
            .as_ref()
            .map_or(0, |d| d.load(std::sync::atomic::Ordering::Acquire));
        if ms > 0 {
            // the lateness the relay stands for (a fault it injects, not a wait for a task)
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if pass() && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// The `host:port` of a `redis://[user:password@]host:port[/db]` URL (what a relay relays to).
///
/// ```
/// use infermux_testkit::helpers::redis_host_port;
/// assert_eq!(redis_host_port("redis://127.0.0.1:6379"), "127.0.0.1:6379");
/// assert_eq!(redis_host_port("redis://:pw@h:7000/2"), "h:7000");
/// ```
pub fn redis_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

impl Drop for FreezableRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
