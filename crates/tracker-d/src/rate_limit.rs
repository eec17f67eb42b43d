//! Per-address token buckets that rate-limit registrations.
//!
//! An IPv4 address has a bucket of its own; IPv6 addresses share one per /64, since a host is
//! usually given a whole /64 and could otherwise register from a fresh address every time
//! (IPv4-mapped IPv6 addresses count as the IPv4 address).
//!
//! Memory stays bounded and each check costs O(1) amortised: buckets that have refilled (as
//! good as absent) are swept in one pass only when the map has doubled since the last sweep,
//! and the map never holds more than `max_buckets`. When it is full of buckets still
//! refilling, it is swept at most once a second, and addresses without a bucket share one
//! overflow bucket meanwhile: a flood from many addresses slows new registrants down, but
//! neither grows the map nor lets the flood register faster.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most buckets kept (about 64 bytes each).
pub const DEFAULT_MAX_BUCKETS: usize = 100_000;

/// No sweep before the map holds this many buckets.
const MIN_SWEEP_AT: usize = 1024;

/// A full map is swept at most this often.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket per client address (per /64 for IPv6).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    burst: f64,
    max_buckets: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    /// The map's size that triggers the next sweep.
    sweep_at: usize,
    last_sweep: Option<Instant>,
    /// Shared by the addresses that found the map full.
    overflow: Option<Bucket>,
    #[cfg(test)]
    n_sweeps: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows `per_minute` on average and `burst` at once per address.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::with_max_buckets(per_minute, burst, DEFAULT_MAX_BUCKETS)
    }

    /// [`RateLimiter::new`] keeping at most `max_buckets` buckets.
    pub fn with_max_buckets(per_minute: u32, burst: u32, max_buckets: usize) -> RateLimiter {
        let max_buckets = max_buckets.max(1);
        RateLimiter {
            per_minute: f64::from(per_minute),
            burst: f64::from(burst.max(1)),
            max_buckets,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                sweep_at: MIN_SWEEP_AT.min(max_buckets),
                last_sweep: None,
                overflow: None,
                #[cfg(test)]
                n_sweeps: 0,
            }),
        }
    }

    /// Takes one token for `address`; `Err(wait)` says how long until one is free.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(address);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if !state.buckets.contains_key(&key) {
            if state.buckets.len() >= state.sweep_at {
                self.sweep(&mut state, now);
            }
            if state.buckets.len() >= self.max_buckets {
                let full = self.full(now);
                return self.take(state.overflow.get_or_insert(full), now);
            }
        }
        let full = self.full(now);
        let bucket = state.buckets.entry(key).or_insert(full);
        self.take(bucket, now)
    }

    /// Drops the buckets that have refilled, unless the map is full and was swept just now.
    fn sweep(&self, state: &mut State, now: Instant) {
        let full = state.buckets.len() >= self.max_buckets;
        if full
            && state
                .last_sweep
                .is_some_and(|last| now.saturating_duration_since(last) < FULL_SWEEP_INTERVAL)
        {
            return;
        }
        if let Some(refill) = self.refill_time() {
            state
                .buckets
                .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < refill);
        }
        state.last_sweep = Some(now);
        state.sweep_at = (2 * state.buckets.len()).clamp(MIN_SWEEP_AT, self.max_buckets);
        #[cfg(test)]
        {
            state.n_sweeps += 1;
        }
    }

    /// How long an empty bucket takes to fill up; `None` if it never does.
    fn refill_time(&self) -> Option<Duration> {
        (self.per_minute > 0.0)
            .then(|| Duration::try_from_secs_f64(self.burst * 60.0 / self.per_minute).ok())
            .flatten()
    }

    fn full(&self, now: Instant) -> Bucket {
        Bucket {
            tokens: self.burst,
            updated: now,
        }
    }

    fn take(&self, bucket: &mut Bucket, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_minute / 60.0).min(self.burst);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_minute <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing * 60.0 / self.per_minute))
        }
    }
}

/// The address a bucket is kept for: IPv4 as is, IPv6 cut to its /64.
pub(crate) fn bucket_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn n_buckets(limiter: &RateLimiter) -> usize {
        limiter.state.lock().expect("lock").buckets.len()
    }

    fn n_sweeps(limiter: &RateLimiter) -> u64 {
        limiter.state.lock().expect("lock").n_sweeps
    }

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(60, 3);
        let address = ip("127.0.0.1");
        let other = ip("127.0.0.2");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(address, start).is_ok());
        }
        let wait = limiter.check(address, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limiter.check(other, start).is_ok(),
            "addresses are independent"
        );
        assert!(
            limiter
                .check(address, start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limiter
                .check(address, start + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64() {
        let limiter = RateLimiter::new(1, 2);
        let now = Instant::now();
        // Rotating through one /64 does not buy more registrations.
        assert!(limiter.check(ip("2001:db8:1:2::1"), now).is_ok());
        assert!(
            limiter
                .check(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"), now)
                .is_ok()
        );
        assert!(limiter.check(ip("2001:db8:1:2:abcd::9"), now).is_err());
        // The next /64 is another subscriber.
        assert!(limiter.check(ip("2001:db8:1:3::1"), now).is_ok());
        // An IPv4 client seen through a dual-stack socket is the IPv4 client.
        assert!(limiter.check(ip("192.0.2.7"), now).is_ok());
        assert!(limiter.check(ip("::ffff:192.0.2.7"), now).is_ok());
        assert!(limiter.check(ip("192.0.2.7"), now).is_err());
        assert!(
            limiter.check(ip("::ffff:192.0.2.8"), now).is_ok(),
            "IPv4 addresses are not grouped"
        );
        assert_eq!(bucket_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn sweeps_are_rare_and_the_map_stays_bounded() {
        // One registration a second, burst 1: a bucket has refilled a second after its use.
        let limiter = RateLimiter::with_max_buckets(60, 1, 4096);
        let start = Instant::now();
        // A steady stream of new addresses, one per millisecond: about a thousand are live at
        // any time, and the map is swept once per thousand or so new addresses, not per check.
        let n_addresses: u32 = 100_000;
        for index in 0..n_addresses {
            let now = start + Duration::from_millis(u64::from(index));
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + index));
            assert!(limiter.check(address, now).is_ok(), "address {index}");
            assert!(n_buckets(&limiter) <= 2 * MIN_SWEEP_AT + 1);
        }
        let sweeps = n_sweeps(&limiter);
        assert!(
            (50..=200).contains(&sweeps),
            "{sweeps} sweeps for {n_addresses} new addresses"
        );

        // A flood from 20,000 /64s within one second: the map stops at its cap, the addresses
        // beyond it share the overflow bucket, and the full map is not swept on every check.
        let flood_at = start + Duration::from_secs(200);
        let sweeps_before = n_sweeps(&limiter);
        let mut n_allowed = 0;
        for index in 0..20_000_u128 {
            let address = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (index << 64)));
            if limiter.check(address, flood_at).is_ok() {
                n_allowed += 1;
            }
            assert!(n_buckets(&limiter) <= 4096);
        }
        assert_eq!(n_buckets(&limiter), 4096);
        assert_eq!(
            n_allowed,
            4096 + 1,
            "one bucket each, then the shared overflow"
        );
        assert!(n_sweeps(&limiter) - sweeps_before <= 5);
        // An address that had a bucket before the flood keeps it.
        let early = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96));
        assert!(limiter.check(early, flood_at).is_err());

        // Once the flood's buckets have refilled, a sweep frees them for new addresses.
        let later = flood_at + Duration::from_secs(2);
        assert!(limiter.check(ip("198.51.100.1"), later).is_ok());
        assert_eq!(n_buckets(&limiter), 1);
        assert!(limiter.check(ip("198.51.100.2"), later).is_ok());
        assert!(limiter.check(ip("198.51.100.1"), later).is_err());
    }
}
