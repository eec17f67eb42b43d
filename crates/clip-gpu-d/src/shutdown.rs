//! Stop requests: SIGTERM (systemd's stop) and SIGINT (Ctrl-C). The daemon drains on the first
//! and cuts the drain short on the second. [`listen`] installs the handlers when it is called,
//! at the very start of the daemon, so a signal during the model load is a logged, clean stop
//! rather than the signal's default action (death, exit 143, no log line).

use tokio::signal::unix::{self, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

/// The stop requests received so far; cheap to clone.
#[derive(Debug, Clone)]
pub struct StopRequests(watch::Receiver<u32>);

/// Installs the SIGTERM and SIGINT handlers now (inside a tokio runtime) and counts the
/// requests from then on, logging each.
pub fn listen() -> StopRequests {
    let (count, receiver) = watch::channel(0u32);
    let record = move |signal: &str| {
        count.send_modify(|count| *count += 1);
        match *count.borrow() {
            1 => info!(signal, "shutdown requested"),
            requests => info!(signal, requests, "another stop request"),
        }
    };
    match (
        unix::signal(SignalKind::terminate()),
        unix::signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(()) = terminate.recv() => record("SIGTERM"),
                        Some(()) = interrupt.recv() => record("SIGINT"),
                        else => return,
                    }
                }
            });
        }
        (Err(error), _) | (_, Err(error)) => {
            warn!(error = %error, "cannot listen for signals; stopping only on Ctrl-C");
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    record("SIGINT");
                }
            });
        }
    }
    StopRequests(receiver)
}

impl StopRequests {
    /// Resolves once `n` stop requests have arrived (at once if they have); never if the
    /// signals can no longer arrive.
    pub fn nth(&self, n: u32) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.clone();
        async move {
            if receiver.wait_for(|count| *count >= n).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
