//! Uploading a finished bundle: a full bundle store on the tracker (507) is waited out with the
//! bundle kept, instead of throwing away an hour of downloads and scraping the next WAT into the
//! same full store.

use std::future::Future;
use std::time::Duration;

use cah_tracker_client::TrackerError;

/// Uploads of one bundle to a full store before the claim fails (its jobs are then released).
pub(crate) const FULL_STORE_ATTEMPTS: u32 = 4;
/// The wait when the tracker sent no `Retry-After`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest wait between two uploads, whatever the tracker asks: the lease runs meanwhile
/// (the heartbeat renews it) and so does the node's bill.
const MAX_WAIT: Duration = Duration::from_secs(900);

/// Runs `upload` until it does not answer `StorageFull`, waiting the tracker's `Retry-After`
/// (within 1 s and [`MAX_WAIT`]) between tries, at most [`FULL_STORE_ATTEMPTS`] times; any other
/// outcome is returned as it is.
pub(crate) async fn through_a_full_store<T, F, Fut>(
    job: u64,
    mut upload: F,
) -> Result<T, TrackerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TrackerError>>,
{
    let mut attempt = 1;
    loop {
        match upload().await {
            Err(TrackerError::StorageFull { retry_after }) if attempt < FULL_STORE_ATTEMPTS => {
                let wait = retry_after
                    .unwrap_or(DEFAULT_WAIT)
                    .clamp(Duration::from_secs(1), MAX_WAIT);
                tracing::warn!(
                    job,
                    attempt,
                    wait_s = wait.as_secs(),
                    "the tracker's bundle store is full; keeping the bundle to upload it again"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    fn full(seconds: Option<u64>) -> TrackerError {
        TrackerError::StorageFull {
            retry_after: seconds.map(Duration::from_secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_is_waited_out_with_its_retry_after() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let stored = through_a_full_store(7, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(full(Some(300))),
                1 => Err(full(None)),
                _ => Ok("stored"),
            }
        })
        .await;
        assert_eq!(stored.expect("third upload"), "stored");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            started.elapsed() >= Duration::from_secs(600),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_stays_full_fails_the_upload_and_other_errors_at_once() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let error = through_a_full_store(7, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(full(Some(86_400)))
        })
        .await
        .expect_err("still full");
        assert!(
            matches!(error, TrackerError::StorageFull { .. }),
            "{error:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), FULL_STORE_ATTEMPTS);
        let waited = started.elapsed();
        assert!(
            waited <= MAX_WAIT * (FULL_STORE_ATTEMPTS - 1),
            "capped: {waited:?}"
        );

        let calls = AtomicU32::new(0);
        let error = through_a_full_store(7, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TrackerError::Forbidden("expired".into()))
        })
        .await
        .expect_err("forbidden");
        assert!(matches!(error, TrackerError::Forbidden(_)), "{error:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
