//! Operations outside the [`Request`](infermux_core::Request) enum — speech, transcription,
//! file upload, token counting, model pulls, LoRA adapters, or any method of a concrete
//! provider — run through the same pools, keys, breakers, counters and call policy as every
//! call (the call policy is generic over the operation), with an explicit
//! idempotency: a non-idempotent operation is retried only when it provably never reached the
//! server.

use std::future::Future;

use futures_util::future::{Either, join_all};
use infermux_core::{EndpointId, Error, ErrorKind, Provider, RequestContext, Result, Served};
use infermux_multiplex::MemberState;
use infermux_resilience::Op;
use tracing::Instrument;

use crate::client::{Client, Inner};
use crate::router::Router;

/// One attempt's target of [`Client::run_op`]: the provider (as its concrete type), the
/// attempt's context and the deployment's model id.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpTarget<'a, P: ?Sized> {
    /// The member's provider.
    pub provider: &'a P,
    /// The attempt's context: pass it to the provider's method. It carries the member's leased
    /// key (sent only to this endpoint's origin), the attempt's deadline and the request id.
    pub ctx: RequestContext,
    /// The provider's model id of the member's deployment (`None`: the deployment takes any
    /// model, a single-endpoint client, or [`Client::run_op_each`], which runs per endpoint).
    pub model: Option<&'a str>,
}

/// What an operation run by [`Client::run_op`] gave, and who served it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ran<T> {
    /// The operation's value.
    pub value: T,
    /// Who served it (a routed client: group, deployment, endpoint, key alias, attempts);
    /// `None` for a single-endpoint client.
    pub served: Option<Served>,
}

fn not_offered(
    endpoint: &EndpointId,
    provider: &'static str,
    what: &str,
    ctx: &RequestContext,
) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("endpoint `{endpoint}` is a `{provider}` provider, which does not offer `{what}`"),
    )
    .in_context(ctx.request_id(), provider, endpoint)
}

/// An attempt's future, or `Unsupported` when the member's provider does not offer the
/// operation (checked before the call: never, as a provider's type does not change).
fn or_unsupported<T>(
    attempt: Option<impl Future<Output = Result<T>>>,
) -> impl Future<Output = Result<T>> {
    // not an `async fn`: that would hold the attempt's future twice (as its argument and as
    // the future it awaits)
    match attempt {
        Some(fut) => Either::Left(fut),
        None => Either::Right(std::future::ready(Err(Error::new(
            ErrorKind::Unsupported,
            "no such operation",
        )))),
    }
}

/// A single-endpoint client's provider, when `group` names none and it offers the operation.
fn single_target<'a, X>(
    r: &'a infermux_resilience::Resilient,
    group: Option<&str>,
    project: &impl Fn(&'a (dyn Provider + 'static)) -> Option<X>,
    what: &str,
    ctx: &RequestContext,
) -> Result<&'a (dyn Provider + 'static)> {
    if let Some(name) = group {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no model group named `{name}`: a single-endpoint client has none"),
        )
        .in_context(ctx.request_id(), r.name(), r.endpoint()));
    }
    let p = &**r.executor().provider();
    if project(p).is_none() {
        return Err(not_offered(p.endpoint(), p.name(), what, ctx));
    }
    Ok(p)
}

impl Router {
    /// Fails unless every member of group `g` offers the operation (`project` finds it).
    fn check_members<'a, X>(
        &'a self,
        g: usize,
        project: &impl Fn(&'a (dyn Provider + 'static)) -> Option<X>,
        what: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        for &ei in &self.groups[g].member_endpoints {
            let p = &**self.endpoints[ei].1.provider();
            if project(p).is_none() {
                return Err(not_offered(p.endpoint(), p.name(), what, ctx));
            }
        }
        Ok(())
    }
}

impl Client {
    /// Runs an operation of the concrete provider type `P` — any of its methods outside the
    /// [`Request`](infermux_core::Request) enum — on one member of `group` (`None`: the
    /// client's implicit group, or its only endpoint), through the same admission, key and
    /// member selection, breaker, counters, retries and call deadline as a call. `f` makes one
    /// attempt: it is called again for each retry, possibly with another member and key.
    /// `op` names the operation and says whether it is idempotent: a
    /// [`NonIdempotent`](infermux_core::Idempotency::NonIdempotent) one is retried only when
    /// the failed attempt provably never reached the server.
    ///
    /// Fails at once with [`ErrorKind::Unsupported`], sending nothing, when a member of the
    /// group is not a `P`; with [`ErrorKind::NotFound`] when the group does not exist. The
    /// group's fallback chain is not followed (another group may hold other providers); the
    /// call deadline is the context's, else the client's timeout (5 minutes by default): raise
    /// [`ClientBuilder::timeout`](crate::ClientBuilder::timeout) for long operations.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux::openai_compat::{OpenAiCompat, media::SpeechRequest};
    /// use infermux::resilience::Op;
    /// use infermux::{Client, EndpointConfig, Idempotency, RequestContext};
    /// use infermux_testkit::{FaultPlan, Simulator};
    ///
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", format!("{}/v1", sim.url())).unwrap()).unwrap();
    /// let client = Client::new(provider);
    /// // one of OpenAiCompat's own methods, with the client's queue, breaker and retries
    /// let req = SpeechRequest::new("tts-1", "Hello.", "alloy");
    /// let op = Op::new("speech", Idempotency::Idempotent);
    /// let ran = client
    ///     .run_op::<OpenAiCompat, _, _, _>(None, op, RequestContext::new(), |t| {
    ///         let req = &req;
    ///         async move { t.provider.media().speech(req, &t.ctx).await }
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert!(ran.served.is_none(), "a single endpoint");
    /// # }
    /// ```
    pub async fn run_op<'a, P, T, F, Fut>(
        &'a self,
        group: Option<&str>,
        op: Op,
        ctx: RequestContext,
        mut f: F,
    ) -> Result<Ran<T>>
    where
        P: Provider,
        F: FnMut(OpTarget<'a, P>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_projected(
            group,
            op,
            ctx,
            |p: &'a (dyn Provider + 'static)| p.downcast_ref::<P>(),
            move |provider, ctx, model| {
                f(OpTarget {
                    provider,
                    ctx,
                    model,
                })
            },
        )
        .await
    }

    /// [`Client::run_op`] over whatever `project` finds in a provider (several provider types
    /// may offer one operation).
    pub(crate) async fn run_projected<'a, X, T, J, F, Fut>(
        &'a self,
        group: Option<&str>,
        op: Op,
        ctx: RequestContext,
        project: J,
        mut f: F,
    ) -> Result<Ran<T>>
    where
        J: Fn(&'a (dyn Provider + 'static)) -> Option<X>,
        F: FnMut(X, RequestContext, Option<&'a str>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match &*self.inner {
            Inner::Single(r) => {
                let p = single_target(r, group, &project, op.name, &ctx)?;
                let called = r
                    .policy()
                    .run(r.executor(), op, &ctx, |_, actx| {
                        // checked above; a provider's type never changes
                        let x = project(p);
                        let attempt = x.map(|x| f(x, actx.clone(), None));
                        or_unsupported(attempt)
                    })
                    .await?;
                Ok(Ran {
                    value: called.value,
                    served: None,
                })
            }
            Inner::Routed(router) => {
                let g = router.group_for(group, &ctx)?;
                router.check_members(g, &project, op.name, &ctx)?;
                let ctx = router.call_context(ctx);
                let group = &router.groups[g];
                let called = router
                    .policy
                    .run(&group.pool, op, &ctx, |member, actx| {
                        let ei = group.member_endpoints.get(member as usize).copied();
                        let attempt = ei.and_then(|ei| {
                            let p = &**router.endpoints[ei].1.provider();
                            let model = group.pool.model_of(member);
                            project(p).map(|x| f(x, actx.clone(), model))
                        });
                        or_unsupported(attempt)
                    })
                    .await?;
                let served = router.served(g, called.member, called.attempts, None);
                tracing::info!(
                    "gen_ai.operation.name" = op.name,
                    "infermux.group" = &*served.group,
                    "infermux.deployment" = &*served.deployment,
                    "infermux.endpoint" = served.endpoint.as_str(),
                    "infermux.key" = served.key_alias.as_deref(),
                    "infermux.attempts" = served.attempts,
                    "served"
                );
                Ok(Ran {
                    value: called.value,
                    served: Some(served),
                })
            }
        }
    }

    /// Runs an operation of `P` on every endpoint of `group` (`None`: the implicit group, or
    /// the only endpoint), concurrently, each through the call policy against that endpoint
    /// alone (its queue, breaker, counters and retries): for what changes a server's state and
    /// must reach every replica — a model pull, a LoRA adapter loaded or unloaded. Each
    /// endpoint gets the key of its first member the group's pool holds eligible (a key cooling
    /// after a 429 or taken out after a 401 is passed over while another is usable); these
    /// attempts are not charged to the keys' RPM/TPM limits nor reported to the pool. One
    /// result per endpoint, in the order the group names them; one endpoint's failure does not
    /// stop the others.
    ///
    /// Fails at once with [`ErrorKind::Unsupported`], sending nothing, when an endpoint of the
    /// group is not a `P`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux::openai_compat::{OpenAiCompat, media::SpeechRequest};
    /// use infermux::resilience::Op;
    /// use infermux::{Client, EndpointConfig, Idempotency, RequestContext};
    /// use infermux_testkit::{FaultPlan, Simulator};
    ///
    /// let (a, b) = (Simulator::start(FaultPlan::none()).await.unwrap(), Simulator::start(FaultPlan::none()).await.unwrap());
    /// let ep = |name: &str, sim: &Simulator| {
    ///     OpenAiCompat::new(EndpointConfig::new(name, format!("{}/v1", sim.url())).unwrap()).unwrap()
    /// };
    /// let client = Client::builder().endpoint(ep("a", &a)).endpoint(ep("b", &b)).build().unwrap();
    /// let req = SpeechRequest::new("tts-1", "Hello.", "alloy");
    /// let op = Op::new("speech", Idempotency::Idempotent);
    /// let each = client
    ///     .run_op_each::<OpenAiCompat, _, _, _>(None, op, RequestContext::new(), |t| {
    ///         let req = &req;
    ///         async move { t.provider.media().speech(req, &t.ctx).await }
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(each.len(), 2);
    /// assert!(each.iter().all(|(_, r)| r.is_ok()));
    /// # }
    /// ```
    pub async fn run_op_each<'a, P, T, F, Fut>(
        &'a self,
        group: Option<&str>,
        op: Op,
        ctx: RequestContext,
        f: F,
    ) -> Result<Vec<(EndpointId, Result<T>)>>
    where
        P: Provider,
        F: Fn(OpTarget<'a, P>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_each_projected(
            group,
            op,
            ctx,
            |p: &'a (dyn Provider + 'static)| p.downcast_ref::<P>(),
            move |provider, ctx| {
                f(OpTarget {
                    provider,
                    ctx,
                    model: None,
                })
            },
        )
        .await
    }

    /// [`Client::run_op_each`] over whatever `project` finds in a provider.
    pub(crate) async fn run_each_projected<'a, X, T, J, F, Fut>(
        &'a self,
        group: Option<&str>,
        op: Op,
        ctx: RequestContext,
        project: J,
        f: F,
    ) -> Result<Vec<(EndpointId, Result<T>)>>
    where
        J: Fn(&'a (dyn Provider + 'static)) -> Option<X>,
        F: Fn(X, RequestContext) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let one = |exec: &'a infermux_resilience::AttemptExecutor,
                   policy: &'a infermux_resilience::CallPolicy,
                   ctx: RequestContext| {
            let (project, f) = (&project, &f);
            async move {
                let p = &**exec.provider();
                let called = policy
                    .run(exec, op, &ctx, |_, actx| {
                        let attempt = project(p).map(|x| f(x, actx.clone()));
                        or_unsupported(attempt)
                    })
                    .await?;
                Ok(called.value)
            }
        };
        match &*self.inner {
            Inner::Single(r) => {
                single_target(r, group, &project, op.name, &ctx)?;
                let result = one(r.executor(), r.policy(), ctx).await;
                Ok(vec![(r.endpoint().clone(), result)])
            }
            Inner::Routed(router) => {
                let g = router.group_for(group, &ctx)?;
                router.check_members(g, &project, op.name, &ctx)?;
                let ctx = router.call_context(ctx);
                // each endpoint once, with the key of its first member the pool holds eligible
                // (not cooling, limited or removed), else its first member not removed for
                // good, else its first
                let group = &router.groups[g];
                let status = group.pool.status();
                let rank = |m: usize| match status.get(m).map(|s| &s.state) {
                    Some(MemberState::Eligible) => 0,
                    Some(MemberState::Removed { until: None, .. }) => 2,
                    _ => 1,
                };
                let mut seen: Vec<(usize, u32)> = Vec::new();
                for (m, &ei) in group.member_endpoints.iter().enumerate() {
                    match seen.iter_mut().find(|(e, _)| *e == ei) {
                        Some(slot) if rank(m) < rank(slot.1 as usize) => slot.1 = m as u32,
                        Some(_) => {}
                        None => seen.push((ei, m as u32)),
                    }
                }
                let span = tracing::info_span!(
                    target: "infermux::call",
                    "infermux.op_each",
                    "gen_ai.operation.name" = op.name,
                    "infermux.request_id" = %ctx.request_id(),
                    "infermux.endpoints" = seen.len(),
                );
                let runs = seen.iter().map(|&(ei, m)| {
                    let (id, exec) = &router.endpoints[ei];
                    let ctx = match group.pool.key_of(m) {
                        Some(k) => ctx.clone().with_key(k.clone()),
                        None => ctx.clone(),
                    };
                    let fut = one(exec, &router.fixed_key, ctx);
                    async move { (id.clone(), fut.await) }
                });
                Ok(join_all(runs).instrument(span).await)
            }
        }
    }
}
