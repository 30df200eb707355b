//! The names most programs need, in one import: `use infermux::prelude::*;`.
//!
//! ```
//! use infermux::prelude::*;
//! let retry = StandardRetry::standard();
//! let req = ChatRequest::new("m", vec![Message::user("hi")]);
//! let ctx = RequestContext::new().with_priority(Priority::High);
//! # let _ = (retry, req, ctx);
//! ```

pub use crate::resilience::ResilienceConfig;
pub use crate::resilience::breaker::BreakerConfig;
pub use crate::resilience::queue::QueueConfig;
pub use crate::resilience::retry::StandardRetry;
pub use crate::{
    ApiKey, ChatRequest, ChatResponse, Client, ClientBuilder, Deployment, EmbeddingRequest,
    EndpointConfig, Error, ErrorKind, EventStream, Idempotency, Message, ModelGroup, NamedKey,
    PoolConfig, Priority, Request, RequestContext, Response, Result, Served, Strategy,
    StreamAccumulator, StreamEvent, StreamExt,
};
