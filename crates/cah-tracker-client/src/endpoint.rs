//! The tracker's endpoints as the client sees them: path, method, and what a retry may do.
//!
//! One table, so the retry and status-mapping rules of every call can be reviewed together.

use cah_protocol::paths;
use reqwest::Method;

/// One tracker call and the rules for sending it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The call's protocol name, for logs and errors.
    pub(crate) name: &'static str,
    pub(crate) method: Method,
    /// Path below the base URL; empty for an upload, whose URL comes from the tracker.
    pub(crate) path: &'static str,
    pub(crate) repeat: Repeat,
    pub(crate) on_403: On403,
    /// The call carries a token, so a 404 means the token is unknown or timed out.
    pub(crate) authenticated: bool,
    /// A conflict (409, or the legacy 403 mapped to it) answering a retry that followed an
    /// attempt with an unknown outcome means "that attempt was probably applied".
    pub(crate) conflict_after_uncertain_is_done: bool,
    /// A full store (507 with a `Retry-After`) is waited out by the retry loop; off for callers
    /// that wait it out themselves, so the two loops do not multiply.
    pub(crate) retries_storage_full: bool,
}

/// When a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Sending it twice is harmless, or a second copy is detected by the server (409).
    Always,
    /// A second copy would apply twice (dedup with `add`): retry only failures that certainly
    /// were not applied (connection refused, 429).
    OnlyIfNotApplied,
}

/// What a 403 means for this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On403 {
    NoJobs,
    Conflict,
    Forbidden,
}

const fn endpoint(name: &'static str, method: Method, path: &'static str) -> Endpoint {
    Endpoint {
        name,
        method,
        path,
        repeat: Repeat::Always,
        on_403: On403::Forbidden,
        authenticated: true,
        conflict_after_uncertain_is_done: false,
        retries_storage_full: true,
    }
}

const fn public(mut endpoint: Endpoint) -> Endpoint {
    endpoint.authenticated = false;
    endpoint
}

const fn full_left_to_caller(mut endpoint: Endpoint) -> Endpoint {
    endpoint.retries_storage_full = false;
    endpoint
}

const fn completion(mut endpoint: Endpoint) -> Endpoint {
    endpoint.conflict_after_uncertain_is_done = true;
    endpoint
}

const fn on_403(mut endpoint: Endpoint, meaning: On403) -> Endpoint {
    endpoint.on_403 = meaning;
    endpoint
}

const fn only_if_not_applied(mut endpoint: Endpoint) -> Endpoint {
    endpoint.repeat = Repeat::OnlyIfNotApplied;
    endpoint
}

// Registration creates a client; a repeat after a lost response leaves an orphan registration
// without a job, which the tracker reaps when it idles out. That is harmless, so it is retried.
pub(crate) const NEW: Endpoint = public(endpoint("new", Method::GET, paths::NEW));
pub(crate) const VALIDATE_WORKER: Endpoint =
    endpoint("validateWorker", Method::POST, paths::VALIDATE_WORKER);
pub(crate) const JOB_COUNT: Endpoint = public(endpoint("jobCount", Method::GET, paths::JOB_COUNT));
// A repeated `newJob` releases the job the first copy claimed before claiming again, so it
// never leaves a job stranded.
pub(crate) const NEW_JOB: Endpoint = on_403(
    endpoint("newJob", Method::POST, paths::NEW_JOB),
    On403::NoJobs,
);
pub(crate) const UPDATE_PROGRESS: Endpoint =
    endpoint("updateProgress", Method::POST, paths::UPDATE_PROGRESS);
pub(crate) const MARK_AS_DONE: Endpoint = on_403(
    completion(endpoint("markAsDone", Method::POST, paths::MARK_AS_DONE)),
    On403::Conflict,
);
pub(crate) const GPU_INVALID_DOWNLOAD: Endpoint = on_403(
    completion(endpoint(
        "gpuInvalidDownload",
        Method::POST,
        paths::GPU_INVALID_DOWNLOAD,
    )),
    On403::Conflict,
);
pub(crate) const BYE: Endpoint = endpoint("bye", Method::POST, paths::BYE);
pub(crate) const GET_UPLOAD_ADDRESS: Endpoint = public(endpoint(
    "getUploadAddress",
    Method::GET,
    paths::GET_UPLOAD_ADDRESS,
));
pub(crate) const IS_COMPLETED: Endpoint =
    public(endpoint("isCompleted", Method::POST, paths::IS_COMPLETED));
pub(crate) const CUSTOM_GET_CPU_WAT: Endpoint = on_403(
    public(endpoint(
        "get-cpu-wat",
        Method::GET,
        paths::CUSTOM_GET_CPU_WAT,
    )),
    On403::NoJobs,
);
// A repeated lookup may find the halves the first copy reserved and report failure.
pub(crate) const CUSTOM_LOOKUP_WAT: Endpoint = only_if_not_applied(endpoint(
    "lookup-wat",
    Method::POST,
    paths::CUSTOM_LOOKUP_WAT,
));
// The server completes only shards that are still open, so a repeat completes nothing more.
pub(crate) const CUSTOM_MARK_AS_DONE_CPU: Endpoint = endpoint(
    "markasdone-cpu",
    Method::POST,
    paths::CUSTOM_MARK_AS_DONE_CPU,
);
pub(crate) const DATA: Endpoint = public(endpoint("data", Method::GET, paths::DATA));

pub(crate) const EXT_INFO: Endpoint = public(endpoint("info", Method::GET, paths::EXT_INFO));
// A repeated claim after a lost response leaves the first copy's jobs held by this client;
// they show up in the next heartbeat's job list (see `Session::claim`).
pub(crate) const EXT_CLAIM: Endpoint = endpoint("claim", Method::POST, paths::EXT_CLAIM);
pub(crate) const EXT_HEARTBEAT: Endpoint =
    endpoint("heartbeat", Method::POST, paths::EXT_HEARTBEAT);
pub(crate) const EXT_COMPLETE: Endpoint =
    completion(endpoint("complete", Method::POST, paths::EXT_COMPLETE));
pub(crate) const EXT_RELEASE: Endpoint =
    completion(endpoint("release", Method::POST, paths::EXT_RELEASE));
pub(crate) const EXT_INVALID: Endpoint =
    completion(endpoint("invalid", Method::POST, paths::EXT_INVALID));
pub(crate) const EXT_UPLOAD_URL: Endpoint =
    endpoint("uploadUrl", Method::POST, paths::EXT_UPLOAD_URL);
/// Dedup that only checks; see [`EXT_DEDUP_ADD`].
pub(crate) const EXT_DEDUP: Endpoint = endpoint("dedup", Method::POST, paths::EXT_DEDUP);
// With `add`, a repeat after an applied first copy would report every hash as already seen,
// and the caller would drop all its candidates: never repeat what may have been applied.
pub(crate) const EXT_DEDUP_ADD: Endpoint =
    only_if_not_applied(endpoint("dedup", Method::POST, paths::EXT_DEDUP));
pub(crate) const EXT_CLIENTS: Endpoint =
    public(endpoint("clients", Method::GET, paths::EXT_CLIENTS));
// PUT stores the same bytes under the same key, so it is idempotent. The URL carries its own
// signature instead of a token.
pub(crate) const UPLOAD_BUNDLE: Endpoint = public(endpoint("uploadBundle", Method::PUT, ""));
/// The same upload, leaving a full store (507) to the caller at once.
pub(crate) const UPLOAD_BUNDLE_ONCE_IF_FULL: Endpoint =
    full_left_to_caller(public(endpoint("uploadBundle", Method::PUT, "")));
