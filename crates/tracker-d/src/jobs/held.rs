//! Which jobs each client holds, remembered in this process, so a heartbeat needs no database read.
//!
//! Every change of a job's holder goes through [`crate::jobs`] (and the reaper), which updates
//! this map right after its statement committed. A client's set is known only after a read
//! of the database that no change overtook: a read starts with [`HeldJobs::begin_read`], and
//! [`HeldJobs::finish_read`] installs its result only if no change for that client happened
//! meanwhile (its version is unchanged), so a read can never install a set older than a
//! change. Changes the process cannot see one by one (the reaper returning leases, an admin
//! reset) forget every set; the next heartbeat of each client reads it again.

use std::collections::HashMap;
use std::sync::Mutex;

/// The held-job sets of the clients seen since start.
#[derive(Debug, Default)]
pub struct HeldJobs {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Versions come from one clock, so an entry dropped and created again never repeats one.
    clock: u64,
}

#[derive(Debug, Default)]
struct Entry {
    /// Sorted job numbers, or `None` until a read installs them.
    jobs: Option<Vec<u64>>,
    version: u64,
}

/// A database read of one client's jobs in progress.
#[derive(Debug)]
pub struct Read {
    holder: String,
    version: u64,
}

impl HeldJobs {
    /// The jobs `holder` holds, lowest number first, if known.
    pub fn get(&self, holder: &str) -> Option<Vec<u64>> {
        self.lock().entries.get(holder)?.jobs.clone()
    }

    /// Starts a read of `holder`'s jobs from the database.
    pub fn begin_read(&self, holder: &str) -> Read {
        let mut state = self.lock();
        let State { entries, clock } = &mut *state;
        let entry = entries.entry(holder.to_owned()).or_insert_with(|| {
            *clock += 1;
            Entry {
                jobs: None,
                version: *clock,
            }
        });
        Read {
            holder: holder.to_owned(),
            version: entry.version,
        }
    }

    /// Installs what the read found, unless a change for the client came in meanwhile.
    pub fn finish_read(&self, read: Read, mut jobs: Vec<u64>) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(&read.holder)
            && entry.version == read.version
        {
            jobs.sort_unstable();
            entry.jobs = Some(jobs);
        }
    }

    /// `holder` now also holds `numbers` (a claim committed).
    pub fn add(&self, holder: &str, numbers: &[u64]) {
        self.change(holder, |jobs| {
            if let Some(jobs) = jobs {
                jobs.extend_from_slice(numbers);
                jobs.sort_unstable();
                jobs.dedup();
            }
        });
    }

    /// `holder` no longer holds `number` (completed, released, handed back).
    pub fn remove(&self, holder: &str, number: u64) {
        self.change(holder, |jobs| {
            if let Some(jobs) = jobs {
                jobs.retain(|held| *held != number);
            }
        });
    }

    /// `holder`'s set changed in a way not worth replaying: read it again next time.
    pub fn forget(&self, holder: &str) {
        self.change(holder, |jobs| *jobs = None);
    }

    /// The client is gone: drop its entry.
    pub fn drop_client(&self, holder: &str) {
        self.lock().entries.remove(holder);
    }

    /// Holders changed in bulk (leases expired, an admin reset): every set is read again.
    pub fn forget_all(&self) {
        let mut state = self.lock();
        state.clock += 1;
        let version = state.clock;
        for entry in state.entries.values_mut() {
            entry.jobs = None;
            entry.version = version;
        }
    }

    /// Applies `apply` to a known set and bumps the version (an unknown set stays unknown).
    fn change(&self, holder: &str, apply: impl FnOnce(&mut Option<Vec<u64>>)) {
        let mut state = self.lock();
        let State { entries, clock } = &mut *state;
        if let Some(entry) = entries.get_mut(holder) {
            if entry.jobs.is_some() {
                apply(&mut entry.jobs);
            }
            *clock += 1;
            entry.version = *clock;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the map consistent before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_a_read_then_kept_current_by_changes() {
        let held = HeldJobs::default();
        assert_eq!(held.get("a"), None);
        let read = held.begin_read("a");
        held.finish_read(read, vec![7, 3]);
        assert_eq!(held.get("a"), Some(vec![3, 7]));
        held.add("a", &[5]);
        held.remove("a", 3);
        assert_eq!(held.get("a"), Some(vec![5, 7]));
        held.forget_all();
        assert_eq!(held.get("a"), None);
    }

    #[test]
    fn a_read_overtaken_by_a_change_installs_nothing() {
        let held = HeldJobs::default();
        let read = held.begin_read("a");
        // A claim commits after the read looked at the database.
        held.add("a", &[9]);
        held.finish_read(read, vec![]);
        assert_eq!(held.get("a"), None, "the read's empty set is stale");
        let read = held.begin_read("a");
        held.finish_read(read, vec![9]);
        assert_eq!(held.get("a"), Some(vec![9]));
    }

    #[test]
    fn a_read_overtaken_by_a_bulk_change_or_a_departure_installs_nothing() {
        let held = HeldJobs::default();
        let read = held.begin_read("a");
        held.forget_all();
        held.finish_read(read, vec![1]);
        assert_eq!(held.get("a"), None);
        let read = held.begin_read("a");
        held.drop_client("a");
        let again = held.begin_read("a");
        held.finish_read(read, vec![1]);
        assert_eq!(
            held.get("a"),
            None,
            "the entry made again has a new version"
        );
        held.finish_read(again, vec![2]);
        assert_eq!(held.get("a"), Some(vec![2]));
    }
}
