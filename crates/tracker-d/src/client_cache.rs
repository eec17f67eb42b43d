//! Registered clients kept in memory, so a call costs no database write just to say "seen".
//!
//! Every call touches its client (last seen, progress). Writing that per call was a third of
//! the tracker's statements; instead touches collect here and are written in one transaction
//! every second, and always before the reaper judges idleness. A crash loses at most a second
//! of "last seen", which only delays a reap. The database stays the source of truth for who
//! is registered: a miss here is looked up there.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clients::{Client, PendingTouch};

/// Clients seen since start, with their unwritten touches.
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    client: Client,
    last_seen: i64,
    progress: Option<String>,
    completed: u64,
    dirty: bool,
}

impl ClientCache {
    /// Touches a cached client; `None` if it is not cached.
    pub fn touch(&self, token: &str, progress: Option<&str>, now: i64) -> Option<Client> {
        let mut entries = self.lock();
        let entry = entries.get_mut(token)?;
        entry.last_seen = entry.last_seen.max(now);
        if let Some(progress) = progress {
            entry.progress = Some(progress.to_owned());
        }
        entry.dirty = true;
        Some(entry.client.clone())
    }

    /// Caches a client (just registered, or looked up after a miss) and touches it.
    pub fn insert(&self, client: Client, progress: Option<&str>, now: i64) {
        self.lock().insert(
            client.token.clone(),
            Entry {
                client,
                last_seen: now,
                progress: progress.map(str::to_owned),
                completed: 0,
                dirty: true,
            },
        );
    }

    /// Counts a completed job for a cached client (written with the next flush).
    pub fn credit(&self, token: &str) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.completed += 1;
            entry.dirty = true;
        }
    }

    /// Forgets a client.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Takes every unwritten touch.
    pub fn take_touches(&self) -> Vec<PendingTouch> {
        let mut entries = self.lock();
        let mut touches = Vec::new();
        for (token, entry) in entries.iter_mut().filter(|(_, entry)| entry.dirty) {
            entry.dirty = false;
            touches.push(PendingTouch {
                token: token.clone(),
                last_seen: entry.last_seen,
                progress: entry.progress.take(),
                jobs_completed: std::mem::take(&mut entry.completed),
            });
        }
        touches
    }

    /// Puts touches back after a failed write, so the next flush retries them.
    pub fn restore(&self, touches: Vec<PendingTouch>) {
        let mut entries = self.lock();
        for touch in touches {
            if let Some(entry) = entries.get_mut(&touch.token) {
                entry.dirty = true;
                if entry.progress.is_none() {
                    entry.progress = touch.progress;
                }
                entry.completed += touch.jobs_completed;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use cah_protocol::ClientType;

    use super::*;

    fn client(token: &str) -> Client {
        Client {
            token: token.into(),
            display_name: "d".into(),
            client_type: ClientType::Cpu,
            nickname: "n".into(),
            address: "127.0.0.1".into(),
        }
    }

    #[test]
    fn touches_collect_and_drain_once() {
        let cache = ClientCache::default();
        assert!(cache.touch("a", None, 1).is_none());
        cache.insert(client("a"), None, 1);
        cache.insert(client("b"), Some("start"), 1);
        assert_eq!(cache.take_touches().len(), 2);
        assert!(cache.take_touches().is_empty(), "nothing new");
        cache.touch("a", Some("working"), 5);
        cache.touch("a", None, 3);
        cache.credit("a");
        let touches = cache.take_touches();
        assert_eq!(
            touches,
            vec![PendingTouch {
                token: "a".into(),
                last_seen: 5,
                progress: Some("working".into()),
                jobs_completed: 1
            }]
        );
        cache.restore(touches);
        let restored = cache.take_touches();
        assert_eq!(restored[0].progress.as_deref(), Some("working"));
        assert_eq!(restored[0].jobs_completed, 1);
        cache.remove("a");
        assert!(cache.touch("a", None, 9).is_none());
    }
}
