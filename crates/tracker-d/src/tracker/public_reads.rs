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
    recent_clients: Cached<ClientListing>,
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
    pub async fn recent_clients(&self) -> Result<Arc<ClientListing>, TrackerError> {
        let reads = &self.public_reads;
        Ok(reads
            .recent_clients
            .get(|| async {
                let listed = clients::recent(&self.db, MAX_LISTED_CLIENTS).await?;
                Ok::<_, crate::db::DbError>(ClientListing::new(&listed))
            })
            .await?)
    }
}

/// Clients as the JSON array `GET /api/ext/clients` answers, encoded once for every caller
/// and every limit: encoding 10,000 clients per request cost more than reading them.
#[derive(Debug)]
pub struct ClientListing {
    /// `[client,client,…` without the closing bracket.
    json: Vec<u8>,
    /// Where each client's encoding ends in `json`.
    ends: Vec<usize>,
}

impl ClientListing {
    fn new(clients: &[ClientInfo]) -> ClientListing {
        let mut json = b"[".to_vec();
        let mut ends = Vec::with_capacity(clients.len());
        for client in clients {
            if !ends.is_empty() {
                json.push(b',');
            }
            // A struct of strings and numbers always encodes.
            serde_json::to_writer(&mut json, client).expect("a client encodes");
            ends.push(json.len());
        }
        ClientListing { json, ends }
    }

    /// Clients listed.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The JSON array of the first `limit` clients.
    pub fn json(&self, limit: usize) -> Vec<u8> {
        let end = match limit.min(self.ends.len()) {
            0 => 1,
            shown => self.ends[shown - 1],
        };
        let mut json = Vec::with_capacity(end + 1);
        json.extend_from_slice(&self.json[..end]);
        json.push(b']');
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_encodes_as_serde_json_encodes_its_start() {
        let clients: Vec<ClientInfo> = (0..3)
            .map(|index| ClientInfo {
                display_name: format!("quick-fox-{index}"),
                client_type: [ClientType::Cpu, ClientType::Gpu, ClientType::Hybrid][index],
                nickname: format!("nick \"{index}\" ü"),
                progress: "Initialized".to_owned(),
                last_seen: 1_700_000_000 + index as i64,
            })
            .collect();
        let listing = ClientListing::new(&clients);
        assert_eq!(listing.len(), 3);
        for limit in 0..5 {
            let expected = serde_json::to_vec(&clients[..limit.min(3)]).unwrap();
            assert_eq!(
                String::from_utf8(listing.json(limit)).unwrap(),
                String::from_utf8(expected).unwrap(),
                "limit {limit}"
            );
        }
        assert_eq!(ClientListing::new(&[]).json(10), b"[]");
    }
}
