//! The daemon's registration with the tracker: the current session, registered again when the
//! tracker forgets the token, and the jobs held under it.
//!
//! Any call carrying the token may answer [`TrackerError::TimedOut`] (404): the tracker reaped
//! the daemon after its client timeout, or lost its database. The first task to see it
//! registers again (2021's `recreate()`); tasks that saw the same old token wait for that and
//! take the new one. Every job claimed under the old token is lost (see `holdings`).
//!
//! Each token is kept in the [`TokenFile`] until the daemon says bye for it or the tracker forgets
//! it, so a start after a crash can say bye for the one the crash left.

use std::sync::{Arc, Mutex};

use cah_protocol::ClientType;
use cah_tracker_client::{Session, TrackerError};
use tracing::{info, warn};

use super::holdings::Holdings;
use super::token_file::TokenFile;
use crate::metrics::Metrics;

pub(super) struct Registration {
    /// The session and its generation (0 for the first registration, then +1 each time).
    current: Mutex<(Session, u64)>,
    /// Held while registering again, so one task does it.
    renewing: tokio::sync::Mutex<()>,
    pub(super) holdings: Holdings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) token_file: TokenFile,
}

impl Registration {
    /// Starts with `session`, whose token goes into `token_file`.
    pub(super) fn new(session: Session, metrics: Arc<Metrics>, token_file: TokenFile) -> Self {
        let this = Self {
            current: Mutex::new((session, 0)),
            renewing: tokio::sync::Mutex::new(()),
            holdings: Holdings::new(Arc::clone(&metrics)),
            metrics,
            token_file,
        };
        this.keep_token();
        this
    }

    /// Records the current token in the token file; a failure costs only the quick hand-back
    /// after a crash, so it is a warning.
    fn keep_token(&self) {
        if let Err(error) = self.token_file.add(self.session().0.token()) {
            warn!(error = %error, "cannot record the tracker token in the output folder; after a crash its jobs wait for their leases");
        }
    }

    /// Says bye for the current session and takes its token out of the token file.
    pub(super) async fn bye(&self) -> Result<(), TrackerError> {
        let session = self.session().0;
        session.bye().await?;
        let _ = self.token_file.forget(session.token());
        Ok(())
    }

    /// The current session and its generation (pass it to [`renew`](Self::renew)).
    pub(super) fn session(&self) -> (Session, u64) {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Says bye for the registrations an earlier run of this daemon left without one (a crash, a
    /// kill, an uncommitted shard at its exit): every token in the token file but the current
    /// one. The tracker then hands their jobs out again now instead of when their leases run
    /// out. Call it once the shards that run left are committed. A token the tracker no longer
    /// knows counts as done; one it could not be told about stays in the file for the next start.
    pub(super) async fn say_bye_for_earlier_runs(&self) {
        let current = self.session().0;
        for token in self
            .token_file
            .tokens()
            .into_iter()
            .filter(|token| token != current.token())
        {
            let earlier = Session::resume(
                current.client().clone(),
                current.nickname().to_owned(),
                ClientType::Gpu,
                token.clone(),
                String::new(),
            );
            match earlier.bye().await {
                Ok(()) => {
                    info!(
                        "said bye for the registration an earlier run left; its jobs go back to the tracker"
                    );
                    let _ = self.token_file.forget(&token);
                }
                Err(error) => warn!(
                    error = %cah_tracker_client::with_causes(&error),
                    "cannot say bye for the registration an earlier run left; its jobs wait for their leases"
                ),
            }
        }
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
        let forgotten = session.token().to_owned();
        session.reregister().await?;
        Metrics::add(&self.metrics.reregistrations, 1);
        let _ = self.token_file.forget(&forgotten);
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (session, generation + 1);
        self.keep_token();
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
