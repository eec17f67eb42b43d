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
//! added beyond what its completed jobs earned is its debt, and the debts of the clients of
//! one address (an IPv6 /64) are summed here: a completion pays its client's debt back, a
//! forgotten client's debt stays with the address, so registering again buys nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use cah_protocol::ext::DedupSet;

use crate::clients::{Client, PendingTouch};
use crate::dedup::quota;

/// Clients seen since start, with their unwritten touches.
#[derive(Debug)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Dedup hashes owed per address and set, by addresses that owe any (locked after
    /// `entries`).
    debts: Mutex<HashMap<String, [u64; 3]>>,
    limits: quota::Limits,
}

/// Most addresses that may owe dedup hashes at once; past it, clients of other addresses add
/// only what their jobs earned (a flood from many addresses cannot grow the map).
const MAX_DEBTOR_ADDRESSES: usize = 100_000;

/// A dedup addition beyond the client's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// What the client added to the set.
    pub added: u64,
    /// What its completed jobs earned.
    pub earned: u64,
    /// What the clients of its address owe together beyond what their jobs earned.
    pub owed: u64,
    /// What they may owe, as the asking client's held jobs allow.
    pub credit: u64,
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
    /// Of those, beyond what `jobs_completed` earned: its part of its address's debts.
    dedup_debt: [u64; 3],
    dirty: bool,
}

impl ClientCache {
    /// An empty cache whose dedup tallies follow `limits`.
    pub fn new(limits: quota::Limits) -> Self {
        ClientCache {
            entries: Mutex::default(),
            debts: Mutex::default(),
            limits,
        }
    }

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
                dedup_debt: [0; 3],
                dirty: true,
            },
        );
    }

    /// Reserves `n` hashes of `set` for a cached client holding `jobs_held` jobs, if they fit
    /// in what its completed jobs earned plus the credit its address has left (see
    /// [`quota`]). `Ok(false)` if it is not cached.
    pub fn reserve_dedup(
        &self,
        token: &str,
        set: DedupSet,
        n: u64,
        jobs_held: u64,
    ) -> Result<bool, OverQuota> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(token) else {
            return Ok(false);
        };
        let slot = quota::slot(set);
        let added = entry.dedup_added[slot];
        let earned = self.limits.earned(entry.jobs_completed);
        let debt = added.saturating_add(n).saturating_sub(earned);
        let more = debt.saturating_sub(entry.dedup_debt[slot]);
        if more > 0 {
            let mut debts = self.lock_debts();
            let address = debtor_key(&entry.client.address);
            let credit = self.limits.credit(jobs_held);
            let owed = match debts.get(&address) {
                Some(owed) => owed[slot],
                // No room to tally another debtor: as if its credit were used up.
                None if debts.len() >= MAX_DEBTOR_ADDRESSES => credit,
                None => 0,
            };
            if owed.saturating_add(more) > credit {
                return Err(OverQuota {
                    added,
                    earned,
                    owed,
                    credit,
                });
            }
            debts.entry(address).or_default()[slot] += more;
            entry.dedup_debt[slot] += more;
        }
        entry.dedup_added[slot] = added + n;
        Ok(true)
    }

    /// Gives back reserved hashes that were not added after all.
    pub fn refund_dedup(&self, token: &str, set: DedupSet, n: u64) {
        if let Some(entry) = self.lock().get_mut(token) {
            let added = &mut entry.dedup_added[quota::slot(set)];
            *added = added.saturating_sub(n);
            self.settle(entry);
        }
    }

    /// Counts a completed job for a cached client (written with the next flush); it pays
    /// back a job's worth of the client's dedup debt.
    pub fn credit(&self, token: &str) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.completed += 1;
            entry.jobs_completed += 1;
            entry.dirty = true;
            self.settle(entry);
        }
    }

    /// Takes back a completion credited to a cached client (its handoff's bundle was reported
    /// invalid), written with the next flush.
    pub fn uncredit(&self, token: &str) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.completed -= 1;
            entry.jobs_completed = entry.jobs_completed.saturating_sub(1);
            entry.dirty = true;
            self.settle(entry);
        }
    }

    /// Whether a client is cached.
    pub fn contains(&self, token: &str) -> bool {
        self.lock().contains_key(token)
    }

    /// Forgets a client; what it owes stays owed by its address.
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

    /// Brings `entry`'s debts, and its address's, in line with what it added and earned,
    /// after a refund or a change in its completed jobs. A debt that grows here (a completion
    /// taken back) is owed even beyond the credit; an address that owes nothing any more is
    /// dropped from the map.
    fn settle(&self, entry: &mut Entry) {
        let earned = self.limits.earned(entry.jobs_completed);
        let debts_now = entry.dedup_added.map(|added| added.saturating_sub(earned));
        if debts_now == entry.dedup_debt {
            return;
        }
        let mut debts = self.lock_debts();
        let address = debtor_key(&entry.client.address);
        if !debts.contains_key(&address) && debts.len() >= MAX_DEBTOR_ADDRESSES {
            // Not tallied: every addition of this address beyond its earnings is refused.
            entry.dedup_debt = [0; 3];
            return;
        }
        let owed = debts.entry(address.clone()).or_default();
        for slot in 0..3 {
            owed[slot] = owed[slot]
                .saturating_add(debts_now[slot])
                .saturating_sub(entry.dedup_debt[slot]);
        }
        entry.dedup_debt = debts_now;
        if *owed == [0; 3] {
            debts.remove(&address);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_debts(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u64; 3]>> {
        self.debts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Whose debts a client's add to: its registration address, an IPv6 one cut to its /64 (as
/// registrations are rate-limited).
fn debtor_key(address: &str) -> String {
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
        let cache = cache();
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

    /// 10 hashes per job, 10 to start with, 2 held jobs lend credit.
    fn cache() -> ClientCache {
        ClientCache::new(quota::Limits {
            per_job: 10,
            start: 10,
            held_jobs: 2,
        })
    }

    #[test]
    fn completed_jobs_earn_additions_and_pay_debts_back() {
        let cache = cache();
        let reserve = |token: &str, set, n| cache.reserve_dedup(token, set, n, 0);
        assert_eq!(reserve("a", DedupSet::Parsed, 1), Ok(false));
        cache.insert(client("a"), 2, None, 1);
        assert_eq!(
            reserve("a", DedupSet::Parsed, 25),
            Ok(true),
            "20 earned, 5 owed"
        );
        assert_eq!(
            reserve("a", DedupSet::Parsed, 6),
            Err(OverQuota {
                added: 25,
                earned: 20,
                owed: 5,
                credit: 10
            })
        );
        assert_eq!(
            reserve("a", DedupSet::Main, 30),
            Ok(true),
            "a set of its own"
        );
        cache.refund_dedup("a", DedupSet::Parsed, 5);
        assert_eq!(
            reserve("a", DedupSet::Parsed, 10),
            Ok(true),
            "a refund pays back"
        );
        assert!(reserve("a", DedupSet::Parsed, 1).is_err());
        cache.credit("a");
        assert_eq!(
            reserve("a", DedupSet::Parsed, 10),
            Ok(true),
            "a completion too"
        );
        // Caching it again (a concurrent miss) keeps the tallies.
        cache.insert(client("a"), 0, None, 2);
        assert!(reserve("a", DedupSet::Parsed, 1).is_err());
        // A completion taken back is owed again, even beyond the credit.
        cache.uncredit("a");
        cache.credit("a");
        cache.uncredit("a");
        assert_eq!(
            reserve("a", DedupSet::Parsed, 1),
            Err(OverQuota {
                added: 40,
                earned: 20,
                owed: 20,
                credit: 10
            })
        );
    }

    #[test]
    fn only_a_few_held_jobs_lend_and_what_they_lent_stays_owed() {
        let cache = cache();
        cache.insert(client("hoarder"), 0, None, 1);
        let reserve = |token: &str, n, held| cache.reserve_dedup(token, DedupSet::Main, n, held);
        assert_eq!(
            reserve("hoarder", 30, 64),
            Ok(true),
            "start and 2 jobs' worth"
        );
        assert!(reserve("hoarder", 1, 64).is_err(), "not 64 jobs' worth");
        // It releases its jobs and registers again, from the same address: nothing is left.
        cache.remove("hoarder");
        cache.insert(client("again"), 0, None, 2);
        assert!(reserve("again", 1, 64).is_err());
        // Another address has its credit.
        let mut elsewhere = client("elsewhere");
        elsewhere.address = "192.0.2.7".into();
        cache.insert(elsewhere, 0, None, 2);
        assert_eq!(reserve("elsewhere", 10, 0), Ok(true));
    }

    #[test]
    fn clients_of_one_address_share_the_credit() {
        let cache = cache();
        let mut other_host = client("c");
        other_host.address = "2001:db8:0:1::7".into();
        let mut same_64 = client("d");
        same_64.address = "2001:db8:0:1::8".into();
        for fresh in [client("a"), client("b"), other_host, same_64] {
            cache.insert(fresh, 0, None, 1);
        }
        assert_eq!(cache.reserve_dedup("a", DedupSet::Parsed, 8, 0), Ok(true));
        assert_eq!(
            cache.reserve_dedup("b", DedupSet::Parsed, 3, 0),
            Err(OverQuota {
                added: 0,
                earned: 0,
                owed: 8,
                credit: 10
            }),
            "registering again from the address buys nothing"
        );
        assert_eq!(cache.reserve_dedup("b", DedupSet::Parsed, 2, 0), Ok(true));
        assert_eq!(
            cache.reserve_dedup("c", DedupSet::Parsed, 10, 0),
            Ok(true),
            "another address has its own"
        );
        assert!(
            cache.reserve_dedup("d", DedupSet::Parsed, 1, 0).is_err(),
            "an IPv6 /64 is one address"
        );
        // A job completed by one client pays back its own debt, not a neighbour's.
        cache.credit("a");
        assert_eq!(cache.reserve_dedup("b", DedupSet::Parsed, 8, 0), Ok(true));
        assert!(cache.reserve_dedup("b", DedupSet::Parsed, 1, 0).is_err());
        assert!(cache.lock_debts().contains_key("127.0.0.1"));
        cache.credit("b");
        assert!(
            !cache.lock_debts().contains_key("127.0.0.1"),
            "an address that owes nothing leaves the map"
        );
    }
}
