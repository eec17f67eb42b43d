//! The progress string sent with heartbeats: `{node}: job 17 downloading 1234/5678`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Shared between the worker and the heartbeat task.
#[derive(Debug)]
pub(crate) struct Progress {
    node: String,
    phase: Mutex<String>,
    pub(crate) done: std::sync::Arc<AtomicU64>,
    total: AtomicU64,
    pub(crate) changed: Notify,
}

impl Progress {
    pub(crate) fn new(node: &str) -> Self {
        Progress {
            node: node.to_owned(),
            phase: Mutex::new("claimed".to_owned()),
            done: std::sync::Arc::new(AtomicU64::new(0)),
            total: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// Enters a phase (`job 17 downloading`), resets the counters and wakes the heartbeat.
    pub(crate) fn set(&self, phase: String, total: u64) {
        if let Ok(mut current) = self.phase.lock() {
            *current = phase;
        }
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The text for the tracker.
    pub(crate) fn text(&self) -> String {
        let phase = self
            .phase
            .lock()
            .map(|phase| phase.clone())
            .unwrap_or_default();
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            format!("{}: {phase}", self.node)
        } else {
            let done = self.done.load(Ordering::Relaxed);
            format!("{}: {phase} {done}/{total}", self.node)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_strings_start_with_the_node_name() {
        let progress = Progress::new("node-7");
        assert_eq!(progress.text(), "node-7: claimed");
        progress.set("job 17 downloading".to_owned(), 5678);
        progress.done.store(1234, Ordering::Relaxed);
        assert_eq!(progress.text(), "node-7: job 17 downloading 1234/5678");
        progress.set("job 17 uploading".to_owned(), 0);
        assert_eq!(progress.text(), "node-7: job 17 uploading");
    }
}
