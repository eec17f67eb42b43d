//! Bodies of our additive extensions under `/api/ext/`; an old client never needs them.

use serde::{Deserialize, Serialize};

use crate::ClientType;

/// Response of `GET /api/ext/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// [`crate::API_VERSION`] of the server.
    pub api_version: u32,
    /// Server name and version.
    pub server: String,
    /// How long a claim lives without a heartbeat, in seconds.
    pub lease_seconds: u64,
    /// Largest bundle the staging store accepts, in bytes.
    pub max_bundle_bytes: u64,
}

/// Body of `POST /api/ext/claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The client's token.
    pub token: String,
    /// At most this many jobs (GPU clients batch many; at least 1).
    #[serde(default = "one")]
    pub max_jobs: u32,
    /// CPU: claim every open half of one WAT at once, so it is streamed once.
    #[serde(default)]
    pub whole_wat: bool,
}

fn one() -> u32 {
    1
}

/// Response of `POST /api/ext/claim`; an empty list means no work right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResponse {
    /// The claimed jobs, each with its own lease.
    pub jobs: Vec<Job>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's number.
    pub number: u64,
    /// The WAT URL.
    pub wat_url: String,
    /// Which half of the WAT (0 or 1): the records whose index is congruent to it modulo 2.
    pub shard: u8,
    /// First sample ID this job may use.
    pub start_id: u64,
    /// One past the last sample ID this job may use; ranges of two jobs never overlap.
    pub end_id: u64,
    /// The lease expires at this unix time in milliseconds unless renewed.
    pub lease_until_ms: i64,
    /// For GPU jobs: where to fetch the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleLocation>,
    /// For CPU jobs: the job was handed off or closed before and went back to scraping (its
    /// bundle was reported invalid, or an admin reset it), so the tracker's `parsed` set may
    /// already hold the job's own pairs. A scraper must not drop pairs of such a job for being
    /// in `parsed`: they would be lost (clip-gpu-d's `main` set drops real duplicates).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scraped_before: bool,
}

/// Where a GPU client downloads a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleLocation {
    /// A signed, expiring GET URL (or the CPU client's legacy handoff string).
    pub url: String,
    /// Hex SHA-256 of the bundle, when the staging store received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes, when the staging store received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Body of `POST /api/ext/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The client's token.
    pub token: String,
    /// A short phase string shown on the dashboard.
    pub progress: String,
}

/// Response of `POST /api/ext/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Jobs the client still holds; a job missing here was lost (its lease expired).
    pub jobs: Vec<u64>,
    /// New lease expiry, unix milliseconds.
    pub lease_until_ms: i64,
}

/// Body of `POST /api/ext/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteRequest {
    /// The client's token.
    pub token: String,
    /// The job.
    pub number: u64,
    /// CPU: the bundle, as `blob:<key>` from [`UploadUrlResponse::key`] or any handoff URL of at
    /// most 2,048 bytes (longer ones are refused with 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// HYBRID and GPU: pairs kept; zero is fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Body of `POST /api/ext/release` and `POST /api/ext/uploadUrl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The client's token.
    pub token: String,
    /// The job.
    pub number: u64,
}

/// Body of `POST /api/ext/invalid`. From a GPU client: the job's bundle cannot be used, and
/// the job goes back to be scraped again. From a CPU or HYBRID client: the job's WAT cannot be
/// used, ever; the job goes behind every other open job, and fails for good after the
/// tracker's limit of such reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidRequest {
    /// The client's token.
    pub token: String,
    /// The job.
    pub number: u64,
    /// What was wrong with the bundle or the WAT, for the log (and, for a WAT, the job).
    #[serde(default)]
    pub reason: String,
}

/// Response of `POST /api/ext/uploadUrl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadUrlResponse {
    /// Send the bundle here with `PUT` (signed, expiring).
    pub put_url: String,
    /// Name of the blob; complete the job with `bundle: "blob:<key>"`.
    pub key: String,
    /// The URL stops working at this unix time in milliseconds.
    pub expires_at_ms: i64,
    /// Largest body the store accepts.
    pub max_bytes: u64,
}

/// Response of a `PUT` to an upload URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBlob {
    /// Name of the blob.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// Hex SHA-256 of what was stored.
    pub sha256: String,
}

/// The dedup sets of 2021's bloom servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupSet {
    /// Pairs already handed out for download.
    Parsed,
    /// Pairs already scored by CLIP (kept or not).
    Clipped,
    /// Pairs accepted into the dataset.
    Main,
}

impl DedupSet {
    /// All sets, in their stored order.
    pub const ALL: [DedupSet; 3] = [DedupSet::Parsed, DedupSet::Clipped, DedupSet::Main];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DedupSet::Parsed => "parsed",
            DedupSet::Clipped => "clipped",
            DedupSet::Main => "main",
        }
    }
}

/// Body of `POST /api/ext/dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupRequest {
    /// The client's token.
    pub token: String,
    /// Which set.
    pub set: DedupSet,
    /// 64-bit hashes to check.
    pub hashes: Vec<u64>,
    /// Add the new ones to the set, atomically with the check (the default).
    #[serde(default = "yes")]
    pub add: bool,
}

fn yes() -> bool {
    true
}

/// Response of `POST /api/ext/dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupResponse {
    /// One flag per requested hash, in order: `true` if it was not in the set before this
    /// request (a hash repeated within the request is new only at its first place).
    pub new: Vec<bool>,
}

/// A registered client as the extension API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Display name.
    pub display_name: String,
    /// Client role.
    #[serde(rename = "type")]
    pub client_type: ClientType,
    /// Leaderboard name.
    pub nickname: String,
    /// Last progress string.
    pub progress: String,
    /// Last call, unix seconds.
    pub last_seen: i64,
}
