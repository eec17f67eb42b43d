//! The jobs this daemon holds on the tracker, and which of them the tracker took back.
//!
//! The tracker takes a job back when its lease expires (a heartbeat no longer lists it) or when
//! it forgets the daemon's token (idle timeout, database reset): every job claimed under that
//! token is gone, and the tracker hands it out again, possibly to this very daemon under its
//! new token. A lost job's copy still in the pipeline must then be dropped, never completed:
//! so each claim gets a local id, and only the claim the daemon holds now may be completed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// One claim of a job by this daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Claim {
    pub(super) number: u64,
    id: u64,
}

impl Claim {
    /// The daemon's own id of this claim, unique for the process's life.
    pub(super) fn id(self) -> u64 {
        self.id
    }
}

/// The claims held now, by job number.
#[derive(Debug)]
pub(super) struct Holdings {
    held: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Tracker calls in flight that change what this daemon holds (see [`Holdings::change`]).
    changes: Mutex<Changes>,
}

/// Claim, complete, release and invalid calls: how many are in flight, and how many began or
/// ended so far.
#[derive(Debug, Default, Clone, Copy)]
struct Changes {
    in_flight: u32,
    epoch: u64,
}

/// Marks one tracker call that changes what this daemon holds, from before the call until its
/// outcome is recorded in [`Holdings`]; dropping it ends the call.
pub(super) struct ChangeGuard<'a> {
    holdings: &'a Holdings,
}

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        let mut changes = self.holdings.lock_changes();
        changes.in_flight -= 1;
        changes.epoch += 1;
    }
}

#[derive(Debug, Clone)]
struct Held {
    id: u64,
    /// The registration (see `Registration`) whose token claimed the job.
    generation: u64,
    /// Cancelled when the claim is lost (or taken at the drain deadline), so that its bundle
    /// download stops instead of holding a permit.
    lost: CancellationToken,
}

impl Holdings {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            metrics,
            changes: Mutex::new(Changes::default()),
        }
    }

    /// Starts a tracker call that changes what this daemon holds: a claim (held until its
    /// jobs are recorded) or a complete, release or invalid report (held from before
    /// [`finish`](Self::finish) until the tracker answered).
    pub(super) fn change(&self) -> ChangeGuard<'_> {
        let mut changes = self.lock_changes();
        changes.in_flight += 1;
        changes.epoch += 1;
        ChangeGuard { holdings: self }
    }

    /// Taken just before a heartbeat is sent: `Some(mark)` when no change is in flight.
    pub(super) fn quiet_mark(&self) -> Option<u64> {
        let changes = self.lock_changes();
        (changes.in_flight == 0).then_some(changes.epoch)
    }

    /// The numbers among `listed` (a heartbeat's answer) that this daemon does not hold and
    /// never learnt of: jobs claimed by an attempt whose answer was lost, to be released.
    ///
    /// `mark` is [`quiet_mark`](Self::quiet_mark) from before the heartbeat was sent; when a
    /// change began or ended since (or one was in flight then), nothing is returned. This is
    /// race-free: a job the tracker lists was claimed by a claim call it applied before
    /// answering. Had that call's answer reached us, its guard spans the call and the
    /// recording of its jobs, so either it overlapped the heartbeat (the epoch moved: nothing
    /// is released) or it ended before the mark, and the job was then held. A held job leaves
    /// `held` only through `finish` inside a complete, release or invalid call's guard (the
    /// same argument: if that call ended before the mark, the tracker no longer held the job
    /// when it answered, unless that call failed, and then releasing it is right), or as
    /// lost, which the tracker said itself (`lose_missing`, `lose_generation`: a heartbeat
    /// under the new token never lists the old token's jobs), or at the drain (`take_all`,
    /// which releases them anyway).
    pub(super) fn unknown(&self, mark: u64, listed: &[u64]) -> Vec<u64> {
        let held = self.lock();
        if self.lock_changes().epoch != mark {
            return Vec::new();
        }
        listed
            .iter()
            .copied()
            .filter(|number| !held.contains_key(number))
            .collect()
    }

    /// Records job `number`, claimed under registration `generation`; an earlier claim of the
    /// same number is stale from now on.
    pub(super) fn claimed(&self, number: u64, generation: u64) -> Claim {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut held = self.lock();
        let lost = CancellationToken::new();
        if let Some(stale) = held.insert(
            number,
            Held {
                id,
                generation,
                lost,
            },
        ) {
            stale.lost.cancel();
        }
        self.publish(&held);
        Claim { number, id }
    }

    /// A token cancelled when `claim` is lost; already cancelled when it is not held.
    pub(super) fn cancellation(&self, claim: Claim) -> CancellationToken {
        let held = self.lock();
        match held.get(&claim.number) {
            Some(entry) if entry.id == claim.id => entry.lost.clone(),
            _ => {
                let token = CancellationToken::new();
                token.cancel();
                token
            }
        }
    }

    /// Whether `claim` is still held: not completed, released or lost.
    pub(super) fn is_held(&self, claim: Claim) -> bool {
        self.lock()
            .get(&claim.number)
            .is_some_and(|held| held.id == claim.id)
    }

    /// Stops holding `claim` (completed, reported invalid or released); `false` when it was
    /// not held any more, in which case it must not be completed.
    pub(super) fn finish(&self, claim: Claim) -> bool {
        let mut held = self.lock();
        let was_held = held
            .get(&claim.number)
            .is_some_and(|entry| entry.id == claim.id);
        if was_held {
            held.remove(&claim.number);
            self.publish(&held);
        }
        was_held
    }

    /// Every claim held now.
    pub(super) fn claims(&self) -> Vec<Claim> {
        self.lock()
            .iter()
            .map(|(number, held)| Claim {
                number: *number,
                id: held.id,
            })
            .collect()
    }

    /// The tracker forgot registration `generation`: every job claimed under it (or before) is
    /// lost. Returns the lost job numbers.
    pub(super) fn lose_generation(&self, generation: u64) -> Vec<u64> {
        let mut held = self.lock();
        let lost: Vec<u64> = held
            .iter()
            .filter(|(_, entry)| entry.generation <= generation)
            .map(|(number, _)| *number)
            .collect();
        self.remove_lost(&mut held, &lost)
    }

    /// A heartbeat sent while `asked` were held answered that the tracker still gives this
    /// daemon `still_held`: the others among `asked` expired. Returns the lost job numbers.
    pub(super) fn lose_missing(&self, asked: &[Claim], still_held: &[u64]) -> Vec<u64> {
        let mut held = self.lock();
        let lost: Vec<u64> = asked
            .iter()
            .filter(|claim| !still_held.contains(&claim.number))
            .filter(|claim| {
                held.get(&claim.number)
                    .is_some_and(|entry| entry.id == claim.id)
            })
            .map(|claim| claim.number)
            .collect();
        self.remove_lost(&mut held, &lost)
    }

    /// Stops holding everything (the drain deadline releases these). Returns the job numbers.
    pub(super) fn take_all(&self) -> Vec<u64> {
        let mut held = self.lock();
        let numbers: Vec<u64> = held.keys().copied().collect();
        for (_, entry) in held.drain() {
            entry.lost.cancel();
        }
        self.publish(&held);
        numbers
    }

    fn remove_lost(&self, held: &mut HashMap<u64, Held>, lost: &[u64]) -> Vec<u64> {
        for number in lost {
            if let Some(entry) = held.remove(number) {
                entry.lost.cancel();
            }
        }
        Metrics::add(&self.metrics.jobs_lost, lost.len() as u64);
        self.publish(held);
        lost.to_vec()
    }

    fn publish(&self, held: &HashMap<u64, Held>) {
        self.metrics
            .held_jobs
            .store(held.len() as i64, Ordering::Relaxed);
    }

    fn lock_changes(&self) -> MutexGuard<'_, Changes> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Held>> {
        // A panic while the map was locked cannot leave it half-updated: every change is one
        // insert or remove.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_claimed_again_makes_the_earlier_claim_stale() {
        let metrics = Metrics::new();
        let holdings = Holdings::new(Arc::clone(&metrics));
        let first = holdings.claimed(7, 0);
        let other = holdings.claimed(8, 0);
        assert!(holdings.is_held(first));
        // The tracker forgot registration 0; job 7 comes back under registration 1.
        let mut lost = holdings.lose_generation(0);
        lost.sort_unstable();
        assert_eq!(lost, [7, 8]);
        let again = holdings.claimed(7, 1);
        assert!(!holdings.is_held(first) && holdings.is_held(again));
        assert!(!holdings.finish(first), "a stale claim is never completed");
        assert!(!holdings.finish(other));
        assert!(
            holdings.is_held(again),
            "finishing a stale claim leaves the new one"
        );
        assert_eq!(metrics.held_jobs.load(Ordering::Relaxed), 1);
        assert!(holdings.finish(again));
        assert!(!holdings.finish(again), "finished once");
        assert_eq!(metrics.jobs_lost.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.held_jobs.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_heartbeat_loses_only_the_jobs_it_asked_about() {
        let holdings = Holdings::new(Metrics::new());
        let kept = holdings.claimed(1, 0);
        let expired = holdings.claimed(2, 0);
        let asked = holdings.claims();
        // Claimed after the heartbeat was sent: its absence from the answer means nothing.
        let newer = holdings.claimed(3, 0);
        assert_eq!(holdings.lose_missing(&asked, &[1]), [2]);
        assert!(holdings.is_held(kept) && holdings.is_held(newer));
        assert!(!holdings.is_held(expired));
        // Registration 1's claims survive the loss of registration 0.
        let renewed = holdings.claimed(4, 1);
        let mut lost = holdings.lose_generation(0);
        lost.sort_unstable();
        assert_eq!(lost, [1, 3]);
        assert_eq!(holdings.take_all(), [4]);
        assert!(!holdings.is_held(renewed));
    }

    #[test]
    fn losing_a_claim_cancels_its_fetch() {
        let holdings = Holdings::new(Metrics::new());
        let expired = holdings.claimed(1, 0);
        let forgotten = holdings.claimed(2, 0);
        let drained = holdings.claimed(3, 1);
        let tokens = [expired, forgotten, drained].map(|claim| holdings.cancellation(claim));
        assert!(tokens.iter().all(|token| !token.is_cancelled()));
        holdings.lose_missing(&[expired], &[]);
        assert!(tokens[0].is_cancelled() && !tokens[1].is_cancelled());
        holdings.lose_generation(0);
        assert!(tokens[1].is_cancelled() && !tokens[2].is_cancelled());
        holdings.take_all();
        assert!(tokens[2].is_cancelled());
        assert!(holdings.cancellation(expired).is_cancelled(), "not held");
    }

    #[test]
    fn unknown_jobs_are_named_only_when_no_change_overlapped_the_heartbeat() {
        let holdings = Holdings::new(Metrics::new());
        let held = holdings.claimed(1, 0);
        // Job 2 came from a claim whose answer was lost.
        let mark = holdings.quiet_mark().expect("quiet");
        assert_eq!(holdings.unknown(mark, &[1, 2]), [2]);
        // A claim in flight when the heartbeat is sent: its jobs may be in the answer.
        let claim = holdings.change();
        assert_eq!(holdings.quiet_mark(), None);
        drop(claim);
        // A claim that began and ended while the heartbeat was in flight.
        let mark = holdings.quiet_mark().expect("quiet");
        {
            let _claim = holdings.change();
            holdings.claimed(3, 0);
        }
        assert!(holdings.unknown(mark, &[1, 2, 3]).is_empty());
        // A completion in flight: the job left `held` before the tracker saw the completion.
        let mark = holdings.quiet_mark().expect("quiet");
        let completing = holdings.change();
        assert!(holdings.finish(held));
        assert!(holdings.unknown(mark, &[1, 2, 3]).is_empty());
        drop(completing);
    }
}
