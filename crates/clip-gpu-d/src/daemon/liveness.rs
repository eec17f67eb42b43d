//! Whether the pipeline is alive, for the systemd watchdog.
//!
//! The stages that can wedge mark each unit of work they wait on: the scorer while it waits
//! for a batch's preprocessing (the CPU pool) and for the model threads, the committer while
//! it writes, uploads and commits a shard. The pipeline is healthy when every stage is idle
//! (waiting for work is healthy) or has changed state within its stall limit; a stage busy for
//! longer is wedged (a hung CUDA call, a deadlocked pool), and the watchdog stops pinging so
//! that systemd restarts the daemon. A pinger on a timer alone would keep a daemon whose
//! model thread hangs alive forever.
//!
//! The limit is the watchdog interval for the CPU pool and the model threads, whose units of
//! work take seconds at most, and three intervals for the committer, whose S3 uploads and
//! tracker calls retry for minutes (a tracker restart must not restart every GPU daemon).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The stages the watchdog watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Preprocess,
    Model,
    Commit,
}

const STAGES: [Stage; 3] = [Stage::Preprocess, Stage::Model, Stage::Commit];

/// A stage busy for longer than the stall limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage} stage busy for {busy_for:?} without progress")]
pub(super) struct Stall {
    stage: &'static str,
    busy_for: Duration,
}

/// Per-stage work in progress and time of the last change, shared by the stages.
#[derive(Debug)]
pub(super) struct Liveness {
    origin: Instant,
    busy: [AtomicU32; 3],
    /// Milliseconds after `origin` of the stage's last start or end of a unit of work.
    changed_ms: [AtomicU64; 3],
}

/// Marks a unit of work of one stage until dropped.
#[derive(Debug)]
pub(super) struct Busy {
    liveness: Arc<Liveness>,
    stage: Stage,
}

impl Stage {
    /// How many stall limits this stage may stay busy.
    fn patience(self) -> u32 {
        match self {
            Stage::Preprocess | Stage::Model => 1,
            Stage::Commit => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Model => "model",
            Stage::Commit => "commit",
        }
    }
}

impl Liveness {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            busy: Default::default(),
            changed_ms: Default::default(),
        })
    }

    /// Marks `stage` busy until the returned guard is dropped.
    pub(super) fn busy(self: &Arc<Self>, stage: Stage) -> Busy {
        self.enter_at(stage, self.now_ms());
        Busy {
            liveness: Arc::clone(self),
            stage,
        }
    }

    /// `Ok` while every stage is idle or changed within `limit` (the committer: three times).
    pub(super) fn check(&self, limit: Duration) -> Result<(), Stall> {
        self.check_at(self.now_ms(), limit)
    }

    fn enter_at(&self, stage: Stage, now_ms: u64) {
        let index = stage as usize;
        self.busy[index].fetch_add(1, Ordering::AcqRel);
        self.changed_ms[index].store(now_ms, Ordering::Release);
    }

    fn leave_at(&self, stage: Stage, now_ms: u64) {
        let index = stage as usize;
        self.changed_ms[index].store(now_ms, Ordering::Release);
        self.busy[index].fetch_sub(1, Ordering::AcqRel);
    }

    fn check_at(&self, now_ms: u64, limit: Duration) -> Result<(), Stall> {
        for stage in STAGES {
            let index = stage as usize;
            if self.busy[index].load(Ordering::Acquire) == 0 {
                continue;
            }
            let changed_ms = self.changed_ms[index].load(Ordering::Acquire);
            let busy_for = Duration::from_millis(now_ms.saturating_sub(changed_ms));
            if busy_for > limit * stage.patience() {
                return Err(Stall {
                    stage: stage.name(),
                    busy_for,
                });
            }
        }
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now_ms = self.liveness.now_ms();
        self.liveness.leave_at(self.stage, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn idle_stages_are_healthy_however_long_they_wait() {
        let liveness = Liveness::new();
        assert_eq!(liveness.check_at(0, LIMIT), Ok(()));
        liveness.enter_at(Stage::Model, 1_000);
        liveness.leave_at(Stage::Model, 2_000);
        assert_eq!(liveness.check_at(10_000_000, LIMIT), Ok(()));
    }

    #[test]
    fn a_stage_busy_past_the_limit_is_a_stall_until_it_moves() {
        let liveness = Liveness::new();
        liveness.enter_at(Stage::Preprocess, 5_000);
        assert_eq!(liveness.check_at(65_000, LIMIT), Ok(()), "at the limit");
        assert_eq!(
            liveness.check_at(65_001, LIMIT),
            Err(Stall {
                stage: "preprocess",
                busy_for: Duration::from_millis(60_001),
            })
        );
        liveness.leave_at(Stage::Preprocess, 70_000);
        assert_eq!(liveness.check_at(200_000, LIMIT), Ok(()));
    }

    #[test]
    fn the_committer_may_stay_busy_three_limits() {
        let liveness = Liveness::new();
        liveness.enter_at(Stage::Commit, 0);
        assert_eq!(liveness.check_at(180_000, LIMIT), Ok(()), "a long upload");
        let stall = liveness.check_at(180_001, LIMIT).expect_err("stalled");
        assert_eq!(stall.stage, "commit");
    }

    #[test]
    fn overlapping_work_counts_as_progress_only_when_some_of_it_ends() {
        let liveness = Liveness::new();
        // Two model threads: one batch starts, a second starts later; the first ends.
        liveness.enter_at(Stage::Model, 0);
        liveness.enter_at(Stage::Preprocess, 10_000);
        liveness.leave_at(Stage::Preprocess, 20_000);
        liveness.enter_at(Stage::Model, 30_000);
        liveness.leave_at(Stage::Model, 40_000);
        assert_eq!(liveness.check_at(100_000, LIMIT), Ok(()));
        // The other batch never returns: a stall once nothing changed for the limit.
        let stall = liveness.check_at(100_001, LIMIT).expect_err("stalled");
        assert_eq!(stall.stage, "model");
        assert_eq!(
            stall.to_string(),
            "model stage busy for 60.001s without progress"
        );
    }

    #[test]
    fn the_guard_marks_real_work() {
        let liveness = Liveness::new();
        let guard = liveness.busy(Stage::Preprocess);
        assert_eq!(
            liveness.busy[Stage::Preprocess as usize].load(Ordering::Acquire),
            1
        );
        assert_eq!(liveness.check(Duration::from_secs(3_600)), Ok(()));
        assert!(
            liveness
                .check_at(liveness.now_ms() + 1_000, Duration::from_millis(999))
                .is_err()
        );
        drop(guard);
        assert_eq!(
            liveness.busy[Stage::Preprocess as usize].load(Ordering::Acquire),
            0
        );
        assert_eq!(liveness.check_at(u64::MAX, Duration::ZERO), Ok(()));
    }
}
