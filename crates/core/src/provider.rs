//! The one seam: the object-safe [`Provider`] trait every backend implements.

use std::any::Any;
use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::context::RequestContext;
use crate::error::Result;
use crate::id::EndpointId;
use crate::stream::StreamEvent;
use crate::types::{Request, Response};

/// A stream of events of one streamed answer. It owns whatever the layers below attached to it
/// (permit, breaker guard): dropping it ends the call as `Cancelled`.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent>> + Send>>;

/// An operation or feature a provider may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Chat.
    Chat,
    /// Streamed chat.
    ChatStream,
    /// Tool calling in chat.
    Tools,
    /// Images in chat messages.
    Vision,
    /// Legacy completion.
    Completion,
    /// Streamed legacy completion.
    CompletionStream,
    /// Embeddings.
    Embeddings,
    /// Rerank.
    Rerank,
    /// Model listing.
    Models,
}

impl Operation {
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The set of operations a provider offers.
///
/// ```
/// use infermux_core::{Capabilities, Operation};
/// let caps = Capabilities::new().with(Operation::Chat).with(Operation::Embeddings);
/// assert!(caps.supports(Operation::Chat));
/// assert!(!caps.supports(Operation::Rerank));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(u32);

impl Capabilities {
    /// No operation.
    pub const fn new() -> Self {
        Capabilities(0)
    }
    /// Adds an operation.
    pub const fn with(self, op: Operation) -> Self {
        Capabilities(self.0 | op.bit())
    }
    /// Whether `op` is offered.
    pub const fn supports(self, op: Operation) -> bool {
        self.0 & op.bit() != 0
    }
}

/// A backend: wire format ⇄ core types. Object-safe; used as `Arc<dyn Provider>` by every layer.
///
/// Implementations must: put `ctx.request_id()` in the `X-Request-ID` header (or the provider's
/// equivalent); return errors carrying the request id, the provider name and the endpoint; never
/// retry on their own (retry is a layer above); and make [`Provider::stream`] resolve only once
/// the first event has arrived, so a failure before any output is an `Err` the retry layer sees.
///
/// A provider is `'static` ([`Any`]), so the layers above can reach its own operations outside
/// [`Request`] through [`downcast_ref`](trait.Provider.html#method.downcast_ref).
#[async_trait]
pub trait Provider: Any + Send + Sync + Debug {
    /// The provider's name (`openai-compat`, `anthropic`, ...).
    fn name(&self) -> &'static str;
    /// The endpoint this instance talks to.
    fn endpoint(&self) -> &EndpointId;
    /// What it offers.
    fn capabilities(&self) -> Capabilities;
    /// One attempt of a non-streamed call.
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response>;
    /// One attempt of a streamed call, resolved at the first event.
    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream>;
}

impl dyn Provider {
    /// The provider as its concrete type `P`, when it is one: how a client reaches a
    /// provider's own operations (speech, file upload, token counting, model pulls, adapters)
    /// through the same pools and policy as its calls.
    ///
    /// ```
    /// use infermux_core::*;
    /// use std::sync::Arc;
    /// #[derive(Debug)]
    /// struct Local(EndpointId);
    /// #[async_trait::async_trait]
    /// impl Provider for Local {
    ///     fn name(&self) -> &'static str { "local" }
    ///     fn endpoint(&self) -> &EndpointId { &self.0 }
    ///     fn capabilities(&self) -> Capabilities { Capabilities::new() }
    ///     async fn call(&self, _: &Request, _: &RequestContext) -> Result<Response> {
    ///         Err(Error::new(ErrorKind::Unsupported, "nothing"))
    ///     }
    ///     async fn stream(&self, _: &Request, _: &RequestContext) -> Result<EventStream> {
    ///         Err(Error::new(ErrorKind::Unsupported, "nothing"))
    ///     }
    /// }
    /// let p: Arc<dyn Provider> = Arc::new(Local(EndpointId::new("here")));
    /// assert!(p.downcast_ref::<Local>().is_some());
    /// ```
    pub fn downcast_ref<P: Provider>(&self) -> Option<&P> {
        let any: &dyn Any = self;
        any.downcast_ref::<P>()
    }
}
