//! The Docker launcher against the Docker Engine API contract: a replay server on a Unix
//! socket serves exchanges written from the engine's published spec (tests/it/fixtures/
//! docker-engine.json — written from the spec, not recorded from an engine), and checks the
//! create body the launcher sends against the spec's schema. Against a real engine only where
//! `DOCKER_HOST` is set (a visible skip otherwise: a machine without Docker is not a failure).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use infermux_containers::{
    DockerLauncher, Error, Gpus, Launcher, LlamaCppSpec, LogBuffer, ServerId, ServerSpec, Volume,
};
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::helpers::free_port;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/docker-engine.json")).unwrap()
}

/// One request the replay server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

struct State {
    /// Expected in this order.
    script: Mutex<VecDeque<Value>>,
    /// May come at any time, any number of times.
    background: Vec<Value>,
    seen: Mutex<Vec<Seen>>,
    unmatched: Mutex<Vec<String>>,
    served: watch::Sender<Vec<String>>,
}

/// Replays Docker Engine API exchanges on a Unix socket.
struct Replay {
    socket: PathBuf,
    state: Arc<State>,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strip_version(path: &str) -> &str {
    // `/v1.49/containers/json` → `/containers/json`
    match path.strip_prefix("/v") {
        Some(rest) => match rest.find('/') {
            Some(i) if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') => &rest[i..],
            _ => path,
        },
        None => path,
    }
}

fn respond(ex: &Value) -> Response<Full<Bytes>> {
    let status = ex["status"].as_u64().unwrap() as u16;
    let mut b = Response::builder().status(status);
    let body = if let Some(text) = ex["stream_stderr"].as_str() {
        // the multiplexed stream: [stream=2, 0, 0, 0, size u32 BE] + payload
        let mut frame = vec![2u8, 0, 0, 0];
        frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
        frame.extend_from_slice(text.as_bytes());
        b = b.header("content-type", ex["content_type"].as_str().unwrap());
        Bytes::from(frame)
    } else if ex.get("body").is_some() {
        b = b.header("content-type", "application/json");
        Bytes::from(ex["body"].to_string())
    } else {
        Bytes::new()
    };
    b.body(Full::new(body)).unwrap()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = strip_version(req.uri().path()).to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query,
        body,
    });
    let matches = |ex: &Value| ex["method"] == method.as_str() && ex["path"] == path.as_str();
    if let Some(ex) = state.background.iter().find(|ex| matches(ex)).cloned() {
        if let Some(after) = ex["after"].as_str() {
            let mut served = state.served.subscribe();
            let _ = served.wait_for(|s| s.iter().any(|n| n == after)).await;
        }
        return respond(&ex);
    }
    let next = {
        let mut script = state.script.lock().unwrap();
        match script.front() {
            Some(ex) if matches(ex) => script.pop_front(),
            _ => None,
        }
    };
    match next {
        Some(ex) => {
            let name = ex["name"].as_str().unwrap_or("").to_owned();
            state.served.send_modify(|s| s.push(name));
            respond(&ex)
        }
        None => {
            state
                .unmatched
                .lock()
                .unwrap()
                .push(format!("{method} {path}"));
            Response::builder()
                .status(599)
                .body(Full::new(Bytes::from_static(
                    b"{\"message\":\"unmatched\"}",
                )))
                .unwrap()
        }
    }
}

impl Replay {
    /// Serves the named exchanges in order, and `background` ones at any time.
    fn start(script: &[&str], background: &[&str]) -> Replay {
        let all = fixtures();
        let pick = |n: &&str| {
            let mut ex = all[*n].clone();
            assert!(ex.is_object(), "no exchange `{n}`");
            ex["name"] = json!(n.split('_').next().unwrap());
            ex
        };
        Self::start_with(
            script.iter().map(pick).collect(),
            background.iter().map(pick).collect(),
        )
    }

    /// Serves `script` (exchanges with a `name`) in order, and `background` at any time.
    fn start_with(script: Vec<Value>, background: Vec<Value>) -> Replay {
        let dir = std::env::temp_dir().join(format!(
            "infermux-docker-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let state = Arc::new(State {
            script: Mutex::new(script.into_iter().collect()),
            background,
            seen: Mutex::default(),
            unmatched: Mutex::default(),
            served: watch::channel(Vec::new()).0,
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Replay {
            socket,
            state,
            _dir: TempDir(dir),
        }
    }

    fn launcher(&self) -> DockerLauncher {
        DockerLauncher::connect_unix(self.socket.to_str().unwrap(), "ci").unwrap()
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Every scripted exchange was used and nothing unexpected came.
    fn verify(&self) {
        let left: Vec<_> = self
            .state
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["name"].clone())
            .collect();
        assert!(left.is_empty(), "exchanges not used: {left:?}");
        let unmatched = self.state.unmatched.lock().unwrap().clone();
        assert!(unmatched.is_empty(), "unmatched requests: {unmatched:?}");
    }
}

fn llama_spec(port: u16) -> ServerSpec {
    LlamaCppSpec::new("/models/smollm2.gguf")
        .port(port)
        .server_spec("llama")
        .unwrap()
        .with_env("LLAMA_ARG_THREADS", "2")
        .with_volume(Volume::new("/var/cache/models", "/models").read_only())
        .with_gpus(Gpus::Count(1))
        .with_memory_bytes(2 << 30)
}

#[tokio::test]
async fn the_launcher_removes_stale_containers_creates_labelled_starts_follows_logs_and_stops() {
    let replay = Replay::start(
        &[
            "list_stale",
            "remove_stale",
            "create",
            "start",
            "stop",
            "inspect_exited",
            "remove",
        ],
        &["logs", "wait"],
    );
    let launcher = replay.launcher();
    let port = free_port();
    let spec = llama_spec(port);
    let logs = LogBuffer::new(10);
    let mut lines = logs.subscribe();
    let mut server = launcher.start(&spec, logs.clone()).await.unwrap();
    assert_eq!(server.id(), ServerId::Container("e90e34656806".into()));
    assert_eq!(
        lines.recv().await.unwrap(),
        "main: server is listening on http://0.0.0.0:18093"
    );
    let exit = server
        .stop(std::time::Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(exit, infermux_containers::Exit::Code(143));
    replay.verify();

    // the cleanup asked for this owner's containers of this spec only
    let list = &replay.seen("GET", "/containers/json")[0];
    let filters = url_param(&list.query, "filters");
    let filters: Value = serde_json::from_str(&filters).unwrap();
    let mut labels = filters["label"].as_array().unwrap().to_vec();
    labels.sort_by_key(|v| v.to_string());
    assert_eq!(
        labels,
        [
            json!("infermux.managed=true"),
            json!("infermux.name=llama"),
            json!("infermux.owner=ci")
        ]
    );
    assert!(url_param(&list.query, "all") == "true");
    assert_eq!(
        url_param(
            &replay.seen("DELETE", "/containers/5a1e0000aaaa")[0].query,
            "force"
        ),
        "true"
    );
    assert_eq!(
        url_param(
            &replay.seen("POST", "/containers/e90e34656806/stop")[0].query,
            "t"
        ),
        "3"
    );

    // the create body: labels, image, entrypoint arguments, env, port, binds, GPUs, memory
    let create = &replay.seen("POST", "/containers/create")[0];
    assert_eq!(url_param(&create.query, "name"), "infermux-ci-llama");
    let b = &create.body;
    assert_eq!(b["Image"], "ghcr.io/ggml-org/llama.cpp:server");
    assert_eq!(b["Labels"]["infermux.managed"], "true");
    assert_eq!(b["Labels"]["infermux.owner"], "ci");
    assert_eq!(b["Labels"]["infermux.name"], "llama");
    assert_eq!(
        b["Cmd"],
        json!([
            "-m",
            "/models/smollm2.gguf",
            "--host",
            "0.0.0.0",
            "--port",
            port.to_string()
        ])
    );
    assert_eq!(b["Env"], json!(["LLAMA_ARG_THREADS=2"]));
    let key = format!("{port}/tcp");
    assert_eq!(b["ExposedPorts"][&key], json!({}));
    let h = &b["HostConfig"];
    assert_eq!(
        h["PortBindings"][&key],
        json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
    );
    assert_eq!(h["Binds"], json!(["/var/cache/models:/models:ro"]));
    assert_eq!(h["Memory"], json!(2i64 << 30));
    assert_eq!(h["DeviceRequests"][0]["Count"], 1);
    assert_eq!(h["DeviceRequests"][0]["Capabilities"], json!([["gpu"]]));

    // and the body is what the published spec describes
    check_against_spec(b);
}

/// A container of this owner id and spec name that another process still running on this
/// machine created is not a leftover: a start leaves it running, and its name being taken is
/// a configuration error naming the way out. Before, the second `infermux serve --docker` of
/// one name removed the first one's serving container (and the first's supervisor then the
/// second's).
#[tokio::test]
async fn a_live_processs_container_of_the_same_name_is_not_removed() {
    use infermux_containers::PROCESS_LABEL;
    let mut other = tokio::process::Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let label = DockerLauncher::process_label(other.id().unwrap()).expect("/proc tells");
    let [boot, ns, pid, start] = label.splitn(4, ':').collect::<Vec<_>>()[..] else {
        panic!("boot:ns:pid:start, not {label}")
    };
    let start: u64 = start.parse().unwrap();
    // made from another pid namespace of this boot: not this process's to judge, left
    let other_ns = format!("{boot}:1:{pid}:{start}");
    // that pid, but another start: its creator is gone, a leftover
    let gone = format!("{boot}:{ns}:{pid}:{}", start + 1);
    let container = |id: &str, label: &str| {
        json!({"Id": id, "Names": [format!("/{id}")], "State": "running",
            "Labels": {"infermux.managed": "true", "infermux.owner": "ci",
                "infermux.name": "llama", PROCESS_LABEL: label}})
    };
    // in another form (three fields, as no released version wrote): a leftover
    let odd = format!("{boot}:{pid}:{start}");
    let list = json!({"name": "list", "method": "GET", "path": "/containers/json", "status": 200,
        "body": [container("0the1other", &label), container("0other2ns", &other_ns),
                 container("0gone3", &gone), container("0odd4", &odd)]});
    let remove_gone = json!({"name": "remove", "method": "DELETE", "path": "/containers/0gone3",
        "status": 204});
    let remove_odd = json!({"name": "remove", "method": "DELETE", "path": "/containers/0odd4",
        "status": 204});
    let conflict = json!({"name": "create", "method": "POST", "path": "/containers/create",
        "status": 409, "body": {"message": "Conflict. The container name \"/infermux-ci-llama\" is already in use by container \"0the1other\". You have to remove (or rename) that container to be able to reuse that name."}});
    let replay = Replay::start_with(vec![list, remove_gone, remove_odd, conflict], Vec::new());
    let spec = ServerSpec::new("llama", "llama-server", free_port(), "/health")
        .unwrap()
        .with_image("ghcr.io/ggml-org/llama.cpp:server");
    let Err(e) = replay.launcher().start(&spec, LogBuffer::new(10)).await else {
        panic!("the name is taken")
    };
    assert!(matches!(e, infermux_containers::Error::Config(_)), "{e}");
    assert!(e.to_string().contains("another name"), "{e}");
    assert!(
        replay.seen("DELETE", "/containers/0the1other").is_empty(),
        "the live server's container was removed"
    );
    assert!(replay.seen("DELETE", "/containers/0other2ns").is_empty());
    assert_eq!(
        replay.seen("DELETE", "/containers/0gone3").len(),
        1,
        "a leftover"
    );
    assert_eq!(
        replay.seen("DELETE", "/containers/0odd4").len(),
        1,
        "a leftover"
    );
    // what this process creates says so
    let body = replay.launcher().create_body(&spec).unwrap();
    assert_eq!(
        body.labels.unwrap().get(PROCESS_LABEL),
        DockerLauncher::process_label(std::process::id()).as_ref()
    );
    let _ = other.kill().await;
}

/// The port is published on the host the readiness and health probes connect to: a spec's
/// `host` other than the default (`::`, a LAN address) is where the container listens too.
/// Before, it was published on 127.0.0.1 whatever the host, and a probe of `[::]` or a LAN
/// address waited out the whole ready timeout (`--host 0.0.0.0` was narrowed silently).
#[tokio::test]
async fn the_port_is_published_on_the_specs_host() {
    let replay = Replay::start(&[], &[]);
    let launcher = replay.launcher();
    for host in ["::", "0.0.0.0", "192.168.1.20", "127.0.0.1"] {
        let mut spec = ServerSpec::new("l", "llama-server", 8080, "/health")
            .unwrap()
            .with_image("img");
        spec.host = host.to_owned();
        let body = launcher.create_body(&spec).unwrap();
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let ip = bindings["8080/tcp"].as_ref().unwrap()[0].host_ip.clone();
        assert_eq!(ip.as_deref(), Some(host), "{}", spec.base_url());
    }
    // the engine takes addresses, not host names
    let mut spec = ServerSpec::new("l", "llama-server", 8080, "/health")
        .unwrap()
        .with_image("img");
    spec.host = "localhost".to_owned();
    let body = launcher.create_body(&spec).unwrap();
    let bindings = body.host_config.unwrap().port_bindings.unwrap();
    let ip = bindings["8080/tcp"].as_ref().unwrap()[0].host_ip.clone();
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    spec.host = "gpu-box.lan".to_owned();
    let e = launcher.create_body(&spec).unwrap_err();
    assert!(matches!(e, infermux_containers::Error::Config(_)), "{e}");
}

#[tokio::test]
async fn an_unknown_image_is_unknown_image_and_nothing_is_left() {
    let replay = Replay::start(&["list_empty", "create_no_image"], &[]);
    let spec = ServerSpec::new("llama", "llama-server", free_port(), "/health")
        .unwrap()
        .with_image("infermux/does-not-exist:1");
    let e = replay
        .launcher()
        .start(&spec, LogBuffer::new(10))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::UnknownImage { ref image } if image == "infermux/does-not-exist:1"),
        "{e}"
    );
    replay.verify();
    assert!(
        replay
            .seen("POST", "/containers/e90e34656806/start")
            .is_empty()
    );
}

#[tokio::test]
async fn a_port_the_engine_cannot_publish_is_port_in_use_and_the_container_is_removed() {
    let replay = Replay::start(
        &["list_empty", "create", "start_port_allocated", "remove"],
        &[],
    );
    let port = free_port();
    let e = replay
        .launcher()
        .start(&llama_spec(port), LogBuffer::new(10))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PortInUse { port: p } if p == port),
        "{e}"
    );
    replay.verify();
    let removed = &replay.seen("DELETE", "/containers/e90e34656806")[0];
    assert_eq!(url_param(&removed.query, "force"), "true");
}

#[tokio::test]
async fn a_start_cancelled_after_the_create_leaves_a_container_remove_leftovers_removes() {
    // the engine is slow to start the container; the caller gives up (Ctrl-C) meanwhile
    let replay = Replay::start(
        &["list_empty", "create", "list_created", "remove"],
        &["start_slow"],
    );
    let launcher = replay.launcher();
    let spec = llama_spec(free_port());
    let mut served = replay.state.served.subscribe();
    tokio::select! {
        r = launcher.start(&spec, LogBuffer::new(10)) => panic!("the start ended: {r:?}"),
        _ = served.wait_for(|s| s.iter().any(|n| n == "create")) => {}
    }
    // the start is dropped with the container created and owned by nobody
    assert!(replay.seen("DELETE", "/containers/e90e34656806").is_empty());
    assert_eq!(launcher.remove_leftovers(&spec).await.unwrap(), 1);
    replay.verify();
    let listed = &replay.seen("GET", "/containers/json")[1];
    let filters = url_param(&listed.query, "filters");
    assert!(filters.contains("infermux.name=llama"), "{filters}");
    let removed = &replay.seen("DELETE", "/containers/e90e34656806")[0];
    assert_eq!(url_param(&removed.query, "force"), "true");
}

#[tokio::test]
async fn leftovers_already_being_removed_are_waited_for_not_an_error() {
    // a dropped server's own removal is under way: the engine answers 409
    let replay = Replay::start(&["list_created", "remove_in_progress", "wait_removed"], &[]);
    let launcher = replay.launcher();
    assert_eq!(
        launcher
            .remove_leftovers(&llama_spec(free_port()))
            .await
            .unwrap(),
        1
    );
    replay.verify();
    let waited = &replay.seen("POST", "/containers/e90e34656806/wait")[0];
    assert_eq!(url_param(&waited.query, "condition"), "removed");
    // any other conflict is an error, and nothing is waited for
    let replay = Replay::start(&["list_created", "remove_conflict"], &[]);
    let e = replay
        .launcher()
        .remove_leftovers(&llama_spec(free_port()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    replay.verify();
    assert!(
        replay
            .seen("POST", "/containers/e90e34656806/wait")
            .is_empty()
    );
}

#[tokio::test]
async fn a_port_taken_on_the_host_is_refused_before_anything_is_created() {
    let replay = Replay::start(&["list_empty"], &[]);
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = replay
        .launcher()
        .start(&llama_spec(port), LogBuffer::new(10))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PortInUse { .. }), "{e}");
    replay.verify();
    assert!(replay.seen("POST", "/containers/create").is_empty());
}

#[test]
fn the_spec_check_rejects_a_create_body_of_the_wrong_shape() {
    // the check below can fail: a body with a wrongly typed field is refused
    let Some(spec) = engine_spec() else { return };
    let mut problems = Vec::new();
    let bad = json!({"Image": 7, "HostConfig": {"Memory": "2g"}});
    infermux_testkit::spec::check(&spec, &create_schema(&spec), &bad, "$", &mut problems);
    assert!(problems.iter().any(|p| p.contains("Image")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("Memory")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn against_a_real_engine_where_docker_host_is_set() {
    let Some(host) = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| h.starts_with("unix://"))
    else {
        // visible, and a failure only under INFERMUX_REQUIRE_DOCKER=1 (a machine with an engine)
        infermux_testkit::skip::skip(
            infermux_testkit::skip::Need::DockerEngine,
            "DOCKER_HOST is not a unix:// socket: no Docker engine to test against",
        );
        return;
    };
    let launcher = DockerLauncher::connect_unix(&host, "infermux-test").unwrap();
    let spec = ServerSpec::new("missing", "x", free_port(), "/health")
        .unwrap()
        .with_image("infermux/never-published-image:0");
    let e = launcher.start(&spec, LogBuffer::new(10)).await.unwrap_err();
    assert!(matches!(e, Error::UnknownImage { .. }), "{e}");
    assert_eq!(
        launcher.cleanup().await.unwrap(),
        0,
        "nothing labelled is left"
    );
}

fn url_param(query: &str, name: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn engine_spec() -> Option<Value> {
    infermux_testkit::spec::load_shared("fixtures/specs/docker/engine-api.swagger.yaml")
}

fn create_schema(spec: &Value) -> Value {
    let ops = &spec["paths"]["/containers/create"]["post"]["parameters"];
    ops.as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "body")
        .unwrap()["schema"]
        .clone()
}

fn check_against_spec(body: &Value) {
    let Some(spec) = engine_spec() else { return };
    let mut problems = Vec::new();
    infermux_testkit::spec::check(&spec, &create_schema(&spec), body, "$", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}
