//! Async locks by key (a client's token, a job's number), made on first use and dropped with their last user.
//!
//! The tracker is one process, so a lock here serializes what one client (or one job) does
//! across concurrent requests: a client's claims, so its cap on held jobs is exact; a job's
//! upload commits, so a bundle key is stored at most once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// A lock per key.
#[derive(Debug)]
pub struct KeyedLocks<K> {
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    locks: HashMap<K, Weak<tokio::sync::Mutex<()>>>,
    /// Dead entries are dropped when the map grows past this, which then doubles the live size.
    prune_at: usize,
}

/// Entries kept before the first prune.
const FIRST_PRUNE_AT: usize = 64;

impl<K: Hash + Eq + Clone> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            state: Mutex::new(State {
                locks: HashMap::new(),
                prune_at: FIRST_PRUNE_AT,
            }),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    /// Waits for the lock of `key`; it is held until the guard drops.
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let lock = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match state.locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if state.locks.len() >= state.prune_at {
                        state.locks.retain(|_, lock| lock.strong_count() > 0);
                        state.prune_at = (2 * state.locks.len()).max(FIRST_PRUNE_AT);
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    state.locks.insert(key.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// Keys with an entry (live or not yet pruned), for tests.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .locks
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_other_keys_pass() {
        let locks = Arc::new(KeyedLocks::<u64>::default());
        let held = locks.lock(&1).await;
        let waiting = tokio::spawn({
            let locks = Arc::clone(&locks);
            async move { drop(locks.lock(&1).await) }
        });
        let other = tokio::time::timeout(Duration::from_secs(5), locks.lock(&2)).await;
        assert!(other.is_ok(), "another key is not blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the same key waits");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter gets the lock")
            .expect("task");
    }

    #[tokio::test]
    async fn unused_entries_are_pruned() {
        let locks = KeyedLocks::<u64>::default();
        for key in 0..10_000 {
            drop(locks.lock(&key).await);
        }
        assert!(locks.entries() <= 2 * FIRST_PRUNE_AT, "{}", locks.entries());
    }
}
