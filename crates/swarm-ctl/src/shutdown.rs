//! The signals that stop a run: SIGINT (Ctrl-C), SIGTERM (`kill`, a service manager) and SIGHUP
//! (a closed terminal or SSH session). Each ends the run the same way, with what it changed.

use std::future::Future;

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
    Hangup,
}

impl StopSignal {
    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// 128 plus the signal's number, as a shell reports a command the signal killed
    /// (130, 143, 129).
    pub fn exit_code(self) -> u8 {
        let number = match self {
            StopSignal::Interrupt => 2,
            StopSignal::Terminate => 15,
            StopSignal::Hangup => 1,
        };
        128 + number
    }
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Installs the handlers now, so that a signal arriving before the run first polls the future
/// is not lost (it would kill the process unannounced), and returns a future that completes
/// with the first of them. Must be called inside a tokio runtime.
#[cfg(unix)]
pub fn signals() -> std::io::Result<impl Future<Output = StopSignal>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        let stop = tokio::select! {
            Some(()) = interrupt.recv() => StopSignal::Interrupt,
            Some(()) = terminate.recv() => StopSignal::Terminate,
            Some(()) = hangup.recv() => StopSignal::Hangup,
            // The streams never end while their handlers are installed.
            else => std::future::pending().await,
        };
        tracing::info!(signal = stop.name(), "signal received, stopping");
        stop
    })
}

/// Ctrl-C only, where there are no Unix signals.
#[cfg(not(unix))]
pub fn signals() -> std::io::Result<impl Future<Output = StopSignal>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        StopSignal::Interrupt
    })
}
