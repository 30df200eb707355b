//! The one pump from decoded body items to provider-neutral stream events: a provider supplies
//! its wire format's state machine as an [`EventDecoder`], [`event_stream`] does the rest
//! (buffering, end of body, partial text on errors, context on errors, ending after an error).

use std::collections::VecDeque;

use futures_util::StreamExt;
use infermux_core::{Error, EventStream, Result, StreamEvent};

use crate::transport::DecodedStream;

/// A wire format's stream state machine: decoded items (SSE events, NDJSON lines, JSON-array
/// elements) in, [`StreamEvent`]s out.
pub trait EventDecoder<T>: Send + 'static {
    /// Handles one decoded item.
    fn on_item(&mut self, item: T) -> Result<Vec<StreamEvent>>;
    /// Handles the end of the body: final events, or the error of a truncated stream.
    fn on_end(&mut self) -> Result<Vec<StreamEvent>>;
    /// Whether the answer is complete (later items are not read).
    fn is_done(&self) -> bool {
        false
    }
    /// Text delivered so far, attached to an error that carries none.
    fn partial_text(&self) -> &str {
        ""
    }
}

struct Pump<T, D, F> {
    items: DecodedStream<T>,
    decoder: D,
    pending: VecDeque<StreamEvent>,
    ended: bool,
    with_context: F,
}

impl<T, D: EventDecoder<T>, F: Fn(Error) -> Error> Pump<T, D, F> {
    async fn next(&mut self) -> Option<Result<StreamEvent>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.ended {
                return None;
            }
            let step = match self.items.next().await {
                Some(Ok(item)) => self.decoder.on_item(item),
                Some(Err(e)) => Err(e),
                None => {
                    self.ended = true;
                    self.decoder.on_end()
                }
            };
            match step {
                Ok(events) => {
                    self.pending.extend(events);
                    self.ended |= self.decoder.is_done();
                }
                Err(mut e) => {
                    self.ended = true;
                    let partial = self.decoder.partial_text();
                    if e.partial_text().is_none() && !partial.is_empty() {
                        e = e.with_partial_text(partial.to_owned());
                    }
                    return Some(Err((self.with_context)(e)));
                }
            }
        }
    }
}

/// Turns decoded body items into an [`EventStream`] through `decoder` (not yet awaited to its
/// first event; see [`infermux_core::first_event`]). `with_context` fills request id, provider
/// and endpoint into stream errors. The stream ends after the first error.
pub fn event_stream<T, D>(
    items: DecodedStream<T>,
    decoder: D,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream
where
    T: Send + 'static,
    D: EventDecoder<T>,
{
    let pump = Pump {
        items,
        decoder,
        pending: VecDeque::new(),
        ended: false,
        with_context,
    };
    Box::pin(futures_util::stream::unfold(pump, |mut p| async move {
        let item = p.next().await?;
        Some((item, p))
    }))
}
