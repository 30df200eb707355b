//! Streams through the cache: the tee that records a stream as it passes to the caller, and the
//! replay of a recorded one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use infermux_core::{ContentPart, EventStream, FinishReason, Result, StreamEvent};

/// What the tee does with a recorded stream that ended cleanly after `Done`.
pub(crate) type OnComplete =
    Box<dyn FnOnce(Vec<StreamEvent>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Passes every item of `inner` to the caller and records the events; when the stream ends
/// (`None`) after a `Done` and without an error, it runs `on_complete` with the events before
/// it yields the end (dropped after `Done`, in a task of its own). An error, an end without
/// `Done`, or a drop before it stores nothing.
pub(crate) struct Tee {
    inner: EventStream,
    events: Vec<StreamEvent>,
    done: bool,
    failed: bool,
    /// The inner stream has ended: it is never polled again (a stream need not be fused).
    ended: bool,
    on_complete: Option<OnComplete>,
    storing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// About how many bytes the recorded events hold.
    recorded: usize,
    /// Whether the answer showed anything so far (text, a refusal, a tool call, a part).
    shown: bool,
}

/// The most a stream may hold (about: its texts, plus 64 bytes an event) and still be stored:
/// a longer one passes to the caller unrecorded (a stream is not bounded in length by the
/// transport, and a recording is held in memory until it ends).
pub(crate) const MAX_RECORDED_BYTES: usize = 8 * 1024 * 1024;

/// About how many bytes `ev` holds.
pub(crate) fn size_of_event(ev: &StreamEvent) -> usize {
    64 + match ev {
        StreamEvent::TextDelta { text }
        | StreamEvent::ReasoningDelta { text }
        | StreamEvent::RefusalDelta { text } => text.len(),
        StreamEvent::ToolCallDelta { arguments, .. } => arguments.len(),
        StreamEvent::ReasoningSignature { signature }
        | StreamEvent::ToolCallSignature { signature, .. } => signature.len(),
        // a whole part (an image, a server tool's result, a raw block: megabytes, at times)
        // counts as its JSON, measured without writing it anywhere
        StreamEvent::Part { part } => json_size_upto(part, MAX_RECORDED_BYTES),
        _ => 0,
    }
}

/// The length of `value` as JSON, measured without writing it anywhere and stopping once past
/// `limit` (a large answer is not written out in full to learn that it is too large to keep):
/// the length, or some length past `limit`.
pub(crate) fn json_size_upto(value: &impl serde::Serialize, limit: usize) -> usize {
    let mut n = Counted { n: 0, limit };
    let _ = serde_json::to_writer(&mut n, value);
    n.n
}

/// Counts the bytes written to it, failing the write once past `limit`.
struct Counted {
    n: usize,
    limit: usize,
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n = self.n.saturating_add(buf.len());
        if self.n > self.limit {
            return Err(std::io::Error::other("past the limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Tee {
    pub(crate) fn new(inner: EventStream, on_complete: OnComplete) -> Self {
        Tee {
            inner,
            events: Vec::new(),
            done: false,
            failed: false,
            ended: false,
            on_complete: Some(on_complete),
            storing: None,
            recorded: 0,
            shown: false,
        }
    }
}

impl Stream for Tee {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(storing) = this.storing.as_mut() {
            return match storing.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.storing = None;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
        // already ended or failed: a fused end
        if this.ended || this.failed {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                if this.on_complete.is_some() && !this.failed {
                    // a stream cut by the content filter, or ended for a reason not known to
                    // mean a complete answer, is not stored (see `storable`)
                    match &ev {
                        StreamEvent::Done { finish_reason } => {
                            this.done = storable_answer(finish_reason.as_ref(), this.shown);
                        }
                        StreamEvent::TextDelta { text } | StreamEvent::RefusalDelta { text }
                            if !text.is_empty() =>
                        {
                            this.shown = true;
                        }
                        StreamEvent::ToolCallDelta { .. } => this.shown = true,
                        StreamEvent::Part { part } if shows(part) => this.shown = true,
                        _ => {}
                    }
                    this.recorded = this.recorded.saturating_add(size_of_event(&ev));
                    if this.recorded > MAX_RECORDED_BYTES {
                        // too long to keep: passed on unrecorded, never stored
                        this.on_complete = None;
                        this.events = Vec::new();
                    } else {
                        this.events.push(ev.clone());
                    }
                }
                Poll::Ready(Some(Ok(ev)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                this.events = Vec::new();
                this.on_complete = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                match this.on_complete.take() {
                    Some(store) if this.done && !this.failed => {
                        let mut storing = store(std::mem::take(&mut this.events));
                        if storing.as_mut().poll(cx).is_pending() {
                            this.storing = Some(storing);
                            return Poll::Pending;
                        }
                    }
                    _ => {}
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A consumer that stops at `Done` and drops the stream (without polling it to its end) has
/// had the whole answer: it is stored all the same, in a task of its own.
impl Drop for Tee {
    fn drop(&mut self) {
        if self.ended || self.failed || !self.done {
            return;
        }
        let (Some(store), Ok(rt)) = (
            self.on_complete.take(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        rt.spawn(store(std::mem::take(&mut self.events)));
    }
}

/// Whether an answer that ended for `reason` may be stored: one known to be complete (it
/// stopped, reached its token limit or calls tools; or its provider gives no reason). The
/// content filter's cut, and reasons this version does not know (a provider's own
/// `Other(..)`: a paused turn, a failure it names), are passed on and never stored.
pub(crate) fn storable(reason: Option<&FinishReason>) -> bool {
    matches!(
        reason,
        None | Some(FinishReason::Stop | FinishReason::Length | FinishReason::ToolCalls)
    )
}

/// [`storable`], and not an answer cut at its token limit before it showed anything (`shown`:
/// text, a refusal, a tool call, a part): a reasoning model that spent `max_tokens` thinking
/// answers `Length` with nothing, which a retry may well answer, and which would be served for
/// the whole TTL (to paraphrases too, through the semantic tier).
pub(crate) fn storable_answer(reason: Option<&FinishReason>, shown: bool) -> bool {
    storable(reason) && (shown || reason != Some(&FinishReason::Length))
}

/// Whether a part of an answer is something the answer shows: text or a refusal that is not
/// empty, an image (not reasoning, a citation, a server tool's call or result, nor a part this
/// version does not model).
pub(crate) fn shows(part: &ContentPart) -> bool {
    match part {
        ContentPart::Text { text } | ContentPart::Refusal { text } => !text.is_empty(),
        ContentPart::Image { .. } => true,
        _ => false,
    }
}

/// Replays recorded events in order.
pub(crate) fn replay(events: Vec<StreamEvent>) -> EventStream {
    Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)))
}
