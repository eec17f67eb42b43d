//! Reading JSON request bodies within bounds: a cap per route, one byte budget that every body
//! being read shares, and a deadline for the whole body.
//!
//! A JSON body must be whole before it can be decoded, so it is held in memory while it
//! arrives. It used to be read up to `--max-json-bytes` (8 MiB) on every route with no bound
//! across connections, and `--body-timeout` only bounds the gaps between bytes: 150
//! connections that each sent 8 MiB but the last byte, then dripped a byte every 5 s, took the
//! tracker from 53 MiB to 1.55 GiB for as long as they liked. Now:
//!
//! - only the routes that take batches ([`JsonRoute::Batch`]: dedup hashes, `isCompleted`
//!   addresses) accept `--max-json-bytes`; every other route [`SMALL_JSON_BYTES`];
//! - every body reserves its bytes in one budget (`--json-body-budget`) before it holds them:
//!   all of an announced `Content-Length` up front, a chunked body as its buffer grows. A body
//!   that does not fit is refused with 503 and `Retry-After` at once. Batch bodies may hold at
//!   most three quarters of the budget, so heartbeats and completions always find room;
//! - the batch bodies from one address (IPv4, or an IPv6 /64) hold at most
//!   `--json-body-budget-per-address` of it together (503 beyond), so one host that opens
//!   batch bodies and never finishes them cannot keep the budget full for everyone (small
//!   bodies are not counted per address: at most 64 KiB each, the connection cap keeps all
//!   of them far below the budget, and a host whose batches are in flight still heartbeats);
//! - a body must be whole within `--json-body-deadline` (408 after).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::{AppError, announced_length};

/// Largest body of a route that takes no batch: a token, a job number, a handoff URL of at
/// most 2,048 bytes (escaped, two for `markasdone-cpu`), a progress string.
pub const SMALL_JSON_BYTES: usize = 64 << 10;

/// How long a client refused for the budget waits before it sends again: the budget frees as
/// bodies finish, at the latest at their deadline.
pub(super) const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Bounds on JSON request bodies (flags `--max-json-bytes`, `--json-body-budget`,
/// `--json-body-deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonBodyLimits {
    /// Largest body of a batch route; other routes take at most [`SMALL_JSON_BYTES`] (or
    /// this, if smaller).
    pub max_bytes: usize,
    /// Bytes all bodies being read may hold together.
    pub budget_bytes: usize,
    /// Bytes the batch bodies from one address (IPv4, or an IPv6 /64) may hold together.
    pub per_address_bytes: usize,
    /// Longest time to read a whole body.
    pub deadline: Duration,
}

impl JsonBodyLimits {
    /// The most bytes batch bodies may hold together: three quarters of the budget.
    pub fn batch_budget(&self) -> usize {
        self.budget_bytes / 4 * 3
    }
}

/// Which cap a route's JSON bodies have, put in its requests' extensions by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonRoute {
    /// Up to [`SMALL_JSON_BYTES`].
    Small,
    /// Up to `--max-json-bytes`, within three quarters of the budget.
    Batch,
}

/// The byte budget of the bodies being read, and what it has seen, for `/metrics`.
#[derive(Debug)]
pub struct BodyBudget {
    limits: JsonBodyLimits,
    all: Semaphore,
    batch: Semaphore,
    /// Bytes held per address, for the addresses holding any.
    addresses: Mutex<HashMap<IpAddr, usize>>,
    held: AtomicU64,
    peak: AtomicU64,
    refused: AtomicU64,
    refused_for_address: AtomicU64,
    too_slow: AtomicU64,
}

impl BodyBudget {
    /// A budget with nothing held.
    pub fn new(limits: JsonBodyLimits) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limits,
            all: Semaphore::new(limits.budget_bytes),
            batch: Semaphore::new(limits.batch_budget()),
            addresses: Mutex::new(HashMap::new()),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_for_address: AtomicU64::new(0),
            too_slow: AtomicU64::new(0),
        })
    }

    /// Reads `request`'s whole body for `route` and decodes it, holding its bytes in the
    /// budget until it is decoded.
    pub(super) async fn decode<T: DeserializeOwned>(
        &self,
        request: Request,
        route: JsonRoute,
    ) -> Result<T, AppError> {
        let limit = match route {
            JsonRoute::Small => SMALL_JSON_BYTES.min(self.limits.max_bytes),
            JsonRoute::Batch => self.limits.max_bytes,
        };
        let announced = announced_length(&request);
        if announced.is_some_and(|announced| announced > limit as u64) {
            return Err(AppError::TooLarge);
        }
        // Only batch bodies count against their address's share.
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .filter(|_| route == JsonRoute::Batch)
            .map(|ConnectInfo(remote)| crate::rate_limit::bucket_key(remote.ip()));
        let mut reservation = Reservation {
            budget: self,
            address,
            batch: route == JsonRoute::Batch,
            all: None,
            batch_share: None,
            bytes: 0,
        };
        let mut buffer = Vec::new();
        if let Some(announced) = announced {
            // Within `limit`, so it fits a usize.
            let announced = announced as usize;
            reservation.grow(announced)?;
            buffer.reserve_exact(announced);
        }
        let reading = async {
            let mut chunks = request.into_body().into_data_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|error| {
                    if crate::connections::is_body_timeout(&error) {
                        AppError::BodyTimedOut
                    } else {
                        AppError::BadBody(format!("failed to read the request body: {error}"))
                    }
                })?;
                let length = buffer.len() + chunk.len();
                if length > limit {
                    return Err(AppError::TooLarge);
                }
                if length > reservation.bytes {
                    // Doubling, within the cap; the budget covers what is allocated.
                    let capacity = length.max(2 * reservation.bytes).min(limit);
                    let growth = capacity - reservation.bytes;
                    reservation.grow(growth)?;
                    buffer.reserve_exact(capacity - buffer.len());
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(self.limits.deadline, reading).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                self.too_slow.fetch_add(1, Ordering::Relaxed);
                return Err(AppError::BodyDeadline(self.limits.deadline));
            }
        }
        serde_json::from_slice(&buffer)
            .map_err(|error| AppError::BadBody(format!("invalid JSON body: {error}")))
    }

    /// The budget's gauges and counters in Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let gauges = [
            (
                "tracker_json_body_bytes",
                "bytes held by the JSON request bodies being read",
                self.held.load(Ordering::Relaxed),
            ),
            (
                "tracker_json_body_bytes_peak",
                "most bytes JSON request bodies held at once since start",
                self.peak.load(Ordering::Relaxed),
            ),
            (
                "tracker_json_body_budget_bytes",
                "bytes JSON request bodies may hold at once (--json-body-budget)",
                self.limits.budget_bytes as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "tracker_json_bodies_refused_total",
                "JSON request bodies refused with 503 because the body budget was used up",
                &self.refused,
            ),
            (
                "tracker_json_bodies_refused_per_address_total",
                "JSON request bodies refused with 503 because their address held its share of the budget (--json-body-budget-per-address)",
                &self.refused_for_address,
            ),
            (
                "tracker_json_bodies_too_slow_total",
                "JSON request bodies cut with 408 at --json-body-deadline",
                &self.too_slow,
            ),
        ];
        for (name, help, counter) in counters {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
}

/// Bytes of one body held in the budget, given back when it is dropped.
struct Reservation<'b> {
    budget: &'b BodyBudget,
    /// Whose share a batch body's bytes count against (none for a small body, or a request
    /// without a peer address).
    address: Option<IpAddr>,
    batch: bool,
    /// Permits of the whole budget.
    all: Option<SemaphorePermit<'b>>,
    /// Permits of the batch share, for a batch body.
    batch_share: Option<SemaphorePermit<'b>>,
    bytes: usize,
}

impl Reservation<'_> {
    /// Holds `n` more bytes, or refuses the body (503) if the budget has no room.
    fn grow(&mut self, n: usize) -> Result<(), AppError> {
        let budget = self.budget;
        let busy = || {
            budget.refused.fetch_add(1, Ordering::Relaxed);
            AppError::Busy(BUSY_RETRY_AFTER)
        };
        if n == 0 {
            return Ok(());
        }
        let n_permits = u32::try_from(n).map_err(|_| busy())?;
        // Batch bodies take from both, so they never hold more than their share.
        let batch_share = if self.batch {
            Some(
                budget
                    .batch
                    .try_acquire_many(n_permits)
                    .map_err(|_| busy())?,
            )
        } else {
            None
        };
        let all = budget.all.try_acquire_many(n_permits).map_err(|_| busy())?;
        // Last: refused here, the permits just taken go back as they drop.
        if let Some(address) = self.address {
            let mut addresses = budget
                .addresses
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let held = addresses.get(&address).copied().unwrap_or(0);
            if held + n > budget.limits.per_address_bytes {
                budget.refused_for_address.fetch_add(1, Ordering::Relaxed);
                return Err(busy());
            }
            addresses.insert(address, held + n);
        }
        merge(&mut self.all, all);
        if let Some(batch_share) = batch_share {
            merge(&mut self.batch_share, batch_share);
        }
        self.bytes += n;
        let held = budget.held.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        budget.peak.fetch_max(held, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Before the permits go, so `held` never counts more than the semaphores hold.
        self.budget
            .held
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
        if let (Some(address), true) = (self.address, self.bytes > 0) {
            let mut addresses = self
                .budget
                .addresses
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = addresses.get_mut(&address) {
                *held = held.saturating_sub(self.bytes);
                if *held == 0 {
                    addresses.remove(&address);
                }
            }
        }
    }
}

fn merge<'b>(held: &mut Option<SemaphorePermit<'b>>, more: SemaphorePermit<'b>) {
    match held {
        Some(held) => held.merge(more),
        None => *held = Some(more),
    }
}
