//! Counters of the running tracker and their Prometheus text rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Stats;

/// Monotonic counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients registered.
    pub registrations: AtomicU64,
    /// Registrations refused by the rate limit.
    pub registrations_limited: AtomicU64,
    pub registrations_refused_full: AtomicU64,
    /// Jobs claimed.
    pub claims: AtomicU64,
    /// Heartbeats.
    pub heartbeats: AtomicU64,
    /// CPU jobs handed off to the GPU queue.
    pub handoffs: AtomicU64,
    /// Jobs closed.
    pub closes: AtomicU64,
    /// Pairs credited by closes.
    pub pairs: AtomicU64,
    /// Bundles reported unusable.
    pub invalid_bundles: AtomicU64,
    /// CPU jobs reported because their WAT cannot be used.
    pub broken_wat_reports: AtomicU64,
    /// Jobs failed for good after `--max-wat-failures` reports.
    pub jobs_failed: AtomicU64,
    /// Leases the reaper expired.
    pub leases_expired: AtomicU64,
    /// Idle clients the reaper forgot.
    pub clients_reaped: AtomicU64,
    /// Bundles stored.
    pub blobs_stored: AtomicU64,
    /// Bytes of bundles stored.
    pub blob_bytes: AtomicU64,
    /// Bundles deleted by garbage collection.
    pub blobs_collected: AtomicU64,
    /// Hashes checked against dedup sets.
    pub dedup_checked: AtomicU64,
    /// Hashes that were new.
    pub dedup_new: AtomicU64,
    /// Dedup additions refused (client type or quota).
    pub dedup_refused: AtomicU64,
}

impl Metrics {
    /// Adds one.
    pub fn inc(&self, counter: &AtomicU64) {
        self.add(counter, 1);
    }

    /// Adds `n`.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters and the current job and client gauges.
    pub fn render(&self, stats: &Stats) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 19] = [
            (
                "tracker_registrations_total",
                "clients registered",
                &self.registrations,
            ),
            (
                "tracker_registrations_limited_total",
                "registrations refused by the rate limit",
                &self.registrations_limited,
            ),
            (
                "tracker_registrations_refused_full_total",
                "registrations refused because --max-clients clients were registered",
                &self.registrations_refused_full,
            ),
            ("tracker_claims_total", "jobs claimed", &self.claims),
            (
                "tracker_heartbeats_total",
                "heartbeats received",
                &self.heartbeats,
            ),
            (
                "tracker_handoffs_total",
                "CPU jobs handed off to the GPU queue",
                &self.handoffs,
            ),
            ("tracker_closes_total", "jobs closed", &self.closes),
            (
                "tracker_pairs_total",
                "pairs credited by closed jobs",
                &self.pairs,
            ),
            (
                "tracker_invalid_bundles_total",
                "bundles reported unusable",
                &self.invalid_bundles,
            ),
            (
                "tracker_broken_wat_reports_total",
                "CPU jobs reported because their WAT cannot be used",
                &self.broken_wat_reports,
            ),
            (
                "tracker_jobs_failed_total",
                "jobs failed for good after --max-wat-failures reports of their WAT",
                &self.jobs_failed,
            ),
            (
                "tracker_leases_expired_total",
                "leases expired by the reaper",
                &self.leases_expired,
            ),
            (
                "tracker_clients_reaped_total",
                "idle clients forgotten",
                &self.clients_reaped,
            ),
            (
                "tracker_blobs_stored_total",
                "bundles stored",
                &self.blobs_stored,
            ),
            (
                "tracker_blob_bytes_total",
                "bundle bytes stored",
                &self.blob_bytes,
            ),
            (
                "tracker_blobs_collected_total",
                "bundles garbage-collected",
                &self.blobs_collected,
            ),
            (
                "tracker_dedup_checked_total",
                "hashes checked against dedup sets",
                &self.dedup_checked,
            ),
            (
                "tracker_dedup_new_total",
                "hashes that were new",
                &self.dedup_new,
            ),
            (
                "tracker_dedup_refused_total",
                "dedup additions refused for the client's type or quota",
                &self.dedup_refused,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tracker_jobs jobs by stage and status\n# TYPE tracker_jobs gauge"
        );
        for (stage, status, count) in &stats.jobs_by_state {
            let _ = writeln!(
                out,
                "tracker_jobs{{stage=\"{stage}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tracker_clients registered clients by type\n# TYPE tracker_clients gauge"
        );
        for (client_type, count) in &stats.clients_by_type {
            let _ = writeln!(out, "tracker_clients{{type=\"{client_type}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP tracker_dedup_entries entries per dedup set\n# TYPE tracker_dedup_entries gauge"
        );
        for (set, count) in &stats.dedup_sizes {
            let _ = writeln!(
                out,
                "tracker_dedup_entries{{set=\"{}\"}} {count}",
                set.as_str()
            );
        }
        out
    }
}
