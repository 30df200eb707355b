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
    lines: Mutex<VecDeque<String>>,
    capacity: usize,
    feed: broadcast::Sender<String>,
}

impl LogBuffer {
    /// A buffer keeping the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let (feed, _) = broadcast::channel(256);
        LogBuffer {
            inner: Arc::new(Inner {
                lines: Mutex::new(VecDeque::with_capacity(capacity.clamp(1, 1024))),
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
        if lines.len() == self.inner.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }

    /// The last `n` lines kept, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
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

    /// Whether any kept line contains `needle`, ignoring ASCII case.
    pub(crate) fn contains_ignore_case(&self, needles: &[&str]) -> bool {
        let lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().any(|l| {
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
