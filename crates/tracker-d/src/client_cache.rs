//! Registered clients kept in memory, so a call costs no database write just to say "seen".
//!
//! Every call touches its client (last seen, progress). Writing that per call was a third of
//! the tracker's statements; instead touches collect here and are written in one transaction
//! every second, and always before the reaper judges idleness. A crash loses at most a second
//! of "last seen", which only delays a reap. The database stays the source of truth for who
//! is registered: a miss here is looked up there.
//!
//! Each entry also tallies what the client added to each dedup set since it was cached, for
//! the quota of `dedup::quota`; the tally starts again when the tracker does.

use std::collections::HashMap;
use std::sync::Mutex;

use cah_protocol::ext::DedupSet;

use crate::clients::{Client, PendingTouch};
use crate::dedup::quota;

/// Clients seen since start, with their unwritten touches.
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A dedup addition beyond the client's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// What the client may add in all.
    pub allowance: u64,
    /// What it added already.
    pub added: u64,
}

#[derive(Debug)]
struct Entry {
    client: Client,
    last_seen: i64,
    progress: Option<String>,
    /// Completions not written yet.
    completed: u64,
    /// Every job it completed: the database's count when cached, plus the credits since.
    jobs_completed: u64,
    /// Hashes added (or reserved by a request in flight) per dedup set, by [`quota::slot`].
    dedup_added: [u64; 3],
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

    /// Caches a client (just registered, or looked up after a miss, with the jobs the database
    /// says it completed) and touches it; a client cached meanwhile keeps its tallies.
    pub fn insert(&self, client: Client, jobs_completed: u64, progress: Option<&str>, now: i64) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&client.token) {
            entry.last_seen = entry.last_seen.max(now);
            if let Some(progress) = progress {
                entry.progress = Some(progress.to_owned());
            }
            entry.dirty = true;
            return;
        }
        entries.insert(
            client.token.clone(),
            Entry {
                client,
                last_seen: now,
                progress: progress.map(str::to_owned),
                completed: 0,
                jobs_completed,
                dedup_added: [0; 3],
                dirty: true,
            },
        );
    }

    /// Reserves `n` hashes of `set` for a cached client, if they fit in the allowance that
    /// `allowance` computes from the jobs it completed. `Ok(false)` if it is not cached.
    pub fn reserve_dedup(
        &self,
        token: &str,
        set: DedupSet,
        n: u64,
        allowance: impl FnOnce(u64) -> u64,
    ) -> Result<bool, OverQuota> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(token) else {
            return Ok(false);
        };
        let allowance = allowance(entry.jobs_completed);
        let added = &mut entry.dedup_added[quota::slot(set)];
        if added.saturating_add(n) > allowance {
            return Err(OverQuota {
                allowance,
                added: *added,
            });
        }
        *added += n;
        Ok(true)
    }

    /// Gives back reserved hashes that were not added after all.
    pub fn refund_dedup(&self, token: &str, set: DedupSet, n: u64) {
        if let Some(entry) = self.lock().get_mut(token) {
            let added = &mut entry.dedup_added[quota::slot(set)];
            *added = added.saturating_sub(n);
        }
    }

    /// Counts a completed job for a cached client (written with the next flush).
    pub fn credit(&self, token: &str) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.completed += 1;
            entry.jobs_completed += 1;
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
        cache.insert(client("a"), 0, None, 1);
        cache.insert(client("b"), 0, Some("start"), 1);
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

    #[test]
    fn dedup_tallies_stay_within_the_allowance() {
        let cache = ClientCache::default();
        let per_job = |completed: u64| 10 * (1 + completed);
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 1, per_job),
            Ok(false)
        );
        cache.insert(client("a"), 2, None, 1);
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 25, per_job),
            Ok(true)
        );
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 6, per_job),
            Err(OverQuota {
                allowance: 30,
                added: 25
            })
        );
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Main, 30, per_job),
            Ok(true),
            "sets have tallies of their own"
        );
        cache.refund_dedup("a", DedupSet::Parsed, 5);
        cache.credit("a");
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 20, per_job),
            Ok(true)
        );
        // Caching it again (a concurrent miss) keeps the tallies.
        cache.insert(client("a"), 0, None, 2);
        assert!(
            cache
                .reserve_dedup("a", DedupSet::Parsed, 1, per_job)
                .is_err()
        );
    }
}
