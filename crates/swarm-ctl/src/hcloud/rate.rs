//! Retry policy and `RateLimit-*` bookkeeping (reference §1.8).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Retries of transient failures: exponential backoff from `base`, capped, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (hcloud-go: 5 tries).
    pub max_retries: u32,
    /// First delay (hcloud-go: 1 s); doubles per retry.
    pub base: Duration,
    /// Largest delay (hcloud-go: 1 min).
    pub cap: Duration,
}

/// What the last answer's `RateLimit-*` headers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per hour.
    pub limit: u64,
    /// Requests left in the bucket.
    pub remaining: u64,
    /// Unix seconds when the bucket is full again.
    pub reset_unix: u64,
}

/// Below this many requests left, requests are paced at the refill rate.
const LOW_WATER: u64 = 2;

impl RetryPolicy {
    /// Delay before retry number `attempt` (from 0): `base * 2^attempt`, capped, at least
    /// `floor` (one refill interval after a 429), with up to 50 % jitter on top of half.
    pub fn delay(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let exponential = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.cap);
        let jitter = rand::rng().random_range(0.5..=1.0);
        let delay = exponential.mul_f64(jitter);
        match floor {
            Some(floor) => delay.max(floor.min(self.cap)),
            None => delay,
        }
    }
}

impl RateLimit {
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let number = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.parse().ok() };
        Some(RateLimit {
            limit: number("ratelimit-limit")?,
            remaining: number("ratelimit-remaining")?,
            reset_unix: number("ratelimit-reset").unwrap_or(0),
        })
    }

    /// One token comes back every `3600 / limit` seconds.
    pub fn refill_interval(&self) -> Duration {
        Duration::from_secs_f64(3600.0 / self.limit.max(1) as f64)
    }

    /// A pause before the next request when the bucket is nearly empty, so that we slow down
    /// before the API starts answering 429.
    pub fn pause_before_request(&self) -> Option<Duration> {
        (self.remaining < LOW_WATER).then(|| self.refill_interval())
    }

    /// What to tell a user whose calls were refused with 429 until the retries ran out: when
    /// the next request and the whole budget come back, and how to need fewer.
    pub fn wait_hint(&self, now: SystemTime) -> String {
        let next = humantime::format_duration(Duration::from_secs(
            self.refill_interval().as_secs_f64().ceil() as u64,
        ));
        let mut hint = format!(
            "this project's budget of {} requests per hour is used up and one request comes back every {next}",
            self.limit
        );
        let reset = UNIX_EPOCH + Duration::from_secs(self.reset_unix);
        if let Ok(until) = reset.duration_since(now)
            && self.reset_unix > 0
        {
            hint.push_str(&format!(
                "; it is full again at {} (in {})",
                humantime::format_rfc3339_seconds(reset),
                humantime::format_duration(Duration::from_secs(until.as_secs_f64().ceil() as u64))
            ));
        }
        hint.push_str(
            "; wait and run the command again, or spread the swarm over more projects (accounts in swarm.toml)",
        );
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        for attempt in 0..8 {
            let delay = policy.delay(attempt, None);
            let full =
                Duration::from_millis(100 * 2u64.pow(attempt)).min(Duration::from_millis(1000));
            assert!(
                delay <= full && delay >= full / 2,
                "attempt {attempt}: {delay:?}"
            );
        }
        let floored = policy.delay(0, Some(Duration::from_millis(700)));
        assert!(floored >= Duration::from_millis(700));
        let capped = policy.delay(0, Some(Duration::from_secs(60)));
        assert_eq!(capped, Duration::from_millis(1000));
    }

    #[test]
    fn headers_and_pacing() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("ratelimit-limit", "3600".parse().expect("header"));
        headers.insert("ratelimit-remaining", "1".parse().expect("header"));
        headers.insert("ratelimit-reset", "1700000000".parse().expect("header"));
        let rate = RateLimit::from_headers(&headers).expect("parsed");
        assert_eq!(rate.limit, 3600);
        assert_eq!(rate.refill_interval(), Duration::from_secs(1));
        assert_eq!(rate.pause_before_request(), Some(Duration::from_secs(1)));
        let plenty = RateLimit {
            remaining: 100,
            ..rate
        };
        assert_eq!(plenty.pause_before_request(), None);
        assert!(RateLimit::from_headers(&reqwest::header::HeaderMap::new()).is_none());
    }

    #[test]
    fn the_wait_hint_says_when_the_budget_comes_back() {
        let rate = RateLimit {
            limit: 3600,
            remaining: 0,
            reset_unix: 1_700_000_000,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 1_230);
        let hint = rate.wait_hint(now);
        assert!(
            hint.contains("3600 requests per hour")
                && hint.contains("one request comes back every 1s")
                && hint.contains("full again at 2023-11-14T22:13:20Z (in 20m 30s)")
                && hint.contains("more projects"),
            "{hint}"
        );
        let past = rate.wait_hint(UNIX_EPOCH + Duration::from_secs(1_700_000_100));
        assert!(!past.contains("full again"), "{past}");
    }
}
