//! Each middleware as a `tower::Layer` (feature `tower`), for services whose error is
//! [`infermux_core::Error`]: [`AdmissionLayer`] (priority queue and concurrency permits),
//! [`BreakerLayer`] (one outcome per call) and [`RetryLayer`] (the retry policy, holding no
//! permit while it waits when placed outside the admission layer).
//!
//! ```
//! use infermux_resilience::breaker::{BreakerConfig, CircuitBreaker};
//! use infermux_resilience::queue::{Admission, QueueConfig};
//! use infermux_resilience::retry::StandardRetry;
//! use infermux_resilience::tower::{AdmissionLayer, BreakerLayer, RetryLayer};
//! use infermux_core::SystemClock;
//! use std::sync::Arc;
//! use tower_layer::Layer;
//!
//! # #[derive(Clone)] struct Echo;
//! # impl tower_service::Service<String> for Echo {
//! #     type Response = String; type Error = infermux_core::Error;
//! #     type Future = std::future::Ready<Result<String, infermux_core::Error>>;
//! #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
//! #     fn call(&mut self, r: String) -> Self::Future { std::future::ready(Ok(r)) }
//! # }
//! let breaker = Arc::new(CircuitBreaker::new(BreakerConfig::standard(), Arc::new(SystemClock)).unwrap());
//! let service = RetryLayer::new(Arc::new(StandardRetry::standard())).layer(
//!     AdmissionLayer::new(Admission::new(QueueConfig::standard()).unwrap())
//!         .layer(BreakerLayer::new(breaker).layer(Echo)),
//! );
//! # let _ = service;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use infermux_core::{Error, Priority};
use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::{Breaker, BreakerGuard, Outcome};
use crate::queue::Admission;
use crate::retry::{Attempt, Decision, RetryPolicy};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// Admission (priority queue + permits) as a layer. Every request waits at one priority.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Admission,
    priority: Priority,
}

impl AdmissionLayer {
    /// Admits requests through `admission` at normal priority.
    pub fn new(admission: Admission) -> Self {
        AdmissionLayer {
            admission,
            priority: Priority::Normal,
        }
    }
    /// Admits at `priority`.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
            priority: self.priority,
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Admission,
    priority: Priority,
}

impl<S, R> Service<R> for AdmissionService<S>
where
    S: Service<R, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<S::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // capacity is decided per request, in the queue
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let (admission, priority) = (self.admission.clone(), self.priority);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let permit = admission.acquire(priority).await?;
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let result = inner.call(req).await;
            drop(permit);
            result
        })
    }
}

/// A circuit breaker as a layer.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Arc<dyn Breaker>,
}

impl BreakerLayer {
    /// Guards calls with `breaker`.
    pub fn new(breaker: Arc<dyn Breaker>) -> Self {
        BreakerLayer { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// The service of [`BreakerLayer`].
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Arc<dyn Breaker>,
}

impl<S, R> Service<R> for BreakerService<S>
where
    S: Service<R, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let guard = BreakerGuard::acquire(&self.breaker);
        let fut = guard.as_ref().ok().map(|_| self.inner.call(req));
        Box::pin(async move {
            let guard = guard?;
            let Some(fut) = fut else {
                return Err(Error::new(
                    infermux_core::ErrorKind::CircuitOpen,
                    "circuit open",
                ));
            };
            let t0 = Instant::now();
            let result = fut.await;
            guard.record(Outcome::of(&result), t0.elapsed());
            result
        })
    }
}

/// A retry policy as a layer (requests must be `Clone`). Place it outside the admission
/// layer so no permit is held while it waits.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: Arc<dyn RetryPolicy>,
}

impl RetryLayer {
    /// Retries with `policy`.
    pub fn new(policy: Arc<dyn RetryPolicy>) -> Self {
        RetryLayer { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct RetryService<S> {
    inner: S,
    policy: Arc<dyn RetryPolicy>,
}

impl<S, R> Service<R> for RetryService<S>
where
    S: Service<R, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    R: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<S::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let mut inner = self.inner.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                match inner.call(req.clone()).await {
                    Ok(r) => {
                        policy.on_success();
                        return Ok(r);
                    }
                    Err(e) => match policy.decide(&Attempt::new(&e, attempt)) {
                        Decision::Retry(after) => {
                            // the retry took a budget token: given back if the caller gives up
                            // during the pause (its future dropped), as `CallPolicy` does
                            let guard = GiveBack(&*policy);
                            tokio::time::sleep(after).await;
                            std::mem::forget(guard);
                        }
                        Decision::Stop(reason) => {
                            return Err(e.with_attempts(attempt).with_stop_reason(reason));
                        }
                    },
                }
                attempt += 1;
            }
        })
    }
}

/// Calls [`RetryPolicy::on_abandoned`] when dropped: armed over a retry's pause, forgotten
/// once the pause is over.
struct GiveBack<'a>(&'a dyn RetryPolicy);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.on_abandoned();
    }
}
