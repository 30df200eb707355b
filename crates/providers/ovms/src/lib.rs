//! infermux provider for OpenVINO Model Server (OVMS):
//!
//! - the TF-Serving REST API: [`Ovms::predict_rows`] (`instances`) and
//!   [`Ovms::predict_columns`] (`inputs`) on `/v1/models/{m}[/versions/{v}]:predict`, model
//!   status with versions ([`Ovms::model_status`]) and metadata;
//! - the KServe v2 REST API: [`Ovms::infer`] on `/v2/models/{m}[/versions/{v}]/infer` with
//!   typed [`Tensor`]s (ndarray in and out), model metadata, `/v2/health/ready`;
//! - the OpenAI-compatible `/v3` routes (chat, completions, embeddings, models) through
//!   `infermux-openai-compat`, and `/v3/rerank`, as the [`Provider`] implementation.
//!
//! No OVMS server can run where infermux is tested and no recording of one exists: the tests
//! run against the testkit simulator, built from OVMS's published REST documentation.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `ovms`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{EndpointConfig, RequestContext};
//! use infermux_ovms::{Ovms, Tensor};
//! use ndarray::array;
//!
//! let ovms = Ovms::new(EndpointConfig::new("ovms", "http://127.0.0.1:8000")?)?;
//! let input = Tensor::from_f32("input", array![[1.0f32, 2.0, 3.0, 4.0]].into_dyn());
//! let out = ovms.infer("resnet", None, &[input], &RequestContext::new()).await?;
//! println!("{:?}", out.outputs[0].to_f32()?);
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! - `unified`: `unified::launch` starts an OVMS server (a process or a container, through
//!   `infermux-containers`), waits until it is ready and returns this crate's client with the
//!   server's supervisor.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod tensor;
#[cfg(feature = "unified")]
pub mod unified;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, Operation, Provider,
    Request, RequestContext, RequestId, RerankResponse, RerankResult, Response, Result,
};
use infermux_http::{Auth, HttpEndpoint};
use infermux_openai_compat::OpenAiCompat;
use std::borrow::Cow;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The `ndarray` whose arrays [`Tensor`] converts from and to: name its types through this
/// path to get the same version.
pub use ndarray;
use tensor::{ObjOnly, TensorJson, WireTensor};
pub use tensor::{Tensor, TensorData};

/// The most documents one `/v3/rerank` request carries: the server refuses more than its
/// configured limit, 100 by default (its rerank API's "Error handling").
pub const MAX_RERANK_DOCUMENTS: usize = 100;

/// The provider name errors and counters carry.
pub const NAME: &str = "ovms";
/// The environment variable [`Ovms::from_env`] reads the server's URL from.
pub const BASE_URL_ENV: &str = "OVMS_BASE_URL";
/// The URL [`Ovms::from_env`] uses when `OVMS_BASE_URL` is unset: OVMS has no default REST
/// port (`--rest_port` sets it); 8000 is the one its documentation's examples use.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8000";

/// The status of one model version (`GET /v1/models/{m}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct VersionStatus {
    /// Version.
    pub version: String,
    /// `AVAILABLE`, `LOADING`, `UNLOADING`, `END`...
    pub state: String,
    /// Error code (`OK`).
    pub error_code: String,
    /// Error message.
    pub error_message: String,
}

/// The answer of a KServe v2 inference.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InferResponse {
    /// Model.
    pub model_name: String,
    /// Version that answered.
    pub model_version: Option<String>,
    /// Request id echoed back.
    pub id: Option<String>,
    /// Output tensors.
    pub outputs: Vec<Tensor>,
}

/// A client of one OVMS instance (base URL without a version prefix).
#[derive(Debug, Clone)]
pub struct Ovms {
    http: HttpEndpoint,
    v3: OpenAiCompat,
}

fn segment(s: &str) -> Result<&str> {
    infermux_http::PathName::SEGMENT.check("model name or version", s)
}

fn model_path(api: &str, model: &str, version: Option<&str>) -> Result<String> {
    let mut p = format!("/{api}/models/{}", segment(model)?);
    if let Some(v) = version {
        p.push_str("/versions/");
        p.push_str(segment(v)?);
    }
    Ok(p)
}

/// `{"instances": …}`.
#[derive(Serialize)]
struct Instances<'a> {
    instances: &'a Value,
}

/// `{"inputs": …}`.
#[derive(Serialize)]
struct Inputs<'a> {
    inputs: &'a Value,
}

/// A KServe v2 inference body: the request id and the input tensors.
#[derive(Serialize)]
struct InferBody<I> {
    id: DisplayStr<RequestId>,
    inputs: I,
}

/// A value written as the string its `Display` prints (no `String` in between).
struct DisplayStr<T>(T);

impl<T: std::fmt::Display> Serialize for DisplayStr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A sequence written from an iterator that can be cloned.
struct Seq<I>(I);

impl<I: Iterator<Item = T> + Clone, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

/// A KServe v2 inference answer, as read on the fast path.
#[derive(Deserialize)]
struct WireInfer<'a> {
    #[serde(default, borrow)]
    model_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outputs: Vec<ObjOnly<WireTensor<'a>>>,
}

/// The `/v3/rerank` body.
#[derive(Serialize)]
struct RerankBody<'a> {
    documents: &'a [String],
    model: &'a str,
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_n: Option<u32>,
}

/// A `/v3/rerank` answer, as read on the fast path.
#[derive(Deserialize)]
struct WireRerank {
    results: Vec<ObjOnly<WireRank>>,
}

/// One result of a `/v3/rerank` answer.
#[derive(Deserialize)]
struct WireRank {
    index: usize,
    relevance_score: f64,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    infermux_http::json::from_body(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("{what} is not the expected JSON: {e}"),
        )
    })
}

impl Ovms {
    /// A client for `config` (the server's root; a trailing `/v1`, `/v2` or `/v3`, as OVMS's
    /// docs write base URLs for one API, is removed); a key, if any, goes as Bearer.
    pub fn new(mut config: EndpointConfig) -> Result<Self> {
        // one of them at most (`…/v3/v3` is a path of the user's), and never the host
        let root = infermux_core::server_root(&config.base_url, &[]);
        let root = ["/v1", "/v2", "/v3"]
            .iter()
            .map(|v| infermux_core::server_root(&root, &[v]))
            .find(|r| r.len() < root.len())
            .unwrap_or(root);
        config.base_url = root;
        // one connection pool for the TF-Serving, KServe and OpenAI-compatible (`/v3`) routes
        let http = HttpEndpoint::new(NAME, config, Auth::Bearer)?;
        let v3 = http.rebased(format!("{}/v3", http.config().base_url))?;
        Ok(Ovms {
            http,
            v3: OpenAiCompat::with_http(v3).with_capabilities(
                Capabilities::new()
                    .with(Operation::Chat)
                    .with(Operation::ChatStream)
                    .with(Operation::Tools)
                    .with(Operation::Vision)
                    .with(Operation::Completion)
                    .with(Operation::Embeddings)
                    .with(Operation::Models)
                    .with(Operation::Rerank),
            ),
        })
    }

    /// A client from `OVMS_BASE_URL` (the server's root URL, without a version prefix),
    /// default [`DEFAULT_BASE_URL`]; no key (OVMS has no authentication of its own). Fails with
    /// [`ErrorKind::Config`] when the URL is invalid.
    ///
    /// ```
    /// use infermux_ovms::Ovms;
    /// // OVMS_BASE_URL=http://127.0.0.1:8000 (the default when unset)
    /// let ovms = Ovms::from_env()?;
    /// # Ok::<(), infermux_core::Error>(())
    /// ```
    pub fn from_env() -> Result<Self> {
        Self::new(EndpointConfig::from_env(
            NAME,
            BASE_URL_ENV,
            Some(DEFAULT_BASE_URL),
        )?)
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    async fn get_json(&self, path: &str, what: &str, ctx: &RequestContext) -> Result<Value> {
        let body = self.http.get(path).send(ctx).await?.bytes().await?;
        decode(&body, what).map_err(self.ctx_err(ctx))
    }

    async fn post_bytes(
        &self,
        path: &str,
        body: &(impl serde::Serialize + Sync),
        ctx: &RequestContext,
    ) -> Result<impl std::ops::Deref<Target = [u8]>> {
        self.http
            .post(path)
            .json(body)
            .send(ctx)
            .await?
            .bytes()
            .await
    }

    async fn post_json(
        &self,
        path: &str,
        body: &(impl serde::Serialize + Sync),
        what: &str,
        ctx: &RequestContext,
    ) -> Result<Value> {
        let body = self.post_bytes(path, body, ctx).await?;
        decode(&body, what).map_err(self.ctx_err(ctx))
    }

    /// Whether the server is ready (`GET /v2/health/ready` answers 200).
    pub async fn ready(&self, ctx: &RequestContext) -> Result<bool> {
        let resp = self.http.get("/v2/health/ready").send_raw(ctx).await?;
        Ok(resp.status() == 200)
    }

    /// TF-Serving model status, all versions or one.
    pub async fn model_status(
        &self,
        model: &str,
        version: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Vec<VersionStatus>> {
        #[derive(Deserialize)]
        struct Status {
            error_code: String,
            #[serde(default)]
            error_message: String,
        }
        #[derive(Deserialize)]
        struct Item {
            version: Value,
            state: String,
            status: Status,
        }
        #[derive(Deserialize)]
        struct Wire {
            model_version_status: Vec<Item>,
        }
        let path = model_path("v1", model, version).map_err(self.ctx_err(ctx))?;
        let v = self.get_json(&path, "model status", ctx).await?;
        let w: Wire = serde_json::from_value(v).map_err(|e| {
            self.ctx_err(ctx)(Error::new(ErrorKind::Decode, format!("model status: {e}")))
        })?;
        Ok(w.model_version_status
            .into_iter()
            .map(|i| VersionStatus {
                version: match i.version {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                state: i.state,
                error_code: i.status.error_code,
                error_message: i.status.error_message,
            })
            .collect())
    }

    /// TF-Serving model metadata (the signature definitions), as JSON.
    pub async fn tfs_metadata(
        &self,
        model: &str,
        version: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Value> {
        let path = format!(
            "{}/metadata",
            model_path("v1", model, version).map_err(self.ctx_err(ctx))?
        );
        self.get_json(&path, "model metadata", ctx).await
    }

    /// KServe v2 model metadata (inputs and outputs with datatypes and shapes), as JSON.
    pub async fn metadata(
        &self,
        model: &str,
        version: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Value> {
        let path = model_path("v2", model, version).map_err(self.ctx_err(ctx))?;
        self.get_json(&path, "model metadata", ctx).await
    }

    /// TF-Serving predict in row format: `{"instances": ...}` → `predictions`.
    pub async fn predict_rows(
        &self,
        model: &str,
        version: Option<&str>,
        instances: Value,
        ctx: &RequestContext,
    ) -> Result<Value> {
        let path = format!(
            "{}:predict",
            model_path("v1", model, version).map_err(self.ctx_err(ctx))?
        );
        let mut v = self
            .post_json(
                &path,
                &Instances {
                    instances: &instances,
                },
                "predict answer",
                ctx,
            )
            .await?;
        v.get_mut("predictions").map(Value::take).ok_or_else(|| {
            self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                "predict answer has no predictions",
            ))
        })
    }

    /// TF-Serving predict in columnar format: `{"inputs": ...}` → `outputs`.
    pub async fn predict_columns(
        &self,
        model: &str,
        version: Option<&str>,
        inputs: Value,
        ctx: &RequestContext,
    ) -> Result<Value> {
        let path = format!(
            "{}:predict",
            model_path("v1", model, version).map_err(self.ctx_err(ctx))?
        );
        let mut v = self
            .post_json(&path, &Inputs { inputs: &inputs }, "predict answer", ctx)
            .await?;
        v.get_mut("outputs").map(Value::take).ok_or_else(|| {
            self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                "predict answer has no outputs",
            ))
        })
    }

    /// KServe v2 inference with typed tensors.
    pub async fn infer(
        &self,
        model: &str,
        version: Option<&str>,
        inputs: &[Tensor],
        ctx: &RequestContext,
    ) -> Result<InferResponse> {
        let path = format!(
            "{}/infer",
            model_path("v2", model, version).map_err(self.ctx_err(ctx))?
        );
        let body = InferBody {
            id: DisplayStr(ctx.request_id()),
            inputs: Seq(inputs.iter().map(TensorJson)),
        };
        let bytes = self.post_bytes(&path, &body, ctx).await?;
        // a well-formed answer is read straight into tensors; anything else through a `Value`,
        // as it always was, with the same errors
        if let Ok(ObjOnly(w)) = serde_json::from_slice::<ObjOnly<WireInfer<'_>>>(&bytes)
            && let Some(outputs) = w
                .outputs
                .into_iter()
                .map(|t| t.0.tensor())
                .collect::<Option<Vec<_>>>()
        {
            return Ok(InferResponse {
                model_name: w
                    .model_name
                    .map_or_else(|| model.to_owned(), Cow::into_owned),
                model_version: w.model_version.map(Cow::into_owned),
                id: w.id.map(Cow::into_owned),
                outputs,
            });
        }
        let v: Value = decode(&bytes, "inference answer").map_err(self.ctx_err(ctx))?;
        let outputs = v["outputs"]
            .as_array()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "inference answer has no outputs"))
            .and_then(|o| o.iter().map(Tensor::from_json).collect::<Result<Vec<_>>>())
            .map_err(self.ctx_err(ctx))?;
        Ok(InferResponse {
            model_name: v["model_name"].as_str().unwrap_or(model).to_owned(),
            model_version: v["model_version"].as_str().map(str::to_owned),
            id: v["id"].as_str().map(str::to_owned),
            outputs,
        })
    }

    /// `/v3/rerank`, in requests of at most [`MAX_RERANK_DOCUMENTS`] documents (the server
    /// refuses more by default): each part's results re-indexed into the whole request, then
    /// ranked together (a cross-encoder scores each document on its own) and cut at `top_n`.
    async fn rerank(
        &self,
        r: &infermux_core::RerankRequest,
        ctx: &RequestContext,
    ) -> Result<RerankResponse> {
        if r.documents.len() <= MAX_RERANK_DOCUMENTS {
            return self.rerank_one(r, ctx).await;
        }
        let mut results = Vec::new();
        for (i, part) in r.documents.chunks(MAX_RERANK_DOCUMENTS).enumerate() {
            let mut sub = r.clone();
            sub.documents = part.to_vec();
            let start = i * MAX_RERANK_DOCUMENTS;
            let answer = self.rerank_one(&sub, ctx).await?;
            results.extend(
                answer
                    .results
                    .into_iter()
                    .map(|x| RerankResult::new(x.index + start, x.score)),
            );
        }
        results.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(n) = r.top_n {
            results.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(RerankResponse::new(r.model.clone(), results))
    }

    async fn rerank_one(
        &self,
        r: &infermux_core::RerankRequest,
        ctx: &RequestContext,
    ) -> Result<RerankResponse> {
        let body = RerankBody {
            documents: &r.documents,
            model: &r.model,
            query: &r.query,
            top_n: r.top_n,
        };
        let bytes = self.post_bytes("/v3/rerank", &body, ctx).await?;
        // a well-formed answer is read straight into results; anything else through a
        // `Value`, as it always was, with the same errors
        if let Ok(ObjOnly(w)) = infermux_http::json::from_body::<ObjOnly<WireRerank>>(&bytes)
            && w.results.iter().all(|x| x.0.index < r.documents.len())
            && distinct(w.results.iter().map(|x| x.0.index), r.documents.len())
        {
            let results = w
                .results
                .into_iter()
                .map(|ObjOnly(x)| RerankResult::new(x.index, x.relevance_score as f32))
                .collect();
            return Ok(RerankResponse::new(r.model.clone(), results));
        }
        let v: Value = decode(&bytes, "rerank answer").map_err(self.ctx_err(ctx))?;
        let bad = || {
            self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                "rerank answer has no valid results",
            ))
        };
        let results = v["results"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|x| {
                let index = x["index"].as_u64().and_then(|i| usize::try_from(i).ok());
                let score = x["relevance_score"].as_f64();
                match (index, score) {
                    (Some(i), Some(s)) if i < r.documents.len() => {
                        Ok(RerankResult::new(i, s as f32))
                    }
                    _ => Err(bad()),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // a document ranked twice would show it twice and hide another
        if !distinct(results.iter().map(|x| x.index), r.documents.len()) {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                "rerank answer ranks a document twice",
            )));
        }
        Ok(RerankResponse::new(r.model.clone(), results))
    }
}

/// Whether `indices` (each below `n`) name no document twice.
fn distinct(indices: impl Iterator<Item = usize>, n: usize) -> bool {
    let mut seen = vec![false; n];
    indices.into_iter().all(|i| match seen.get_mut(i) {
        Some(s) if !*s => {
            *s = true;
            true
        }
        _ => false,
    })
}

#[async_trait]
impl Provider for Ovms {
    fn name(&self) -> &'static str {
        NAME
    }
    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }
    fn capabilities(&self) -> Capabilities {
        self.v3.capabilities()
    }
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        match request {
            Request::Rerank(r) => self.rerank(r, ctx).await.map(Response::Rerank),
            other => self.v3.call(other, ctx).await,
        }
    }
    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        self.v3.stream(request, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_testkit::{FaultPlan, Simulator};

    /// The marker of a child run of [`from_env_child`], and what it checks.
    const CHILD: &str = "INFERMUX_OVMS_FROM_ENV_CHILD";

    /// Runs [`from_env_child`] in a child process of this test binary with `env` set (the
    /// environment of this process is never changed) and asserts it passed.
    fn run_child(mode: &str, env: &[(&str, &str)]) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "tests::from_env_child", "--nocapture"])
            .env(CHILD, mode)
            .env_remove(BASE_URL_ENV);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child {mode}: {text}");
        assert!(text.contains(&format!("child {mode} done")), "{text}");
    }

    /// The child half of [`from_env_reads_ovms_base_url_with_a_default`]: does nothing unless
    /// started by it.
    #[tokio::test]
    async fn from_env_child() {
        let Ok(mode) = std::env::var(CHILD) else {
            return;
        };
        let ovms = Ovms::from_env().unwrap();
        match mode.as_str() {
            "set" => assert!(ovms.ready(&RequestContext::new()).await.unwrap()),
            "unset" => assert_eq!(ovms.http.config().base_url, DEFAULT_BASE_URL),
            other => panic!("unknown mode {other}"),
        }
        assert!(ovms.http.config().api_key.is_none());
        println!("child {mode} done");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_env_reads_ovms_base_url_with_a_default() {
        let sim = Simulator::start(FaultPlan::none()).await.unwrap();
        let url = sim.url();
        tokio::task::spawn_blocking(move || {
            run_child("set", &[(BASE_URL_ENV, url.as_str())]);
            run_child("unset", &[]);
        })
        .await
        .unwrap();
        assert_eq!(sim.requests(), 1);
        assert_eq!(sim.requests_log()[0].path, "/v2/health/ready");
    }
}
