//! Registered clients kept in memory, so a call costs no database write just to say "seen".
//!
//! Every call touches its client (last seen, progress). Writing that per call was a third of
//! the tracker's statements; instead touches collect here and are written in one transaction
//! every second, and always before the reaper judges idleness. A crash loses at most a second
//! of "last seen", which only delays a reap. The database stays the source of truth for who
//! is registered: a miss here is looked up there.
//!
//! Each entry also tallies what the client added to each dedup set since it was cached, for
//! the quota of `dedup::quota`; the tally starts again when the tracker does. What a client
//! adds beyond its jobs' worth is drawn from its address's start allowance, tallied per
//! address (an IPv6 /64) so that registering again buys nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use cah_protocol::ext::DedupSet;

use crate::clients::{Client, PendingTouch};
use crate::dedup::quota;

/// Clients seen since start, with their unwritten touches.
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Start allowance used per address and set (locked after `entries`).
    start_used: Mutex<HashMap<String, [u64; 3]>>,
}

/// Most addresses whose start allowance is tallied; past it, new addresses get none (a flood
/// from many addresses cannot grow the map).
const MAX_START_ADDRESSES: usize = 100_000;

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
    /// Completions not written yet, less the handoffs taken back since.
    completed: i64,
    /// Every job it completed: the database's count when cached, plus the credits since.
    jobs_completed: u64,
    /// Hashes added (or reserved by a request in flight) per dedup set, by [`quota::slot`].
    dedup_added: [u64; 3],
    /// Of those, how many were drawn from the address's start allowance.
    dedup_drawn: [u64; 3],
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
                dedup_drawn: [0; 3],
                dirty: true,
            },
        );
    }

    /// Reserves `n` hashes of `set` for a cached client, if they fit in the allowance that
    /// `allowance` computes from the jobs it completed, plus what is left of the `start`
    /// allowance its address's clients share. `Ok(false)` if it is not cached.
    pub fn reserve_dedup(
        &self,
        token: &str,
        set: DedupSet,
        n: u64,
        allowance: impl FnOnce(u64) -> u64,
        start: u64,
    ) -> Result<bool, OverQuota> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(token) else {
            return Ok(false);
        };
        let slot = quota::slot(set);
        let added = entry.dedup_added[slot];
        let own = allowance(entry.jobs_completed).saturating_add(entry.dedup_drawn[slot]);
        let wanted = added.saturating_add(n).saturating_sub(own);
        if wanted > 0 {
            let address = start_key(&entry.client.address);
            let mut start_used = self
                .start_used
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let full =
                start_used.len() >= MAX_START_ADDRESSES && !start_used.contains_key(&address);
            let used = if full {
                start
            } else {
                start_used.get(&address).map_or(0, |used| used[slot])
            };
            let left = start.saturating_sub(used);
            if wanted > left {
                return Err(OverQuota {
                    allowance: own.saturating_add(left),
                    added,
                });
            }
            start_used.entry(address).or_default()[slot] += wanted;
            entry.dedup_drawn[slot] += wanted;
        }
        entry.dedup_added[slot] = added + n;
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

    /// Takes back a completion credited to a cached client (its handoff's bundle was reported
    /// invalid), written with the next flush.
    pub fn uncredit(&self, token: &str) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.completed -= 1;
            entry.jobs_completed = entry.jobs_completed.saturating_sub(1);
            entry.dirty = true;
        }
    }

    /// Whether a client is cached.
    pub fn contains(&self, token: &str) -> bool {
        self.lock().contains_key(token)
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

/// Whose start allowance a client draws from: its registration address, an IPv6 one cut to
/// its /64 (as registrations are rate-limited).
fn start_key(address: &str) -> String {
    address.parse::<IpAddr>().map_or_else(
        |_| address.to_owned(),
        |ip| crate::rate_limit::bucket_key(ip).to_string(),
    )
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
        let per_job = |completed: u64| 10 * completed;
        let reserve = |token: &str, set, n| cache.reserve_dedup(token, set, n, per_job, 10);
        assert_eq!(reserve("a", DedupSet::Parsed, 1), Ok(false));
        cache.insert(client("a"), 2, None, 1);
        assert_eq!(reserve("a", DedupSet::Parsed, 25), Ok(true));
        assert_eq!(
            reserve("a", DedupSet::Parsed, 6),
            Err(OverQuota {
                allowance: 30,
                added: 25
            })
        );
        assert_eq!(
            reserve("a", DedupSet::Main, 30),
            Ok(true),
            "sets have tallies of their own"
        );
        cache.refund_dedup("a", DedupSet::Parsed, 5);
        cache.credit("a");
        assert_eq!(reserve("a", DedupSet::Parsed, 20), Ok(true));
        // Caching it again (a concurrent miss) keeps the tallies.
        cache.insert(client("a"), 0, None, 2);
        assert!(reserve("a", DedupSet::Parsed, 1).is_err());
    }

    #[test]
    fn clients_of_one_address_share_the_start_allowance() {
        let cache = ClientCache::default();
        let no_jobs = |_: u64| 0;
        let mut other_host = client("c");
        other_host.address = "2001:db8:0:1::7".into();
        let mut same_64 = client("d");
        same_64.address = "2001:db8:0:1::8".into();
        for fresh in [client("a"), client("b"), other_host, same_64] {
            cache.insert(fresh, 0, None, 1);
        }
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 8, no_jobs, 10),
            Ok(true)
        );
        assert_eq!(
            cache.reserve_dedup("b", DedupSet::Parsed, 3, no_jobs, 10),
            Err(OverQuota {
                allowance: 2,
                added: 0
            }),
            "registering again from the address buys nothing"
        );
        assert_eq!(
            cache.reserve_dedup("b", DedupSet::Parsed, 2, no_jobs, 10),
            Ok(true)
        );
        assert_eq!(
            cache.reserve_dedup("c", DedupSet::Parsed, 10, no_jobs, 10),
            Ok(true),
            "another address has its own"
        );
        assert!(
            cache
                .reserve_dedup("d", DedupSet::Parsed, 1, no_jobs, 10)
                .is_err(),
            "an IPv6 /64 is one address"
        );
        // A refund gives back to the client; what it drew stays its own.
        cache.refund_dedup("a", DedupSet::Parsed, 8);
        assert_eq!(
            cache.reserve_dedup("a", DedupSet::Parsed, 8, no_jobs, 10),
            Ok(true)
        );
    }
}
