//! The reads anyone may poll without a token: dashboard figures, open-job counts and the client list.
//!
//! Each is computed at most once per `--read-cache-ttl` however many callers poll it, and
//! never twice at once (see [`Cached`]): a thousand dashboards cost the database what one does.

use std::sync::Arc;
use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::ext::ClientInfo;

use super::{Tracker, TrackerError};
use crate::cached::Cached;
use crate::clients;
use crate::jobs::{self, Stage};
use crate::stats::{self, Stats};

/// Most clients `GET /api/ext/clients` lists.
pub const MAX_LISTED_CLIENTS: u32 = 10_000;

/// The cached answers.
#[derive(Debug)]
pub(super) struct PublicReads {
    stats: Cached<Stats>,
    open_cpu_jobs: Cached<u64>,
    open_gpu_jobs: Cached<u64>,
    recent_clients: Cached<Vec<ClientInfo>>,
}

impl PublicReads {
    pub(super) fn new(ttl: Duration) -> PublicReads {
        PublicReads {
            stats: Cached::new(ttl),
            open_cpu_jobs: Cached::new(ttl),
            open_gpu_jobs: Cached::new(ttl),
            recent_clients: Cached::new(ttl),
        }
    }
}

impl Tracker {
    /// Dashboard figures (`/`, `/data`, `/leaderboard`, `/metrics`).
    pub async fn stats(&self) -> Result<Arc<Stats>, TrackerError> {
        let reads = &self.public_reads;
        Ok(reads.stats.get(|| stats::collect(&self.db)).await?)
    }

    /// `/api/jobCount`: open jobs for that type.
    pub async fn job_count(&self, client_type: ClientType) -> Result<u64, TrackerError> {
        let stage = super::work::stage_of(client_type);
        let cached = match stage {
            Stage::Cpu => &self.public_reads.open_cpu_jobs,
            Stage::Gpu => &self.public_reads.open_gpu_jobs,
        };
        Ok(*cached.get(|| jobs::open_count(&self.db, stage)).await?)
    }

    /// `/api/ext/clients`: the [`MAX_LISTED_CLIENTS`] most recently seen clients, most recent
    /// first; a shorter listing is the start of this one.
    pub async fn recent_clients(&self) -> Result<Arc<Vec<ClientInfo>>, TrackerError> {
        let reads = &self.public_reads;
        Ok(reads
            .recent_clients
            .get(|| clients::recent(&self.db, MAX_LISTED_CLIENTS))
            .await?)
    }
}
