//! Request counters of the test web, keyed by host and path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::names;

/// Every request the web server has seen, by (host, path without query).
#[derive(Debug, Default)]
pub struct WebStats {
    total: AtomicU64,
    by_target: Mutex<HashMap<(String, String), u64>>,
}

impl WebStats {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Requests for `path` on `host` (port and case of the host ignored).
    pub fn count(&self, host: &str, path: &str) -> u64 {
        let key = (names::normalize_host(host), strip_query(path).to_owned());
        self.lock().get(&key).copied().unwrap_or(0)
    }

    /// Requests for a full URL (`http://host:port/path?query`).
    pub fn count_url(&self, url: &str) -> u64 {
        match url::Url::parse(url) {
            Ok(parsed) => self.count(parsed.host_str().unwrap_or_default(), parsed.path()),
            Err(_) => 0,
        }
    }

    /// Requests for any path on `host`.
    pub fn count_host(&self, host: &str) -> u64 {
        let host = names::normalize_host(host);
        self.lock()
            .iter()
            .filter(|((seen, _), _)| *seen == host)
            .map(|(_, count)| count)
            .sum()
    }

    /// All (host, path, count) triples, sorted.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let mut rows: Vec<_> = self
            .lock()
            .iter()
            .map(|((host, path), count)| (host.clone(), path.clone(), *count))
            .collect();
        rows.sort();
        rows
    }

    pub(crate) fn record(&self, host: &str, path: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self
            .lock()
            .entry((names::normalize_host(host), strip_query(path).to_owned()))
            .or_default() += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.by_target.lock().expect("web stats lock poisoned")
    }
}

fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}
