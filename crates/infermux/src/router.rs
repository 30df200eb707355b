//! Routing by model group: the application names a group (`"chat-fast"`), the router maps it to
//! a [`MultiPool`] of deployments (endpoint + key + the provider's model id), runs the call
//! through the [`CallPolicy`], and on a chosen error kind falls back along the group's ordered
//! chain. Every answer says who served it ([`Served`]) and every fallback is a `tracing` event.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use infermux_core::{
    EndpointId, Error, ErrorKind, EventStream, FallbackTaken, Request, RequestContext, Response,
    Result, Served,
};
use infermux_multiplex::MultiPool;
use infermux_resilience::{AttemptExecutor, CallPolicy, Called, call_span};
use tracing::Instrument;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One model group: its name, its pool and, per pool member, the deployment it belongs to.
pub(crate) struct Group {
    pub(crate) name: Arc<str>,
    pub(crate) pool: MultiPool,
    /// The deployment name of each pool member.
    pub(crate) deployments: Vec<Arc<str>>,
    /// The index (in [`Router::endpoints`]) of each pool member's endpoint.
    pub(crate) member_endpoints: Vec<usize>,
}

/// A fallback chain from one group: the groups to try in order, and the error kinds that move
/// the call on.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub(crate) to: Vec<usize>,
    pub(crate) on: Vec<ErrorKind>,
}

/// What a routed call carries: one call, one stream, or a batch of several callers' items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Call,
    Stream,
    Batch,
}

/// The routed side of a client: endpoints, groups, fallback chains and the call policy.
pub(crate) struct Router {
    pub(crate) endpoints: Vec<(EndpointId, Arc<AttemptExecutor>)>,
    pub(crate) groups: Vec<Group>,
    pub(crate) by_name: HashMap<Arc<str>, usize>,
    /// The group every request goes to when the client was built without groups.
    pub(crate) default: Option<usize>,
    pub(crate) chains: Vec<Option<Chain>>,
    pub(crate) policy: CallPolicy,
    /// The policy of attempts that keep one key (an operation on every endpoint): the
    /// configured retry alone, without moving to another key.
    pub(crate) fixed_key: CallPolicy,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "endpoints",
                &self.endpoints.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .field(
                "groups",
                &self.groups.iter().map(|g| &g.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Router {
    /// The group a request goes to: the one its model names, else the default.
    pub(crate) fn resolve(&self, request: &Request, ctx: &RequestContext) -> Result<usize> {
        if let Some(&g) = request.model().and_then(|m| self.by_name.get(m)) {
            return Ok(g);
        }
        self.default
            .ok_or_else(|| self.no_group(request.model().unwrap_or(""), ctx))
    }

    /// The group an operation names (`None`: the client's implicit group); never another.
    pub(crate) fn group_for(&self, group: Option<&str>, ctx: &RequestContext) -> Result<usize> {
        let found = match group {
            Some(name) => self.by_name.get(name).copied(),
            None => self.default,
        };
        found.ok_or_else(|| self.no_group(group.unwrap_or(""), ctx))
    }

    /// `NotFound` for a group named `name`, listing the groups there are.
    fn no_group(&self, name: &str, ctx: &RequestContext) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no model group named `{name}` (groups: {})",
                self.groups
                    .iter()
                    .map(|g| &*g.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .in_context(ctx.request_id(), "infermux", &EndpointId::new("router"))
    }

    /// Who served member `member` of group `g`.
    pub(crate) fn served(
        &self,
        g: usize,
        member: u32,
        attempts: u32,
        fallback: Option<FallbackTaken>,
    ) -> Served {
        let group = &self.groups[g];
        let info = group.pool.member(member);
        let deployment = group
            .deployments
            .get(member as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        let (endpoint, alias, model) = match info {
            Some(i) => (i.endpoint, i.key_alias, i.model),
            None => (EndpointId::new(""), None, None),
        };
        let mut s = Served::from_shared(
            group.name.clone(),
            deployment,
            endpoint,
            model.unwrap_or_else(|| Arc::from("")),
        );
        s.key_alias = alias;
        s.attempts = attempts;
        s.fallback = fallback;
        s
    }

    /// The next group after a failure in `chain_of` at hop `hops`, if `e` triggers a fallback.
    /// A batch of several items ([`Route::Batch`]) refused for the size of what it holds (an
    /// input too long for the context, an answer past the body limit) does not fall back: the
    /// batcher splits it, and the item failing alone may. (Another refusal, which may be the
    /// whole request's, falls back whole as before: split, its parts past the batcher's split
    /// budget would fail without a fallback.)
    fn next(&self, first: usize, hops: u32, e: &Error, route: Route) -> Option<usize> {
        let chain = self.chains.get(first)?.as_ref()?;
        let sized = e.kind() == ErrorKind::ContextLength || e.is_over_body_limit();
        if !chain.on.contains(&e.kind()) || (route == Route::Batch && sized) {
            return None;
        }
        chain.to.get(hops as usize).copied()
    }

    /// The context every group's call shares: the call deadline is fixed once, so a fallback
    /// spends what is left of it, never a fresh one.
    pub(crate) fn call_context(&self, ctx: RequestContext) -> RequestContext {
        // a timeout too long to add to now is no deadline at all (never a panic)
        match (ctx.deadline(), self.policy.timeout()) {
            (None, Some(t)) => ctx.with_timeout(t),
            _ => ctx,
        }
    }

    /// Runs `attempt` (given a group's index) on the request's group and, on a failure whose kind its fallback chain
    /// names, on the next group of the chain, within one call deadline; says who served.
    async fn route<T, F, Fut>(
        &self,
        request: &Request,
        ctx: RequestContext,
        route: Route,
        attempt: F,
    ) -> Result<(T, Served)>
    where
        F: Fn(usize, RequestContext, tracing::Span) -> Fut,
        Fut: std::future::Future<Output = Result<Called<T>>>,
    {
        let first = self.resolve(request, &ctx)?;
        let ctx = self.call_context(ctx);
        let stream = route == Route::Stream;
        let (mut g, mut hops, mut attempts) = (first, 0u32, 0u32);
        let mut trigger = None;
        loop {
            let group = &self.groups[g];
            let span = call_span(request, &ctx, "infermux", &group.name, stream);
            let fut = attempt(g, ctx.clone(), span.clone());
            // a span no subscriber records is not entered on every poll
            let result = if span.is_disabled() {
                fut.await
            } else {
                fut.instrument(span.clone()).await
            };
            // what the call ended with is told inside its span (its request id, its group)
            let _in_call = span.enter();
            match result {
                Ok(Called {
                    value,
                    member,
                    attempts: a,
                    ..
                }) => {
                    let fallback = trigger
                        .map(|t| FallbackTaken::new(self.groups[first].name.clone(), t, hops));
                    let served = self.served(g, member, attempts + a, fallback);
                    tracing::info!(
                        "infermux.group" = &*served.group,
                        "infermux.deployment" = &*served.deployment,
                        "infermux.endpoint" = served.endpoint.as_str(),
                        "infermux.key" = served.key_alias.as_deref(),
                        "infermux.attempts" = served.attempts,
                        "infermux.fallback" = served.fallback.is_some(),
                        "infermux.stream" = stream,
                        "served"
                    );
                    return Ok((value, served));
                }
                Err(e) => {
                    attempts += e.attempts();
                    match self.next(first, hops, &e, route) {
                        Some(next) => {
                            tracing::warn!(
                                "infermux.group" = &*group.name,
                                "infermux.fallback_to" = &*self.groups[next].name,
                                "error.type" = e.kind().as_str(),
                                "falling back"
                            );
                            trigger = Some(e.kind());
                            hops += 1;
                            g = next;
                        }
                        None => return Err(e.with_attempts(attempts)),
                    }
                }
            }
        }
    }

    /// One call, routed, with fallbacks; the response says who served it.
    pub(crate) async fn call(&self, request: &Request, ctx: RequestContext) -> Result<Response> {
        self.call_boxed(request, ctx).await.map(|r| *r)
    }

    /// [`Router::call`] with the answer in the box it came up the pool's attempt in.
    pub(crate) async fn call_boxed(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<Box<Response>> {
        self.call_routed(request, ctx, Route::Call).await
    }

    /// One batch of several callers' items ([`Route::Batch`]), routed: an error that may be
    /// one item's falls back no further (the batcher splits the batch).
    pub(crate) async fn call_batch(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<Response> {
        self.call_routed(request, ctx, Route::Batch)
            .await
            .map(|r| *r)
    }

    async fn call_routed(
        &self,
        request: &Request,
        ctx: RequestContext,
        route: Route,
    ) -> Result<Box<Response>> {
        let (mut value, served) = self
            .route(request, ctx, route, |g, ctx, span| async move {
                let pool = &self.groups[g].pool;
                self.policy.call_boxed(pool, request, &ctx, span).await
            })
            .await?;
        value.set_served(served);
        Ok(value)
    }

    /// One streamed call, routed; falls back only before the first content event (the
    /// policy resolves the stream there), and says who serves it. Boxed: the routed future
    /// nests the pool's admission (and its Redis round trips) inside the policy's retries
    /// inside the fallback loop, and a caller's async fn awaiting it beside a routed `call`
    /// could exceed rustc's query depth when its layout is computed (a stream allocates
    /// anyway; the plain call stays unboxed).
    pub(crate) fn stream<'a>(
        &'a self,
        request: &'a Request,
        ctx: RequestContext,
    ) -> BoxFuture<'a, Result<(EventStream, Served)>> {
        Box::pin(self.route(
            request,
            ctx,
            Route::Stream,
            move |g, ctx, span| async move {
                let pool = &self.groups[g].pool;
                self.policy.stream_traced(pool, request, &ctx, span).await
            },
        ))
    }

    /// Prometheus text of every endpoint's counters and every pool's members.
    pub(crate) fn prometheus(&self) -> String {
        let snaps: Vec<_> = self
            .endpoints
            .iter()
            .map(|(id, e)| (id.clone(), e.counters().snapshot()))
            .collect();
        let mut out = infermux_resilience::render_prometheus(&snaps);
        let pools: Vec<_> = self.groups.iter().map(|g| (&*g.name, &g.pool)).collect();
        infermux_multiplex::MultiPool::render_prometheus_all(&pools, &mut out);
        out
    }
}
