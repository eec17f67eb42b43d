//! The heartbeat task of a claim: renews the leases, and marks the jobs the tracker no longer
//! lists (or all of them when it forgot this client) as lost, which stops their work.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cah_tracker_client::{Session, TrackerError};

use super::progress::Progress;

/// How often a job's downloads look whether the heartbeat marked its lease lost.
const LOST_POLL: Duration = Duration::from_millis(100);

/// Jobs of the claim not yet completed, and those the tracker says we lost.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) open: HashSet<u64>,
    pub(super) lost: HashSet<u64>,
    /// Jobs whose `complete` (or report of an unusable WAT) is in flight: the tracker may drop
    /// them from a heartbeat answer before the call returns, which is no lost lease.
    pub(super) completing: HashSet<u64>,
}

/// Resolves once the heartbeat marked job `number` lost.
pub(super) async fn lease_lost(held: &Mutex<Held>, number: u64) {
    while !is_lost(held, number) {
        tokio::time::sleep(LOST_POLL).await;
    }
}

pub(super) fn is_lost(held: &Mutex<Held>, number: u64) -> bool {
    held.lock()
        .map(|held| held.lost.contains(&number))
        .unwrap_or(false)
}

/// Heartbeats every `interval` and on every phase change; marks jobs the tracker dropped.
pub(super) async fn heartbeat_loop(
    session: Session,
    progress: Arc<Progress>,
    held: Arc<Mutex<Held>>,
    interval: std::time::Duration,
) {
    loop {
        let text = progress.text();
        match session.heartbeat(&text).await {
            Ok(response) => {
                let still: HashSet<u64> = response.jobs.into_iter().collect();
                if let Ok(mut held) = held.lock() {
                    let dropped: Vec<u64> = held
                        .open
                        .iter()
                        .copied()
                        .filter(|number| {
                            !still.contains(number) && !held.completing.contains(number)
                        })
                        .collect();
                    for number in dropped {
                        if held.lost.insert(number) {
                            tracing::warn!(
                                job = number,
                                "the tracker says this job's lease was lost"
                            );
                        }
                    }
                }
            }
            Err(TrackerError::TimedOut) => {
                // The tracker forgot this client (404): its leases went with it.
                if let Ok(mut held) = held.lock() {
                    let open: Vec<u64> = held.open.iter().copied().collect();
                    for number in open {
                        if held.lost.insert(number) {
                            tracing::warn!(
                                job = number,
                                "the tracker forgot this client, the job's lease is lost"
                            );
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = progress.changed.notified() => {}
        }
    }
}
