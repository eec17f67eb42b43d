//! Who may add to which dedup set, and how much: what keeps a hostile client from growing or
//! poisoning the sets.
//!
//! The daemons add what their jobs produced: scraper-d adds a job's candidate pairs to `parsed`
//! once it handed the job off; clip-gpu-d adds a job's scored pairs to `clipped` while it holds
//! the job, and each shard's kept pairs to `main` before it completes the shard's jobs. A job
//! has `end_id - start_id` sample IDs ([`IDS_PER_JOB`](crate::import::IDS_PER_JOB)), one per
//! pair, so one job never produces more pairs than that. The quota follows: per set, a client
//! may add `per_job` hashes (`--dedup-per-job`, by default a job's sample IDs) for each job it
//! completed or holds. Beyond that, the clients registered from one address (an IPv6 /64)
//! share a small start allowance per set (`--dedup-start`, see `client_cache`): a restarted
//! clip-gpu-d registers anew and first commits the shards a crash left behind, before it holds
//! a job. It used to be `per_job` for every new client, so registering again bought another
//! job's worth of additions each time (three registrations added 1.5 million hashes to
//! `parsed` in 6 s). Checking without adding is open to every client.

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;

/// Whether clients of `client_type` may add hashes to `set`: CPU clients scrape, so they add
/// to `parsed`; GPU clients score, so they add to `clipped` and `main`; HYBRID clients do both.
pub fn may_add(client_type: ClientType, set: DedupSet) -> bool {
    match (client_type, set) {
        (ClientType::Hybrid, _) => true,
        (ClientType::Cpu, DedupSet::Parsed) => true,
        (ClientType::Cpu, DedupSet::Clipped | DedupSet::Main) => false,
        (ClientType::Gpu, DedupSet::Clipped | DedupSet::Main) => true,
        (ClientType::Gpu, DedupSet::Parsed) => false,
    }
}

/// Hashes a client may have added to one set since the tracker started on account of its jobs,
/// given the jobs it completed and the jobs it holds (its address's start allowance comes on top).
pub fn allowance(per_job: u64, jobs_completed: u64, jobs_held: u64) -> u64 {
    per_job.saturating_mul(jobs_completed.saturating_add(jobs_held))
}

/// The set's slot in per-client tallies.
pub fn slot(set: DedupSet) -> usize {
    match set {
        DedupSet::Parsed => 0,
        DedupSet::Clipped => 1,
        DedupSet::Main => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_table() {
        let cases = [
            (ClientType::Cpu, DedupSet::Parsed, true),
            (ClientType::Cpu, DedupSet::Clipped, false),
            (ClientType::Cpu, DedupSet::Main, false),
            (ClientType::Gpu, DedupSet::Parsed, false),
            (ClientType::Gpu, DedupSet::Clipped, true),
            (ClientType::Gpu, DedupSet::Main, true),
            (ClientType::Hybrid, DedupSet::Parsed, true),
            (ClientType::Hybrid, DedupSet::Clipped, true),
            (ClientType::Hybrid, DedupSet::Main, true),
        ];
        for (client_type, set, expected) in cases {
            assert_eq!(may_add(client_type, set), expected, "{client_type} {set:?}");
        }
    }

    #[test]
    fn allowance_grows_with_jobs_and_saturates() {
        assert_eq!(
            allowance(500_000, 0, 0),
            0,
            "a fresh client has no jobs' worth"
        );
        assert_eq!(allowance(10, 3, 2), 50);
        assert_eq!(allowance(500_000, u64::MAX, 1), u64::MAX);
    }
}
