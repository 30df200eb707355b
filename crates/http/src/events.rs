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
    /// Handles one decoded item, appending its events to `out` instead of returning a new
    /// `Vec` (the pump calls this one; the default calls [`EventDecoder::on_item`]). An
    /// implementation saves an allocation per item by overriding it; on an error, events it
    /// appended are discarded, as those of a failing `on_item` are.
    fn on_item_into(&mut self, item: T, out: &mut VecDeque<StreamEvent>) -> Result<()> {
        out.extend(self.on_item(item)?);
        Ok(())
    }
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
                Some(Ok(item)) => self.decoder.on_item_into(item, &mut self.pending),
                Some(Err(e)) => Err(e),
                None => {
                    self.ended = true;
                    self.decoder
                        .on_end()
                        .map(|events| self.pending.extend(events))
                }
            };
            match step {
                Ok(()) => {
                    self.ended |= self.decoder.is_done();
                }
                Err(mut e) => {
                    // the events of the item that failed are not delivered
                    self.pending.clear();
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
    // boxed: `unfold` moves its state into each event's future and back out with the event
    let pump = Box::new(Pump {
        items,
        decoder,
        pending: VecDeque::new(),
        ended: false,
        with_context,
    });
    Box::pin(futures_util::stream::unfold(pump, |mut p| async move {
        let item = p.next().await?;
        Some((item, p))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_core::ErrorKind;

    /// Emits one text event per item, appended in place; the item "bad" appends one and fails.
    struct Appending;

    impl EventDecoder<&'static str> for Appending {
        fn on_item(&mut self, _item: &'static str) -> Result<Vec<StreamEvent>> {
            unreachable!("the pump appends through on_item_into")
        }
        fn on_item_into(
            &mut self,
            item: &'static str,
            out: &mut VecDeque<StreamEvent>,
        ) -> Result<()> {
            out.push_back(StreamEvent::TextDelta {
                text: item.to_owned(),
            });
            if item == "bad" {
                return Err(Error::new(ErrorKind::Decode, "bad item"));
            }
            Ok(())
        }
        fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn events_appended_by_a_failing_item_are_not_delivered() {
        let items: DecodedStream<&'static str> =
            Box::pin(futures_util::stream::iter(["a", "bad", "c"].map(Ok)));
        let got: Vec<_> =
            futures_util::FutureExt::now_or_never(event_stream(items, Appending, |e| e).collect())
                .unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], Ok(StreamEvent::TextDelta { text }) if text == "a"));
        assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::Decode);
    }
}
