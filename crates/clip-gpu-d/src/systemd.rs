//! systemd integration: `READY=1`, `STOPPING=1`, start extensions and the watchdog (no-ops outside systemd, when
//! `NOTIFY_SOCKET` is unset), as in scraper-d.
//!
//! Unlike scraper-d's, the watchdog pings only while a health check passes (the daemon's check
//! is its pipeline's liveness), so a wedged model thread or committer gets the daemon
//! restarted even though its async runtime still runs.

use std::fmt::Display;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{info, warn};

/// Tells systemd the service is ready (Type=notify), replacing a start's status line.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("running")]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Tells systemd, every 20 s until dropped, that the start goes on for another minute
/// (`EXTEND_TIMEOUT_USEC`), with `status` for `systemctl status`: for waits on services that
/// may be down, so the unit's start timeout does not kill a daemon that is only waiting.
pub async fn extend_start(status: &str) {
    extend_every(Duration::from_secs(20), || {
        notify(&[
            NotifyState::ExtendTimeoutUsec(60_000_000),
            NotifyState::Status(status),
        ]);
    })
    .await;
}

/// Calls `extend` every `period`, the first time at once, forever.
async fn extend_every(period: Duration, mut extend: impl FnMut()) {
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        extend();
    }
}

/// The unit's `WatchdogSec=`, when systemd asks this process for watchdog pings.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` every half `interval` while `check` passes, until dropped.
pub async fn watchdog<E: Display>(interval: Duration, check: impl Fn() -> Result<(), E>) {
    info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    ping_while_healthy(interval / 2, check, || notify(&[NotifyState::Watchdog])).await;
}

/// The watchdog loop, with the ping as a parameter (tests count pings).
async fn ping_while_healthy<E: Display>(
    period: Duration,
    check: impl Fn() -> Result<(), E>,
    mut ping: impl FnMut(),
) {
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(10)));
    let mut stalled = false;
    loop {
        ticker.tick().await;
        match check() {
            Ok(()) => {
                if stalled {
                    info!("pipeline moving again; watchdog pings resume");
                    stalled = false;
                }
                ping();
            }
            Err(stall) => {
                if !stalled {
                    warn!(stall = %stall, "pipeline stalled; withholding watchdog pings so systemd restarts the daemon");
                    stalled = true;
                }
            }
        }
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states) {
        warn!(error = %error, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_start_is_extended_at_once_and_every_period() {
        let extensions = Cell::new(0u32);
        let extender = extend_every(Duration::from_secs(20), || {
            extensions.set(extensions.get() + 1);
        });
        // At 0, 20 and 40 s.
        let _ = tokio::time::timeout(Duration::from_secs(50), extender).await;
        assert_eq!(extensions.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_stop_while_the_check_fails_and_resume_after() {
        let healthy = Cell::new(true);
        let pings = Cell::new(0u32);
        let check = || {
            if healthy.get() {
                Ok(())
            } else {
                Err("model stage stuck")
            }
        };
        let pinger =
            ping_while_healthy(Duration::from_secs(1), check, || pings.set(pings.get() + 1));
        tokio::pin!(pinger);
        let step = |seconds: u64| Duration::from_millis(seconds * 1_000 + 500);
        // Ticks at 0, 1 and 2 s.
        let _ = tokio::time::timeout(step(2), &mut pinger).await;
        assert_eq!(pings.get(), 3);
        healthy.set(false);
        let _ = tokio::time::timeout(step(5), &mut pinger).await;
        assert_eq!(pings.get(), 3, "no ping while stalled");
        healthy.set(true);
        let _ = tokio::time::timeout(step(1), &mut pinger).await;
        assert!(pings.get() >= 4, "pings resume: {}", pings.get());
    }
}
