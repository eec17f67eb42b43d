//! URL paths of the tracker API, shared by the server's router and the client.

/// `GET ?nickname=&type=`: register a client.
pub const NEW: &str = "/api/new";
/// `POST {token, type}`: is the token still registered.
pub const VALIDATE_WORKER: &str = "/api/validateWorker";
/// `GET ?type=`: open jobs for that type, as text.
pub const JOB_COUNT: &str = "/api/jobCount";
/// `POST {token, type}`: claim one job (releases the client's previous one).
pub const NEW_JOB: &str = "/api/newJob";
/// `POST {token, progress, type}`: the heartbeat.
pub const UPDATE_PROGRESS: &str = "/api/updateProgress";
/// `POST {token, type, count | url}`: complete the client's job.
pub const MARK_AS_DONE: &str = "/api/markAsDone";
/// `POST {token, type}`: a GPU client's bundle could not be used.
pub const GPU_INVALID_DOWNLOAD: &str = "/api/gpuInvalidDownload";
/// `POST {token, type}`: release the job and forget the client.
pub const BYE: &str = "/api/bye";
/// `GET ?type=`: an upload address, as text.
pub const GET_UPLOAD_ADDRESS: &str = "/api/getUploadAddress";
/// `POST {addresses}`: which handoff addresses belong to closed or unknown jobs.
pub const IS_COMPLETED: &str = "/api/isCompleted";
/// `GET`: a random WAT whose halves are both open, as text.
pub const CUSTOM_GET_CPU_WAT: &str = "/custom/get-cpu-wat";
/// `POST {url}`: reserve the open halves of a WAT.
pub const CUSTOM_LOOKUP_WAT: &str = "/custom/lookup-wat";
/// `POST {shards, urls, nickname, token}`: complete full-WAT CPU work.
pub const CUSTOM_MARK_AS_DONE_CPU: &str = "/custom/markasdone-cpu";
/// `GET`: progress summary as JSON.
pub const DATA: &str = "/data";
/// `GET`: leaderboard as HTML.
pub const LEADERBOARD: &str = "/leaderboard";

/// `GET`: extension API version and server limits.
pub const EXT_INFO: &str = "/api/ext/info";
/// `POST` [`crate::ext::ClaimRequest`].
pub const EXT_CLAIM: &str = "/api/ext/claim";
/// `POST` [`crate::ext::HeartbeatRequest`].
pub const EXT_HEARTBEAT: &str = "/api/ext/heartbeat";
/// `POST` [`crate::ext::CompleteRequest`].
pub const EXT_COMPLETE: &str = "/api/ext/complete";
/// `POST` [`crate::ext::JobRequest`]: give a job back untouched.
pub const EXT_RELEASE: &str = "/api/ext/release";
/// `POST` [`crate::ext::InvalidRequest`]: a GPU client's bundle, or a CPU client's WAT, cannot
/// be used.
pub const EXT_INVALID: &str = "/api/ext/invalid";
/// `POST` [`crate::ext::JobRequest`]: a signed URL to upload the job's bundle.
pub const EXT_UPLOAD_URL: &str = "/api/ext/uploadUrl";
/// `POST` [`crate::ext::DedupRequest`].
pub const EXT_DEDUP: &str = "/api/ext/dedup";
/// `GET`: registered clients as [`crate::ext::ClientInfo`] JSON.
pub const EXT_CLIENTS: &str = "/api/ext/clients";
/// `GET`: Prometheus text format.
pub const METRICS: &str = "/metrics";
