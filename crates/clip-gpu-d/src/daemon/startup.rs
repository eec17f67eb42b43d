//! Start-up against services that may be down: the S3 listing and the tracker registration
//! are tried again (2 s, doubling to 1 min) for as long as they fail in a way that can pass,
//! while systemd is told that the start goes on, instead of the daemon exiting and reloading
//! the model every `RestartSec`. A stop request ends the wait.

use std::pin::Pin;
use std::time::Duration;

use tracing::warn;

const FIRST_PAUSE: Duration = Duration::from_secs(2);
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// What waiting for a service came to.
pub(super) enum Reached<T> {
    Yes(T),
    /// Stop was requested before the service answered.
    Stopped,
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses (returned), or
/// `shutdown` completes. `what` names the service in logs and in systemd's status line.
pub(super) async fn until_reached<T, E, F, Fut>(
    what: &str,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<Reached<T>, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let status = format!("waiting for {what}");
    let extend = crate::systemd::extend_start(&status);
    tokio::pin!(extend);
    let mut pause = FIRST_PAUSE;
    loop {
        let result = tokio::select! {
            result = attempt() => result,
            () = &mut extend => unreachable!("extends forever"),
            () = shutdown.as_mut() => return Ok(Reached::Stopped),
        };
        match result {
            Ok(value) => return Ok(Reached::Yes(value)),
            Err(error) if retryable(&error) => {
                warn!(
                    service = what,
                    retry_in_s = pause.as_secs(),
                    error = %cah_tracker_client::with_causes(&error),
                    "cannot reach a service the daemon needs to start; trying again"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut extend => unreachable!("extends forever"),
                    () = shutdown.as_mut() => return Ok(Reached::Stopped),
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_what_can_pass_and_returns_what_cannot() {
        let tries = Cell::new(0u32);
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let reached = until_reached(
            "a flaky service",
            shutdown.as_mut(),
            |error: &io::Error| error.kind() == io::ErrorKind::ConnectionRefused,
            || {
                tries.set(tries.get() + 1);
                let outcome = if tries.get() < 4 {
                    Err(io::Error::from(io::ErrorKind::ConnectionRefused))
                } else {
                    Ok(7)
                };
                async move { outcome }
            },
        )
        .await;
        assert!(matches!(reached, Ok(Reached::Yes(7))));
        assert_eq!(tries.get(), 4);

        let refused = until_reached(
            "a service",
            shutdown.as_mut(),
            |_: &io::Error| false,
            || async { Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied)) },
        )
        .await;
        assert!(refused.is_err_and(|error| error.kind() == io::ErrorKind::PermissionDenied));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_request_ends_the_wait() {
        let shutdown = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(shutdown);
        let reached = until_reached(
            "a dead service",
            shutdown,
            |_: &io::Error| true,
            || async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused)) },
        )
        .await;
        assert!(matches!(reached, Ok(Reached::Stopped)));
    }
}
