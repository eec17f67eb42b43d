//! Per-host state: a concurrency limit, robots.txt rules fetched once, a backoff after
//! 429/503 honouring `Retry-After`, and a circuit breaker after repeated failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::robots::RobotsRules;
use crate::stats::Outcome;

/// The key of a URL's host in [`Hosts`]: its name and port (`img.example:443`), or `None` when
/// the URL has no host or no known port.
pub fn host_key(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// Politeness settings.
#[derive(Debug, Clone)]
pub struct PolitenessConfig {
    /// Requests to one host at once (default 2).
    pub per_host: usize,
    /// Fetch and obey robots.txt (default on).
    pub respect_robots: bool,
    /// Treat an image whose response says `tdm-reservation: 1` (TDMRep) as opted out (default
    /// on).
    pub respect_tdm_reservation: bool,
    /// Consecutive failures (resolver error, connect, timeout, 5xx, opt-out) that open a host's
    /// circuit; 0 disables the breaker (default 8).
    pub breaker_threshold: u32,
    /// Longest wait honoured for one host's `Retry-After` (default 30 s); a longer backoff is
    /// cut to this.
    pub max_backoff: Duration,
    /// Backoff after a 429/503 without `Retry-After` (default 5 s).
    pub default_backoff: Duration,
    /// Backoff one host may ask for in total while it is known (one claim) before its circuit
    /// opens (default 2 min): a host that answers 429 and 200 in turn never fails twice in a
    /// row, yet would cost the job half a minute per image. Off with the breaker.
    pub max_backoff_total: Duration,
}

impl PolitenessConfig {
    /// The defaults named on each field.
    pub fn standard() -> Self {
        PolitenessConfig {
            per_host: 2,
            respect_robots: true,
            respect_tdm_reservation: true,
            breaker_threshold: 8,
            max_backoff: Duration::from_secs(30),
            default_backoff: Duration::from_secs(5),
            max_backoff_total: Duration::from_secs(120),
        }
    }
}

/// One host's state.
#[derive(Debug)]
pub struct HostState {
    pub slots: Semaphore,
    robots: OnceCell<RobotsRules>,
    /// The robots.txt fetch in flight, on a task of its own (see [`HostState::robots`]).
    robots_fetch: Mutex<Option<Shared<BoxFuture<'static, RobotsRules>>>>,
    consecutive_failures: AtomicU32,
    open: AtomicBool,
    backoff_until: Mutex<Option<Instant>>,
    /// Backoff asked for so far, in milliseconds.
    backoff_total_ms: AtomicU64,
}

impl HostState {
    fn new(per_host: usize) -> Self {
        HostState {
            slots: Semaphore::new(per_host.max(1)),
            robots: OnceCell::new(),
            robots_fetch: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            backoff_until: Mutex::new(None),
            backoff_total_ms: AtomicU64::new(0),
        }
    }

    /// The host's robots.txt rules, fetched once by `fetch`. The fetch runs on a task of its
    /// own that every caller waits on, so a caller that stops waiting (its image's time budget
    /// ran out) neither cancels it nor makes the next caller start another.
    pub async fn robots(
        &self,
        fetch: impl FnOnce() -> BoxFuture<'static, RobotsRules>,
    ) -> &RobotsRules {
        self.robots
            .get_or_init(|| {
                let shared = {
                    let mut slot = self
                        .robots_fetch
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert_with(|| {
                        let task = tokio::spawn(fetch());
                        async move {
                            // Only a panic in the fetch ends the task without rules.
                            task.await
                                .unwrap_or(RobotsRules::Unreachable(Outcome::Timeout))
                        }
                        .boxed()
                        .shared()
                    })
                    .clone()
                };
                async move {
                    let rules = shared.await;
                    // The cell keeps the rules from here on.
                    *self
                        .robots_fetch
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    rules
                }
            })
            .await
    }

    /// Whether the circuit breaker stopped requests to this host.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// When requests to this host may go again, if it is backing off.
    pub fn backoff_until(&self) -> Option<Instant> {
        self.backoff_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .filter(|until| *until > Instant::now())
    }
}

/// Every host seen by one process.
#[derive(Debug)]
pub struct Hosts {
    config: PolitenessConfig,
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
}

impl Hosts {
    pub fn new(config: PolitenessConfig) -> Self {
        Hosts {
            config,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &PolitenessConfig {
        &self.config
    }

    /// The state of `host` ([`host_key`]), created on first use.
    pub fn get(&self, host: &str) -> Arc<HostState> {
        let mut hosts = match self.hosts.lock() {
            Ok(hosts) => hosts,
            Err(poisoned) => poisoned.into_inner(),
        };
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(HostState::new(self.config.per_host)))
            .clone()
    }

    /// Forgets every host not in use (robots rules, breaker and backoff state), so the map
    /// does not grow across jobs; called between claims.
    pub fn forget_idle(&self) -> usize {
        let mut hosts = match self.hosts.lock() {
            Ok(hosts) => hosts,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = hosts.len();
        hosts.retain(|_, state| Arc::strong_count(state) > 1);
        before - hosts.len()
    }

    /// Hosts known.
    pub fn len(&self) -> usize {
        self.hosts.lock().map(|hosts| hosts.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the outcome of a request to `state`'s host.
    pub fn record(&self, state: &HostState, outcome: Outcome) {
        if outcome.is_host_failure() {
            let failures = state.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.config.breaker_threshold > 0
                && failures >= self.config.breaker_threshold
                && !state.open.swap(true, Ordering::Relaxed)
            {
                tracing::info!(failures, "host circuit opened");
            }
        } else if !matches!(outcome, Outcome::CircuitOpen) {
            state.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Makes `state`'s host wait after a 429/503 (`retry_after` from the header).
    pub fn back_off(&self, state: &HostState, retry_after: Option<Duration>) {
        let wait = retry_after
            .unwrap_or(self.config.default_backoff)
            .min(self.config.max_backoff);
        let now = Instant::now();
        let until = now + wait;
        // Only how far the backoff moves forward counts: two requests that got a 429 at once
        // ask for the same wait, not twice as much.
        let added = {
            let mut current = state
                .backoff_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let from = current.filter(|current| *current > now).unwrap_or(now);
            if until > from {
                *current = Some(until);
            }
            until.saturating_duration_since(from)
        };
        let added_ms = u64::try_from(added.as_millis()).unwrap_or(u64::MAX);
        let total_ms = state
            .backoff_total_ms
            .fetch_add(added_ms, Ordering::Relaxed)
            .saturating_add(added_ms);
        if self.config.breaker_threshold > 0
            && u128::from(total_ms) > self.config.max_backoff_total.as_millis()
            && !state.open.swap(true, Ordering::Relaxed)
        {
            tracing::info!(total_ms, "host asked for too much backoff; circuit opened");
        }
    }
}

/// Parses `Retry-After` as seconds (an HTTP date counts as the default backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_stops_waiting_does_not_restart_the_robots_fetch() {
        let state = HostState::new(2);
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch = || {
            let fetches = Arc::clone(&fetches);
            async move {
                fetches.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(5)).await;
                RobotsRules::DisallowAll
            }
            .boxed()
        };
        // Two images whose budgets run out while the host's robots.txt is slow.
        for _ in 0..2 {
            let gave_up = tokio::time::timeout(Duration::from_secs(2), state.robots(fetch)).await;
            assert!(gave_up.is_err());
        }
        assert_eq!(*state.robots(fetch).await, RobotsRules::DisallowAll);
        assert_eq!(
            fetches.load(Ordering::Relaxed),
            1,
            "one fetch for all three"
        );
        assert_eq!(*state.robots(fetch).await, RobotsRules::DisallowAll);
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn breaker_opens_after_consecutive_failures_and_backoff_is_capped() {
        let hosts = Hosts::new(PolitenessConfig {
            breaker_threshold: 3,
            max_backoff: Duration::from_secs(2),
            ..PolitenessConfig::standard()
        });
        let state = hosts.get("a.test:80");
        hosts.record(&state, Outcome::Timeout);
        hosts.record(&state, Outcome::Http5xx);
        hosts.record(&state, Outcome::Ok);
        hosts.record(&state, Outcome::Http4xx);
        hosts.record(&state, Outcome::RateLimited);
        hosts.record(&state, Outcome::ConnectFailure);
        assert!(!state.is_open(), "a success or a 404 resets the count");
        hosts.record(&state, Outcome::OptOut);
        assert!(state.is_open());
        assert!(!hosts.get("b.test:80").is_open());
        // A host whose names the resolver cannot look up fails as often as it is asked.
        let broken_dns = hosts.get("c.test:80");
        for _ in 0..3 {
            hosts.record(&broken_dns, Outcome::ResolverError);
        }
        assert!(broken_dns.is_open(), "resolver errors count");

        let before = Instant::now();
        hosts.back_off(&state, parse_retry_after("3600"));
        let until = state.backoff_until().expect("backing off");
        assert!(until <= before + Duration::from_secs(2) + Duration::from_millis(50));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);

        drop(broken_dns);
        assert_eq!(hosts.forget_idle(), 2, "b.test and c.test are not in use");
        assert_eq!(hosts.len(), 1);
        drop(state);
        assert_eq!(hosts.forget_idle(), 1);
        assert!(hosts.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_asks_for_too_much_backoff_in_total_is_stopped() {
        // 429 and 200 in turn: never two failures in a row, but the waits add up.
        let hosts = Hosts::new(PolitenessConfig {
            max_backoff: Duration::from_secs(30),
            max_backoff_total: Duration::from_secs(60),
            ..PolitenessConfig::standard()
        });
        let tarpit = hosts.get("tarpit.test:80");
        for _ in 0..2 {
            hosts.record(&tarpit, Outcome::RateLimited);
            // Both slots got the 429 at once: one wait, not two.
            hosts.back_off(&tarpit, parse_retry_after("30"));
            hosts.back_off(&tarpit, parse_retry_after("30"));
            tokio::time::advance(Duration::from_secs(30)).await;
            hosts.record(&tarpit, Outcome::Ok);
        }
        assert!(!tarpit.is_open(), "60 s asked in total: still within");
        hosts.record(&tarpit, Outcome::RateLimited);
        hosts.back_off(&tarpit, parse_retry_after("30"));
        assert!(tarpit.is_open(), "90 s asked in total");
    }
}
