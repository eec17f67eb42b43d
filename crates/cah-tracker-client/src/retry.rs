//! Bounded retries: exponential backoff with full jitter, capped by attempts and by elapsed time.
//!
//! The 2021 library slept 60 s and recursed on any exception, forever. Here every call gives up
//! after [`RetryPolicy::max_attempts`] tries or [`RetryPolicy::max_elapsed`], whichever comes
//! first, and only transient failures (transport, 5xx, 429) are retried at all; a full bundle
//! store (507) only when the tracker said when to come back.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::endpoint::{Endpoint, Repeat};
use crate::error::TrackerError;

/// How a call retries transient failures.
///
/// Before retry number `n` (1 for the first retry) the client waits a uniformly random time in
/// `[0, min(max_backoff, initial_backoff * 2^(n-1))]` ("full jitter"), but at least the
/// server's `Retry-After` when it sent one with a 429 or a 5xx (a 507 is retried only with
/// one: see [`TrackerError::StorageFull`]). It gives up, returning the last error, when the
/// next attempt would be number `max_attempts + 1`, or when the wait would end after
/// `max_elapsed` measured from the first attempt. An attempt in flight is bounded by the
/// request timeout, not by `max_elapsed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// Cap of the first retry's wait.
    pub initial_backoff: Duration,
    /// Largest cap of any wait (`Retry-After` may still ask for more).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt started.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, backoff caps 250 ms, 500 ms, ... up to 30 s, within 2 minutes.
    ///
    /// Two minutes rides out a tracker restart or a database failover while staying well
    /// inside a job lease, so a worker does not lose its job while the client waits.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Upper bound of the jittered wait before retry number `retry` (1-based).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let cap = self.initial_backoff.saturating_mul(1_u32 << doublings);
        cap.min(self.max_backoff)
    }

    /// The wait before retry number `retry`, given a uniform random `fraction` in `[0, 1]` and
    /// the server's `Retry-After`, which is the minimum.
    pub fn wait_before_retry(
        &self,
        retry: u32,
        fraction: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let jittered = self.backoff_cap(retry).mul_f64(fraction.clamp(0.0, 1.0));
        match retry_after {
            Some(minimum) => jittered.max(minimum),
            None => jittered,
        }
    }
}

/// What the retry loop tells an attempt about the attempts before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// 1 for the first attempt.
    pub(crate) number: u32,
    /// An earlier attempt failed in a way that may have been applied by the tracker.
    pub(crate) after_uncertain: bool,
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's budget is spent.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    endpoint: &Endpoint,
    mut attempt: F,
) -> Result<T, TrackerError>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, TrackerError>>,
{
    let started = Instant::now();
    let max_attempts = policy.max_attempts.max(1);
    let mut after_uncertain = false;
    let mut number = 1;
    loop {
        let error = match attempt(Attempt {
            number,
            after_uncertain,
        })
        .await
        {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let repeatable = match endpoint.repeat {
            Repeat::Always => true,
            Repeat::OnlyIfNotApplied => !error.may_have_applied(),
        };
        let full_left_to_caller =
            matches!(error, TrackerError::StorageFull { .. }) && !endpoint.retries_storage_full;
        if !error.is_retryable() || !repeatable || full_left_to_caller {
            return Err(error);
        }
        if number >= max_attempts {
            tracing::debug!(call = endpoint.name, attempts = number, error = %error, "tracker call gave up after its last attempt");
            return Err(error);
        }
        let wait = policy.wait_before_retry(number, random_fraction(), error.retry_after());
        let elapsed = started.elapsed();
        if elapsed.saturating_add(wait) > policy.max_elapsed {
            tracing::debug!(
                call = endpoint.name,
                attempts = number,
                elapsed_ms = elapsed.as_millis() as u64,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "tracker call gave up: retry budget spent"
            );
            return Err(error);
        }
        tracing::warn!(
            call = endpoint.name,
            attempt = number,
            wait_ms = wait.as_millis() as u64,
            error = %error,
            "tracker call failed, retrying"
        );
        after_uncertain |= error.may_have_applied();
        tokio::time::sleep(wait).await;
        number += 1;
    }
}

// Kept out of the async function so the thread-local generator is never held across an await.
fn random_fraction() -> f64 {
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::endpoint;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        }
    }

    fn server_error() -> TrackerError {
        TrackerError::Server {
            status: 503,
            body: "database unavailable".to_owned(),
            retry_after: None,
        }
    }

    #[test]
    fn caps_double_up_to_the_maximum() {
        let caps: Vec<u64> = (1..=6)
            .map(|retry| policy().backoff_cap(retry).as_millis() as u64)
            .collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn caps_do_not_overflow_on_huge_retry_numbers() {
        let policy = RetryPolicy {
            max_backoff: Duration::MAX,
            ..policy()
        };
        assert_eq!(policy.backoff_cap(0), Duration::from_millis(100));
        assert_eq!(
            policy.backoff_cap(u32::MAX),
            Duration::from_millis(100) * (1 << 31)
        );
        assert_eq!(
            RetryPolicy::default().backoff_cap(u32::MAX),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_cap() {
        let policy = policy();
        assert_eq!(policy.wait_before_retry(3, 0.0, None), Duration::ZERO);
        assert_eq!(
            policy.wait_before_retry(3, 0.5, None),
            Duration::from_millis(200)
        );
        assert_eq!(
            policy.wait_before_retry(3, 1.0, None),
            Duration::from_millis(400)
        );
        assert_eq!(
            policy.wait_before_retry(3, 7.0, None),
            Duration::from_millis(400)
        );
        for _ in 0..1000 {
            let wait = policy.wait_before_retry(2, random_fraction(), None);
            assert!(wait <= Duration::from_millis(200), "{wait:?}");
        }
    }

    #[test]
    fn retry_after_is_the_minimum_wait() {
        let policy = policy();
        let retry_after = Some(Duration::from_secs(5));
        assert_eq!(
            policy.wait_before_retry(1, 1.0, retry_after),
            Duration::from_secs(5)
        );
        let short = Some(Duration::from_millis(10));
        assert_eq!(
            policy.wait_before_retry(1, 1.0, short),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn default_policy_is_documented_values() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts, 8);
        assert_eq!(policy.initial_backoff, Duration::from_millis(250));
        assert_eq!(policy.max_backoff, Duration::from_secs(30));
        assert_eq!(policy.max_elapsed, Duration::from_secs(120));
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    /// Runs a scripted operation that fails `failures` times with `error`, then succeeds.
    async fn run_script(
        policy: &RetryPolicy,
        endpoint: &Endpoint,
        failures: u32,
        error: fn() -> TrackerError,
    ) -> (Result<u32, TrackerError>, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let result = with_retries(policy, endpoint, |attempt| {
            let calls = Arc::clone(&calls);
            async move {
                let seen = calls.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(seen, attempt.number);
                if seen <= failures {
                    Err(error())
                } else {
                    Ok(seen)
                }
            }
        })
        .await;
        (result, calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let (result, calls) =
            run_script(&policy(), &endpoint::EXT_HEARTBEAT, 3, server_error).await;
        assert_eq!(result.expect("succeeds on the fourth attempt"), 4);
        assert_eq!(calls, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let (result, calls) =
            run_script(&policy(), &endpoint::EXT_HEARTBEAT, 99, server_error).await;
        assert_eq!(result.expect_err("gives up").kind(), "server");
        assert_eq!(calls, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_time_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        };
        let started = Instant::now();
        let (result, calls) =
            run_script(&policy, &endpoint::EXT_HEARTBEAT, 9999, server_error).await;
        assert!(result.is_err());
        assert!(calls < 1000, "stopped by time, not attempts: {calls}");
        assert!(
            started.elapsed() <= Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_budget_gives_up_at_once() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(30),
            ..policy()
        };
        let started = Instant::now();
        let (result, calls) = run_script(&policy, &endpoint::EXT_HEARTBEAT, 1, || {
            TrackerError::RateLimited {
                retry_after: Some(Duration::from_secs(3600)),
            }
        })
        .await;
        let error = result.expect_err("does not wait an hour");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
        assert_eq!(calls, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_is_retried_after_its_retry_after_only() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(600),
            ..policy()
        };
        let started = Instant::now();
        let (result, calls) = run_script(&policy, &endpoint::UPLOAD_BUNDLE, 1, || {
            TrackerError::StorageFull {
                retry_after: Some(Duration::from_secs(300)),
            }
        })
        .await;
        assert_eq!(result.expect("the second upload is stored"), 2);
        assert_eq!(calls, 2);
        assert!(
            started.elapsed() >= Duration::from_secs(300),
            "{:?}",
            started.elapsed()
        );

        let (result, calls) = run_script(&policy, &endpoint::UPLOAD_BUNDLE, 1, || {
            TrackerError::StorageFull { retry_after: None }
        })
        .await;
        assert_eq!(
            result.expect_err("no delay, no retry").kind(),
            "storage_full"
        );
        assert_eq!(calls, 1);

        let started = Instant::now();
        let (result, calls) =
            run_script(&RetryPolicy::default(), &endpoint::UPLOAD_BUNDLE, 1, || {
                TrackerError::StorageFull {
                    retry_after: Some(Duration::from_secs(300)),
                }
            })
            .await;
        let error = result.expect_err("five minutes is beyond the default budget");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
        assert_eq!((calls, started.elapsed()), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let (result, calls) = run_script(&policy(), &endpoint::EXT_COMPLETE, 1, || {
            TrackerError::Conflict("lease lost".to_owned())
        })
        .await;
        assert_eq!(result.expect_err("conflict").kind(), "conflict");
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unsafe_calls_retry_only_what_was_not_applied() {
        let (result, calls) =
            run_script(&policy(), &endpoint::EXT_DEDUP_ADD, 1, server_error).await;
        assert_eq!(
            result.expect_err("a 503 may have been applied").kind(),
            "server"
        );
        assert_eq!(calls, 1);
        let (result, calls) = run_script(&policy(), &endpoint::EXT_DEDUP_ADD, 1, || {
            TrackerError::RateLimited { retry_after: None }
        })
        .await;
        assert_eq!(result.expect("a 429 was not applied"), 2);
        assert_eq!(calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_learn_about_uncertain_predecessors() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let result: Result<(), TrackerError> =
            with_retries(&policy(), &endpoint::EXT_COMPLETE, |attempt| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock()
                        .expect("not poisoned")
                        .push(attempt.after_uncertain);
                    match attempt.number {
                        1 => Err(TrackerError::RateLimited { retry_after: None }),
                        2 => Err(server_error()),
                        _ => Ok(()),
                    }
                }
            })
            .await;
        result.expect("third attempt succeeds");
        assert_eq!(*seen.lock().expect("not poisoned"), [false, false, true]);
    }
}
