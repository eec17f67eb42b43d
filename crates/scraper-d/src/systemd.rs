//! systemd integration: `READY=1`, `STATUS=`, `STOPPING=1` and the watchdog (a no-op outside
//! systemd, when `NOTIFY_SOCKET` is unset).

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is ready (Type=notify).
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line of `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(error = %error, "sd_notify failed");
    }
}

/// Spawns the watchdog pinger when the unit sets `WatchdogSec=`: `WATCHDOG=1` at half the
/// interval, from the runtime, so a hung runtime stops the pings and systemd restarts us.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    }))
}
