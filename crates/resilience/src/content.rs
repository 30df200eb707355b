//! Holding a stream's metadata back until its first *content* event, so that a failure after a
//! metadata-only `Start` (every decoder emits one on the first chunk) is still an attempt
//! failure the retry policy can act on.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use infermux_core::{Error, ErrorKind, EventStream, Result, StreamEvent};

/// Metadata events held at most; past that the stream is handed over as it is (a provider
/// that sends nothing but metadata is not waited on forever).
const MAX_HELD: usize = 64;

/// Whether an event carries content: text, reasoning, refusal, a tool call, or `Done`.
///
/// `Start` and `Usage` are metadata. [`StreamEvent`] is `#[non_exhaustive]`: a variant this
/// version does not know counts as content, the safe side (once content may have reached the
/// caller, nothing is retried).
///
/// ```
/// use infermux_core::{StreamEvent, Usage};
/// use infermux_resilience::is_content;
/// assert!(!is_content(&StreamEvent::Start { id: None, model: None }));
/// assert!(!is_content(&StreamEvent::Usage(Usage::new(1, 1))));
/// assert!(is_content(&StreamEvent::TextDelta { text: "hi".into() }));
/// assert!(is_content(&StreamEvent::Done { finish_reason: None }));
/// ```
pub fn is_content(event: &StreamEvent) -> bool {
    match event {
        StreamEvent::TextDelta { .. }
        | StreamEvent::ReasoningDelta { .. }
        | StreamEvent::RefusalDelta { .. }
        | StreamEvent::ToolCallDelta { .. }
        | StreamEvent::Done { .. } => true,
        StreamEvent::Start { .. } | StreamEvent::Usage(_) => false,
        _ => true,
    }
}

/// Polls `stream` until its first content event ([`is_content`]), holding the metadata events
/// before it; resolves to a stream that yields them, in order, then the content event and the
/// rest.
///
/// An error, or the end of the stream, before any content is an `Err` here (the attempt
/// failed and may be retried); once this resolves, the caller owns the answer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::{StreamExt, stream};
/// use infermux_core::{Error, ErrorKind, EventStream, StreamEvent};
/// use infermux_resilience::first_content;
///
/// let start = || Ok(StreamEvent::Start { id: None, model: None });
/// let failed: EventStream = Box::pin(stream::iter(vec![start(), Err(Error::new(ErrorKind::Overloaded, "busy"))]));
/// assert_eq!(first_content(failed).await.err().map(|e| e.kind()), Some(ErrorKind::Overloaded));
///
/// let ok: EventStream = Box::pin(stream::iter(vec![start(), Ok(StreamEvent::TextDelta { text: "hi".into() })]));
/// let all: Vec<_> = first_content(ok).await.unwrap().collect().await;
/// assert_eq!(all.len(), 2, "the held Start comes first");
/// # }
/// ```
pub async fn first_content(stream: EventStream) -> Result<EventStream> {
    let (held, rest) = hold_until_content(stream).await?;
    Ok(Box::pin(Replay { held, rest }))
}

/// [`first_content`] without boxing the replay: the held events and the rest of the stream,
/// for a caller that replays them itself (the resilience stack's guarded stream).
pub(crate) async fn hold_until_content(
    mut stream: EventStream,
) -> Result<(VecDeque<StreamEvent>, EventStream)> {
    let mut held = VecDeque::new();
    loop {
        match poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            Some(Ok(event)) => {
                let content = is_content(&event);
                held.push_back(event);
                if content || held.len() >= MAX_HELD {
                    return Ok((held, stream));
                }
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "stream ended before its first content event",
                ));
            }
        }
    }
}

/// The held events, then the rest of the stream.
struct Replay {
    held: VecDeque<StreamEvent>,
    rest: EventStream,
}

impl Stream for Replay {
    type Item = Result<StreamEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.held.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        self.rest.as_mut().poll_next(cx)
    }
}
