//! The tail of a job half: once nearly all of its candidates are done, the rest get a bounded
//! time, then are abandoned.
//!
//! A host's images wait for its few slots (`--per-host`) and its backoff, and that wait is not
//! part of an image's budget, so a host that holds many of a half's links and answers slowly
//! keeps the half open long after every other host is done: the node then sits nearly idle,
//! two requests on the wire, before it can claim more work (img2dataset's shards hang the same
//! way at "<1% left" for hours). Once [`TAIL_STARTS_AT_PERMILLE`] of the candidates are done,
//! the rest get [`TailPolicy::percent`] of the time the half has taken so far, and at least
//! [`TailPolicy::floor`] (the per-image budget, so that a request on the wire when the tail
//! begins can always finish); what is still unfinished then is counted `abandoned`.
//! A half that runs at an even pace does its last 5 % in about 5 % of its time and is never cut.

use std::time::Duration;

use tokio::time::Instant;

/// The share of a half's candidates, in thousandths, done when its tail begins.
pub const TAIL_STARTS_AT_PERMILLE: u64 = 950;

/// How long the tail of a half may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailPolicy {
    /// The tail's time as a percentage of the time the half took to reach it; 0: no limit.
    pub percent: u32,
    /// The least time the tail gets.
    pub floor: Duration,
}

impl TailPolicy {
    /// A tail that is never cut.
    pub fn unlimited() -> Self {
        TailPolicy {
            percent: 0,
            floor: Duration::ZERO,
        }
    }

    /// How long the rest may take once `finished` of `total` candidates are done after
    /// `elapsed`: `None` before the tail begins, when nothing is left, or with no limit.
    pub fn allowance(&self, finished: u64, total: u64, elapsed: Duration) -> Option<Duration> {
        let begun = finished.saturating_mul(1000) >= total.saturating_mul(TAIL_STARTS_AT_PERMILLE);
        if self.percent == 0 || finished >= total || !begun {
            return None;
        }
        let share = elapsed.mul_f64(f64::from(self.percent) / 100.0);
        Some(share.max(self.floor))
    }
}

/// The tail of one half as it runs: when it began and when it ends.
#[derive(Debug)]
pub(super) struct TailClock {
    policy: TailPolicy,
    started: Instant,
    /// When the tail began (since `started`) and when it ends.
    tail: Option<(Duration, Instant)>,
}

impl TailClock {
    /// The clock of a half starting now.
    pub(super) fn start(policy: TailPolicy) -> Self {
        TailClock {
            policy,
            started: Instant::now(),
            tail: None,
        }
    }

    /// Notes that `finished` of `total` candidates are done, which may begin the tail.
    pub(super) fn finished(&mut self, finished: u64, total: u64) {
        if self.tail.is_none()
            && let Some(allowance) = self
                .policy
                .allowance(finished, total, self.started.elapsed())
        {
            self.tail = Some((self.started.elapsed(), Instant::now() + allowance));
        }
    }

    /// When what is still unfinished is abandoned, once the tail has begun.
    pub(super) fn ends(&self) -> Option<Instant> {
        self.tail.map(|(_, ends)| ends)
    }

    /// Logs that `abandoned` candidates of half `job` were left when the tail ended.
    pub(super) fn log_abandoned(&self, job: u64, abandoned: u64) {
        if let Some((began, ends)) = self.tail {
            tracing::info!(
                job,
                abandoned,
                tail_began_s = began.as_secs_f32(),
                ended_s = (ends - self.started).as_secs_f32(),
                "abandoned the last images of the half"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_begins_at_95_percent_and_gets_a_share_of_the_time_so_far() {
        let policy = TailPolicy {
            percent: 10,
            floor: Duration::from_secs(10),
        };
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(policy.allowance(949, 1000, minutes(30)), None);
        assert_eq!(policy.allowance(950, 1000, minutes(30)), Some(minutes(3)));
        assert_eq!(
            policy.allowance(999, 1000, Duration::from_secs(20)),
            Some(Duration::from_secs(10)),
            "at least the floor"
        );
        assert_eq!(
            policy.allowance(1000, 1000, minutes(30)),
            None,
            "nothing left"
        );
        assert_eq!(policy.allowance(0, 0, minutes(30)), None);
        assert_eq!(
            TailPolicy::unlimited().allowance(999, 1000, minutes(30)),
            None
        );
        // Few candidates: the last one is the whole tail.
        assert_eq!(
            policy.allowance(19, 20, minutes(1)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(policy.allowance(18, 20, minutes(1)), None);
    }
}
