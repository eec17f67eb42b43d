//! A lower bound on the shuffle keys of each stage's open jobs, so a claim starts its index scan past the claimed ones.
//!
//! Claims take open jobs in `shuffle_key` order from the partial index `jobs_open`. On
//! PostgreSQL a claimed job leaves a dead entry at the front of that index until vacuum
//! removes it, and every later claim stepped over all of them: measured on the 2-core machine
//! at 2,000 cycles/s, PostgreSQL's CPU grew from 0.9 to 1.4 cores within 20 s and p99 latency
//! reached 67 ms. With `shuffle_key >= floor` in the claim, the index descent lands past them.
//!
//! The floor is a hint kept in this process, never a rule:
//! - a claim raises it to the lowest key it took, unless a job was reopened since the claim
//!   read it (the generation changed);
//! - every reopening in this process lowers it (to the job's key where the caller knows it,
//!   else to the bottom);
//! - a claim that finds nothing above the floor scans again from the bottom, and the reaper
//!   resets both floors every round, so jobs opened elsewhere (a `tracker-d import` running
//!   beside the server, a transaction that locked an open row and rolled back) are found too.

use std::sync::Mutex;

use super::Stage;

/// The floors of the CPU and GPU queues.
#[derive(Debug)]
pub struct OpenFloor {
    slots: Mutex<[Slot; 2]>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    floor: i64,
    generation: u64,
}

/// What a claim read before its scan; hand it back to [`OpenFloor::raise`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// Scan from this key.
    pub floor: i64,
    stage: Stage,
    generation: u64,
}

/// The floor that excludes nothing.
pub const BOTTOM: i64 = i64::MIN;

impl Default for OpenFloor {
    fn default() -> Self {
        let slot = Slot {
            floor: BOTTOM,
            generation: 0,
        };
        OpenFloor {
            slots: Mutex::new([slot; 2]),
        }
    }
}

impl OpenFloor {
    /// Reads the floor of `stage` before a claim.
    pub fn ticket(&self, stage: Stage) -> Ticket {
        let slot = self.lock()[index(stage)];
        Ticket {
            floor: slot.floor,
            stage,
            generation: slot.generation,
        }
    }

    /// After a claim that took jobs with `lowest` as their lowest key: no open job of the
    /// stage is below it any more, unless one was reopened meanwhile.
    pub fn raise(&self, ticket: Ticket, lowest: i64) {
        let mut slots = self.lock();
        let slot = &mut slots[index(ticket.stage)];
        if slot.generation == ticket.generation && lowest > slot.floor {
            slot.floor = lowest;
        }
    }

    /// A job of `stage` with shuffle key `key` was reopened.
    pub fn lower(&self, stage: Stage, key: i64) {
        let mut slots = self.lock();
        let slot = &mut slots[index(stage)];
        slot.floor = slot.floor.min(key);
        slot.generation += 1;
    }

    /// Jobs of unknown keys (or stages) were reopened, or jobs may have been opened elsewhere.
    pub fn reset(&self) {
        for slot in self.lock().iter_mut() {
            slot.floor = BOTTOM;
            slot.generation += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Slot; 2]> {
        // The slots are plain numbers: a panic elsewhere cannot leave them half-written.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn index(stage: Stage) -> usize {
    match stage {
        Stage::Cpu => 0,
        Stage::Gpu => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_raises_the_floor_of_its_stage_only() {
        let floor = OpenFloor::default();
        let ticket = floor.ticket(Stage::Cpu);
        assert_eq!(ticket.floor, BOTTOM);
        floor.raise(ticket, 40);
        assert_eq!(floor.ticket(Stage::Cpu).floor, 40);
        assert_eq!(floor.ticket(Stage::Gpu).floor, BOTTOM);
        // Never down by a raise.
        floor.raise(floor.ticket(Stage::Cpu), 10);
        assert_eq!(floor.ticket(Stage::Cpu).floor, 40);
    }

    #[test]
    fn a_reopening_during_a_claim_wins_over_its_raise() {
        let floor = OpenFloor::default();
        floor.raise(floor.ticket(Stage::Cpu), 100);
        let claim = floor.ticket(Stage::Cpu);
        floor.lower(Stage::Cpu, 7);
        floor.raise(claim, 150);
        assert_eq!(floor.ticket(Stage::Cpu).floor, 7);
        // A claim that starts after the reopening may raise again.
        floor.raise(floor.ticket(Stage::Cpu), 150);
        assert_eq!(floor.ticket(Stage::Cpu).floor, 150);
    }

    #[test]
    fn a_reset_drops_both_floors_and_stale_raises() {
        let floor = OpenFloor::default();
        floor.raise(floor.ticket(Stage::Cpu), 5);
        floor.raise(floor.ticket(Stage::Gpu), 6);
        let stale = floor.ticket(Stage::Gpu);
        floor.reset();
        floor.raise(stale, 9);
        assert_eq!(floor.ticket(Stage::Cpu).floor, BOTTOM);
        assert_eq!(floor.ticket(Stage::Gpu).floor, BOTTOM);
    }
}
