//! Who may add to which dedup set, and how much: what keeps a hostile client from growing or
//! poisoning the sets.
//!
//! The daemons add what their jobs produced: scraper-d adds a job's candidate pairs to `parsed`
//! once it handed the job off; clip-gpu-d adds a job's scored pairs to `clipped` while it holds
//! the job, and each shard's kept pairs to `main` before it completes the shard's jobs. A job
//! has `end_id - start_id` sample IDs ([`IDS_PER_JOB`](crate::import::IDS_PER_JOB)), one per
//! pair, so one job never produces more pairs than that. The quota follows ([`Limits`]):
//!
//! - per set, a client may add `per_job` hashes (`--dedup-per-job`, by default a job's sample
//!   IDs) for each job it completed: what it has **earned**;
//! - beyond that it adds **on credit**: the clients registered from one address (an IPv6 /64)
//!   may together owe `start` hashes (`--dedup-start`: a restarted clip-gpu-d commits the shard
//!   a crash left before it holds a job), plus `per_job` for each job the asking client holds,
//!   counting at most `held_jobs` of them (`--dedup-held-jobs`: clip-gpu-d adds to `clipped`
//!   before it completes the jobs). A completion pays its client's debt back; a job released,
//!   expired or reported leaves it owed, by the address, until the tracker restarts.
//!
//! Held jobs used to count in full, and each registration had a tally of its own: two fresh
//! HYBRID registrations each claimed 64 jobs, added a million hashes to `main` and released
//! the jobs without completing one; at the cap a client could add 32 million per set. Now what
//! an address adds without completing anything is at most `start + held_jobs * per_job` per
//! set while the tracker runs, however many clients it registers or jobs they hold. Checking
//! without adding is open to every client.

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

/// The numbers of the quota (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Hashes per set each completed job earns, and each counted held job lends.
    pub per_job: u64,
    /// Hashes per set the clients of one address may owe with no job held.
    pub start: u64,
    /// Most held jobs of the asking client that lend `per_job` each.
    pub held_jobs: u64,
}

impl Limits {
    /// Hashes a client that completed `jobs_completed` jobs may add to a set on its own.
    pub fn earned(&self, jobs_completed: u64) -> u64 {
        self.per_job.saturating_mul(jobs_completed)
    }

    /// Hashes the clients of an address may owe per set, asked by a client holding `jobs_held`.
    pub fn credit(&self, jobs_held: u64) -> u64 {
        self.per_job
            .saturating_mul(jobs_held.min(self.held_jobs))
            .saturating_add(self.start)
    }
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
    fn only_a_few_held_jobs_lend_credit() {
        let limits = Limits {
            per_job: 10,
            start: 5,
            held_jobs: 2,
        };
        assert_eq!(limits.earned(0), 0, "a fresh client has earned nothing");
        assert_eq!(limits.earned(3), 30);
        assert_eq!(limits.credit(0), 5);
        assert_eq!(limits.credit(1), 15);
        assert_eq!(limits.credit(64), 25, "the 63rd held job lends nothing");
        let huge = Limits {
            per_job: u64::MAX,
            ..limits
        };
        assert_eq!(huge.earned(2), u64::MAX);
        assert_eq!(huge.credit(2), u64::MAX);
    }
}
