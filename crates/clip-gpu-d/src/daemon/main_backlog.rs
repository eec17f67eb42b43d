//! Shards already in the dataset whose pair hashes the tracker's `main` set has not taken yet,
//! because adding them failed: their jobs were completed all the same (the pairs are visible).
//!
//! They are added again, oldest first, at every later commit and when the daemon drains, and
//! until then this daemon dedups its own new pairs against them, so the gap is closed for this
//! daemon at once and for the others as soon as the tracker answers. A shard keeps its pending
//! marker until its hashes are in `main`, so a crash leaves it to the next start's recovery.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use cah_protocol::ext::DedupSet;
use tracing::{info, warn};

use super::registration::Registration;
use crate::shard;

/// Most hashes kept in memory; past it the oldest shards are left to the next start (their
/// markers stay), so an unreachable `main` cannot grow the daemon without bound.
const MAX_HASHES: usize = 4_000_000;

#[derive(Debug)]
pub(super) struct MainBacklog {
    shards: VecDeque<(u32, Vec<u64>)>,
    hashes: HashSet<u64>,
    /// [`MAX_HASHES`], smaller in tests.
    limit: usize,
}

impl Default for MainBacklog {
    fn default() -> Self {
        Self {
            shards: VecDeque::new(),
            hashes: HashSet::new(),
            limit: MAX_HASHES,
        }
    }
}

impl MainBacklog {
    /// Queues shard `number`'s hashes for `main`.
    pub(super) fn push(&mut self, number: u32, hashes: Vec<u64>) {
        self.hashes.extend(hashes.iter().copied());
        self.shards.push_back((number, hashes));
        while self.hashes.len() > self.limit
            && let Some((dropped, hashes)) = self.shards.pop_front()
        {
            self.forget(&hashes);
            warn!(
                shard = dropped,
                "too many shards wait for the main set; this one is left to the next start"
            );
        }
    }

    /// Whether a queued shard holds the pair `hash`.
    pub(super) fn contains(&self, hash: u64) -> bool {
        self.hashes.contains(&hash)
    }

    /// Shards still waiting.
    pub(super) fn len(&self) -> usize {
        self.shards.len()
    }

    /// Adds the queued shards to `main`, oldest first, each tried up to `tries` times; a shard
    /// that made it is marked committed. Stops at the first shard that still fails (it stays
    /// queued, with every later one).
    pub(super) async fn add_to_main(
        &mut self,
        registration: &Arc<Registration>,
        shard_dir: &Path,
        tries: u32,
    ) -> anyhow::Result<()> {
        while let Some((number, hashes)) = self.shards.front() {
            let number = *number;
            let mut added = false;
            for attempt in 1..=tries {
                match registration
                    .call(
                        |session| async move { session.dedup(DedupSet::Main, hashes, true).await },
                    )
                    .await
                {
                    Ok(_) => {
                        added = true;
                        break;
                    }
                    Err(error) => {
                        warn!(shard = number, attempt, error = %error, "failed to add a shard's pairs to the main set");
                    }
                }
            }
            if !added {
                info!(
                    waiting = self.shards.len(),
                    "shards wait for the main set; tried again at the next commit and at the drain"
                );
                return Ok(());
            }
            if let Some((_, hashes)) = self.shards.pop_front() {
                self.forget(&hashes);
            }
            let shard_dir = shard_dir.to_owned();
            tokio::task::spawn_blocking(move || shard::mark_committed(&shard_dir, number))
                .await
                .context("commit task failed")??;
        }
        Ok(())
    }

    fn forget(&mut self, hashes: &[u64]) {
        for hash in hashes {
            self.hashes.remove(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_shards_leave_memory_past_the_limit() {
        let mut backlog = MainBacklog {
            limit: 5,
            ..MainBacklog::default()
        };
        backlog.push(0, vec![1, 2, 3]);
        backlog.push(1, vec![4, 5]);
        assert_eq!(backlog.len(), 2);
        assert!(backlog.contains(1) && backlog.contains(5) && !backlog.contains(6));
        backlog.push(2, vec![6]);
        assert_eq!(backlog.len(), 2, "shard 0 left to the next start");
        assert!(!backlog.contains(1) && backlog.contains(4) && backlog.contains(6));
    }
}
