//! The shutdown signal: SIGTERM (systemd's stop) or SIGINT (Ctrl-C), whichever comes first.

use tokio::signal::unix::{self, SignalKind};
use tracing::{info, warn};

/// Resolves when SIGTERM or SIGINT arrives, and logs which.
pub async fn signal() {
    let (mut terminate, mut interrupt) = match (
        unix::signal(SignalKind::terminate()),
        unix::signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            warn!(error = %error, "cannot listen for signals; stopping only on Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => info!(signal = "SIGTERM", "shutdown requested"),
        _ = interrupt.recv() => info!(signal = "SIGINT", "shutdown requested"),
    }
}
