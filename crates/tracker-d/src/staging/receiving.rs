//! Uploads being received, at most one per job: a newer one cancels the one before.
//!
//! A client retries a PUT whose answer it did not get, perhaps while the tracker still reads
//! the first body; and a new upload URL makes the previous one useless. In both cases only the
//! latest upload can be stored, so the earlier one stops at once and its part file goes,
//! instead of filling the store with bodies that will be refused. The reaper stops the uploads
//! of jobs whose lease it expired the same way.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// The upload in flight per job.
#[derive(Debug, Default)]
pub(super) struct Receiving {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per job: the upload's id, its blob key and what cancels it.
    slots: HashMap<u64, (u64, String, CancellationToken)>,
    next_id: u64,
}

/// One upload in flight; it leaves the map when dropped.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    receiving: &'a Receiving,
    number: u64,
    id: u64,
    cancel: CancellationToken,
}

impl Receiving {
    /// Starts an upload to blob `key` of job `number`, cancelling the one in flight.
    pub(super) fn begin(&self, number: u64, key: &str) -> Slot<'_> {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        let cancel = CancellationToken::new();
        if let Some((_, _, previous)) = state
            .slots
            .insert(number, (id, key.to_owned(), cancel.clone()))
        {
            previous.cancel();
        }
        Slot {
            receiving: self,
            number,
            id,
            cancel,
        }
    }

    /// Cancels the upload to job `number` in flight, if any (and if it goes to blob `key`,
    /// when given).
    pub(super) fn cancel(&self, number: u64, key: Option<&str>) {
        let mut state = self.lock();
        if key.is_some_and(|key| state.slots.get(&number).is_none_or(|slot| slot.1 != key)) {
            return;
        }
        if let Some((_, _, cancel)) = state.slots.remove(&number) {
            cancel.cancel();
        }
    }

    /// The uploads in flight, as (job number, blob key).
    pub(super) fn in_flight(&self) -> Vec<(u64, String)> {
        self.lock()
            .slots
            .iter()
            .map(|(number, (_, key, _))| (*number, key.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Slot<'_> {
    /// Resolves when a newer upload to the job started.
    pub(super) async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.receiving.lock();
        if state
            .slots
            .get(&self.number)
            .is_some_and(|(id, _, _)| *id == self.id)
        {
            state.slots.remove(&self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_upload_cancels_the_one_before_only_for_its_job() {
        let receiving = Receiving::default();
        let first = receiving.begin(1, "job-1-a");
        let other_job = receiving.begin(2, "job-2-a");
        let second = receiving.begin(1, "job-1-b");
        assert!(first.cancel.is_cancelled());
        assert!(!other_job.cancel.is_cancelled());
        drop(first);
        assert_eq!(
            receiving.lock().slots.len(),
            2,
            "the older slot leaves nothing behind"
        );
        let mut in_flight = receiving.in_flight();
        in_flight.sort();
        assert_eq!(
            in_flight,
            [(1, "job-1-b".to_owned()), (2, "job-2-a".to_owned())]
        );
        receiving.cancel(1, Some("job-1-a"));
        assert!(!second.cancel.is_cancelled(), "another key's upload stays");
        receiving.cancel(1, Some("job-1-b"));
        assert!(second.cancel.is_cancelled());
        drop(second);
        drop(other_job);
        assert!(receiving.lock().slots.is_empty());
    }
}
