//! The daemon's registration with the tracker: the current session, registered again when the
//! tracker forgets the token, and the jobs held under it.
//!
//! Any call carrying the token may answer [`TrackerError::TimedOut`] (404): the tracker reaped
//! the daemon after its client timeout, or lost its database. The first task to see it
//! registers again (2021's `recreate()`); tasks that saw the same old token wait for that and
//! take the new one. Every job claimed under the old token is lost (see `holdings`).

use std::sync::{Arc, Mutex};

use cah_tracker_client::{Session, TrackerError};
use tracing::warn;

use super::holdings::Holdings;
use crate::metrics::Metrics;

pub(super) struct Registration {
    /// The session and its generation (0 for the first registration, then +1 each time).
    current: Mutex<(Session, u64)>,
    /// Held while registering again, so one task does it.
    renewing: tokio::sync::Mutex<()>,
    pub(super) holdings: Holdings,
    pub(super) metrics: Arc<Metrics>,
}

impl Registration {
    pub(super) fn new(session: Session, metrics: Arc<Metrics>) -> Self {
        Self {
            current: Mutex::new((session, 0)),
            renewing: tokio::sync::Mutex::new(()),
            holdings: Holdings::new(Arc::clone(&metrics)),
            metrics,
        }
    }

    /// The current session and its generation (pass it to [`renew`](Self::renew)).
    pub(super) fn session(&self) -> (Session, u64) {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The tracker forgot the token of `generation`: registers again, unless another task
    /// already did, and drops the jobs held under the old token.
    pub(super) async fn renew(&self, generation: u64) -> Result<(), TrackerError> {
        let _renewing = self.renewing.lock().await;
        let (mut session, current) = self.session();
        if current != generation {
            return Ok(());
        }
        let lost = self.holdings.lose_generation(generation);
        warn!(
            lost_jobs = ?lost,
            "the tracker forgot this daemon; registering again and dropping the jobs it held"
        );
        session.reregister().await?;
        Metrics::add(&self.metrics.reregistrations, 1);
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (session, generation + 1);
        Ok(())
    }

    /// Runs `call` with the current session; when the tracker forgot the token, registers
    /// again and runs it once more. For calls that need a token but hold no job (dedup).
    pub(super) async fn call<T, F, Fut>(&self, call: F) -> Result<T, TrackerError>
    where
        F: Fn(Session) -> Fut,
        Fut: Future<Output = Result<T, TrackerError>>,
    {
        let (session, generation) = self.session();
        match call(session).await {
            Err(TrackerError::TimedOut) => {
                self.renew(generation).await?;
                call(self.session().0).await
            }
            other => other,
        }
    }
}
