//! [`LogBuffer`]: the last lines a server wrote (a bounded ring), and a live feed of them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// The lines a server wrote to stdout and stderr: the last `capacity` kept, older ones dropped;
/// [`LogBuffer::subscribe`] follows new lines as they come. Cheap to clone (clones share the
/// lines).
#[derive(Debug, Clone)]
pub struct LogBuffer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lines: Mutex<Lines>,
    capacity: usize,
    feed: broadcast::Sender<String>,
}

/// The kept lines and how many were ever pushed (so a reader can ask for the lines since a
/// mark, even after older ones were dropped).
#[derive(Debug, Default)]
struct Lines {
    kept: VecDeque<String>,
    pushed: u64,
}

impl LogBuffer {
    /// A buffer keeping the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let (feed, _) = broadcast::channel(256);
        LogBuffer {
            inner: Arc::new(Inner {
                lines: Mutex::new(Lines {
                    kept: VecDeque::with_capacity(capacity.clamp(1, 1024)),
                    pushed: 0,
                }),
                capacity: capacity.max(1),
                feed,
            }),
        }
    }

    /// Appends one line (a trailing newline is removed), dropping the oldest past capacity.
    pub fn push(&self, line: impl Into<String>) {
        let mut line = line.into();
        while line.ends_with(['\n', '\r']) {
            line.pop();
        }
        let _ = self.inner.feed.send(line.clone());
        let mut lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.kept.len() == self.inner.capacity {
            lines.kept.pop_front();
        }
        lines.kept.push_back(line);
        lines.pushed += 1;
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.kept.iter().cloned().collect()
    }

    /// The last `n` lines kept, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .kept
            .iter()
            .skip(lines.kept.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The most lines kept.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// New lines from now on (a slow reader loses lines rather than holding the server back:
    /// it sees [`broadcast::error::RecvError::Lagged`]).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.feed.subscribe()
    }

    /// A mark of the lines pushed so far, for [`LogBuffer::contains_since`].
    pub(crate) fn mark(&self) -> u64 {
        self.inner
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pushed
    }

    /// Whether a line pushed after `mark` (and still kept) contains one of `needles`,
    /// ignoring ASCII case.
    pub(crate) fn contains_since(&self, mark: u64, needles: &[&str]) -> bool {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        let new = usize::try_from(lines.pushed.saturating_sub(mark)).unwrap_or(usize::MAX);
        lines
            .kept
            .iter()
            .skip(lines.kept.len().saturating_sub(new))
            .any(|l| {
                let l = l.to_ascii_lowercase();
                needles.iter().any(|n| l.contains(n))
            })
    }
}

impl Default for LogBuffer {
    /// 1000 lines.
    fn default() -> Self {
        LogBuffer::new(1000)
    }
}
