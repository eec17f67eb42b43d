//! Request and response bodies of the 2021 tracker API v3, field for field.
//!
//! Inbound types tolerate unknown fields, because old clients send extras (`password`, say).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ClientType, IdString};

/// Query of `GET /api/new`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewQuery {
    /// Leaderboard name; the 2021 library defaulted it to `anonymous`.
    #[serde(default = "anonymous")]
    pub nickname: String,
    /// Client role; HYBRID when missing, as in 2021.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
}

fn anonymous() -> String {
    "anonymous".to_owned()
}

/// Response of `GET /api/new`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewResponse {
    /// The client's secret; every later write carries it.
    pub token: String,
    /// Two random words and a number, shown on the dashboard.
    pub display_name: String,
    /// Where bundles go; our clients ask `/api/ext/uploadUrl` instead.
    pub upload_address: String,
}

/// Body of `validateWorker`, `newJob`, `gpuInvalidDownload` and `bye`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The client's token.
    pub token: String,
    /// Client role; HYBRID when missing.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
}

/// Query of `GET /api/jobCount` and `GET /api/getUploadAddress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeQuery {
    /// Client role; HYBRID when missing.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
}

/// Response of `POST /api/newJob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResponse {
    /// The WAT URL for CPU and hybrid clients; the bundle's handoff URL for GPU clients.
    pub url: String,
    /// First sample ID this job may use.
    pub start_id: IdString,
    /// One past the last sample ID this job may use.
    pub end_id: IdString,
    /// Which half of the WAT (0 or 1).
    pub shard: u8,
    /// The job's number (its primary key), from v3.1.
    pub number: u64,
}

/// Body of `POST /api/updateProgress`, the heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateProgressRequest {
    /// The client's token.
    pub token: String,
    /// A short phase string shown on the dashboard.
    pub progress: String,
    /// Client role; HYBRID when missing.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
}

/// Body of `POST /api/markAsDone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkAsDoneRequest {
    /// The client's token.
    pub token: String,
    /// Client role; HYBRID when missing.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
    /// Pairs kept (HYBRID and GPU). Zero is accepted, unlike 2021.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Handoff URL of the bundle (CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent by v2.4 CPU clients; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_id: Option<IdString>,
    /// Sent by v2.4 CPU clients; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_id: Option<IdString>,
    /// Sent by v2.4 CPU clients; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u8>,
}

/// Body of `POST /api/isCompleted`; the response is the JSON list of matching addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsCompletedRequest {
    /// Handoff addresses (`rsync <uuid>`, bundle URLs) to check.
    pub addresses: Vec<String>,
}

/// One shard as `/custom/lookup-wat` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The WAT URL.
    pub url: String,
    /// First sample ID of this half.
    pub start_id: IdString,
    /// One past the last sample ID of this half.
    pub end_id: IdString,
    /// Which half (0 or 1).
    pub shard: u8,
}

/// Body of `POST /custom/lookup-wat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupWatRequest {
    /// The WAT URL from `get-cpu-wat`.
    pub url: String,
    /// Extension: reserve for this client. 2021 clients omit it; the server then binds the
    /// reservation to an idle CPU client registered from the caller's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Response of the `/custom/*` endpoints: `{status: "success", ...}` or `{status: "failed", detail}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomResponse {
    /// `success` or `failed`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `lookup-wat`: `[number, shard]` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<(u64, ShardInfo)>>,
    /// `markasdone-cpu`: how many shards it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

/// Body of `POST /custom/markasdone-cpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkAsDoneCpuRequest {
    /// Job numbers to complete.
    pub shards: Vec<u64>,
    /// Handoff URL per job number (the keys are decimal strings).
    pub urls: BTreeMap<String, String>,
    /// Leaderboard name.
    pub nickname: String,
    /// The client's token; required here, unlike 2021.
    #[serde(default)]
    pub token: Option<String>,
}

/// Response of `GET /data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataResponse {
    /// `"closed / total"` with thousands separators.
    pub completion_str: String,
    /// Percentage of closed jobs.
    pub completion_float: f64,
    /// Registered clients.
    pub total_connected_workers: u64,
    /// Pairs credited by completions.
    pub total_pairs_scraped: u64,
    /// `"N days, H hours, ..."`, `"Calculating..."` or `"Finished"`.
    pub eta: String,
    /// Jobs failed for good because their WAT cannot be used (an extension: tracker-d sends
    /// it, a 2021 tracker does not). They are not closed, and not counted as work left in `eta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs: Option<u64>,
}

/// Response of `GET /worker/{type}/{display_name}/data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerData {
    /// Display name.
    pub display_name: String,
    /// The job the client holds, if any.
    pub shard_number: Option<u64>,
    /// Last progress string.
    pub progress: String,
    /// Jobs this client completed.
    pub jobs_completed: u64,
    /// Registration time, unix seconds.
    pub first_seen: i64,
    /// Last call, unix seconds.
    pub last_seen: i64,
    /// Leaderboard name.
    pub user_nickname: String,
    /// Client role.
    #[serde(rename = "type")]
    pub client_type: ClientType,
}
