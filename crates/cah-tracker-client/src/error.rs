//! The client's one error type, and how HTTP statuses of the tracker map onto it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use crate::endpoint::{Endpoint, On403};

/// Everything a tracker call can fail with.
///
/// Status mapping (the tracker sends error details as `text/plain`):
///
/// | status | variant |
/// |---|---|
/// | 400, 422 | [`Invalid`](Self::Invalid) |
/// | 403 on `newJob`, `get-cpu-wat` | [`NoJobs`](Self::NoJobs) |
/// | 403 on `markAsDone` | [`Conflict`](Self::Conflict) (no job held, or already closed) |
/// | 403 elsewhere, 410 | [`Forbidden`](Self::Forbidden) (for example a bad or expired upload URL) |
/// | 404 on a call that carries a token | [`TimedOut`](Self::TimedOut): register again |
/// | 409 | [`Conflict`](Self::Conflict): the job is not held by this client |
/// | 413 | [`TooLarge`](Self::TooLarge) |
/// | 429 | [`RateLimited`](Self::RateLimited), with `Retry-After` seconds |
/// | 507 | [`StorageFull`](Self::StorageFull): the bundle store is full, nothing was stored; retried only after the server's `Retry-After` |
/// | other 5xx | [`Server`](Self::Server), with `Retry-After` when sent (503 for an unavailable database) |
/// | anything else that is not 2xx | [`Rejected`](Self::Rejected) |
///
/// Retried within the [`RetryPolicy`](crate::RetryPolicy): transport failures, 429, other 5xx,
/// and 507 when it came with a `Retry-After`; every wait lasts at least that `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// No job of the client's type is open right now (legacy `newJob` 403, or `get-cpu-wat`).
    #[error("no jobs available")]
    NoJobs,
    /// The token is unknown or was reaped for idleness (404): call `Session::reregister`.
    #[error("tracker does not know this token (timed out): register again")]
    TimedOut,
    /// The tracker rejected the request as malformed (400 or 422).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The job is not held by this client: its lease was lost, or it is already completed
    /// (409, or the legacy 403 of `markAsDone`).
    #[error("job not held by this client: {0}")]
    Conflict(String),
    /// Refused for a reason other than the ones above (403, or 410 Gone): an upload URL whose
    /// signature is bad or expired (ask for a new one), or a client type the tracker no longer
    /// accepts.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The body is larger than the tracker or its staging store accepts (413, or known before
    /// sending from the upload URL's `max_bytes`).
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// Too many requests (429); `retry_after` is the server's `Retry-After`, when it sent one.
    #[error("rate limited{}", retry_after.map(|wait| format!(" (retry after {} s)", wait.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// How long the server asked the client to wait.
        retry_after: Option<Duration>,
    },
    /// The tracker's bundle store is full (507 Insufficient Storage) and nothing was stored.
    ///
    /// Keep the bundle and upload it again after `retry_after` (tracker-d asks for 5 minutes):
    /// an upload sooner finds the store still full. The retry loop waits that long only when
    /// its policy's `max_elapsed` allows; otherwise this error comes back at once. Without a
    /// `Retry-After` the error is not retried.
    #[error("the tracker's bundle store is full: upload again {}", after(.retry_after))]
    StorageFull {
        /// How long the server asked the client to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The tracker failed (5xx other than 507), for example because its database is
    /// unavailable (503).
    #[error("tracker error {status}: {body}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The tracker's detail text.
        body: String,
        /// The server's `Retry-After`, when it sent one; retries wait at least this long.
        retry_after: Option<Duration>,
    },
    /// Any other non-success status (401, 404 on an unauthenticated call, 405, 415...).
    #[error("unexpected status {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The response's text.
        body: String,
    },
    /// The request did not complete: connection refused or reset, timeout, TLS. The message
    /// carries reqwest's whole chain of causes: the useful one (`Connection refused`) is
    /// several levels down.
    #[error("tracker request failed: {}", with_causes(.0))]
    Transport(reqwest::Error),
    /// A success response whose body is not what the protocol says.
    #[error("bad response to {call}: {detail}")]
    Decode {
        /// The call, as named in the protocol (`newJob`, `claim`...).
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A local file (a bundle to upload) could not be read.
    #[error("failed to read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The client was configured with something unusable (a base URL that is not http(s)).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// `in 300 s`, or `later` when the server gave no delay.
fn after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!("in {} s", wait.as_secs()),
        None => "later".to_owned(),
    }
}

/// `error` and its causes, `: `-separated, each cause left out when the text so far already
/// says it: for logs of errors whose useful part is deep down (reqwest's `Connection refused`
/// is three levels below `error sending request`).
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        cause = next.source();
    }
    text
}

impl TrackerError {
    /// Whether trying the same request again later can succeed: transport failures, 5xx and 429;
    /// a 507 only when the server said when (a retry sooner finds the store still full).
    pub fn is_retryable(&self) -> bool {
        match self {
            TrackerError::Transport(error) => !error.is_builder() && !error.is_redirect(),
            TrackerError::Server { .. } | TrackerError::RateLimited { .. } => true,
            TrackerError::StorageFull { retry_after } => retry_after.is_some(),
            _ => false,
        }
    }

    /// Whether the tracker may have applied the request even though the call failed.
    ///
    /// True for 5xx other than 507 and for transport failures after the connection was made (the
    /// response may have been lost on its way back). False for a refused connection, a 429
    /// (refused before any work), a 507 (nothing was stored) and every 4xx, which the tracker
    /// answers without changing state.
    pub fn may_have_applied(&self) -> bool {
        match self {
            TrackerError::Transport(error) => !error.is_connect() && !error.is_builder(),
            TrackerError::Server { .. } => true,
            _ => false,
        }
    }

    /// A short, stable, lowercase name of the variant, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TrackerError::NoJobs => "no_jobs",
            TrackerError::TimedOut => "timed_out",
            TrackerError::Invalid(_) => "invalid",
            TrackerError::Conflict(_) => "conflict",
            TrackerError::Forbidden(_) => "forbidden",
            TrackerError::TooLarge(_) => "too_large",
            TrackerError::RateLimited { .. } => "rate_limited",
            TrackerError::StorageFull { .. } => "storage_full",
            TrackerError::Server { .. } => "server",
            TrackerError::Rejected { .. } => "rejected",
            TrackerError::Transport(error) if error.is_timeout() => "transport_timeout",
            TrackerError::Transport(error) if error.is_connect() => "transport_connect",
            TrackerError::Transport(_) => "transport",
            TrackerError::Decode { .. } => "decode",
            TrackerError::Io { .. } => "io",
            TrackerError::Config(_) => "config",
        }
    }

    /// The server's `Retry-After`, for a 429, a 507 or another 5xx that sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TrackerError::RateLimited { retry_after }
            | TrackerError::StorageFull { retry_after }
            | TrackerError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a non-success status and its detail text, for the given endpoint.
    pub(crate) fn from_status(
        endpoint: &Endpoint,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: String,
    ) -> TrackerError {
        match status.as_u16() {
            400 | 422 => TrackerError::Invalid(body),
            403 => match endpoint.on_403 {
                On403::NoJobs => TrackerError::NoJobs,
                On403::Conflict => TrackerError::Conflict(body),
                On403::Forbidden => TrackerError::Forbidden(body),
            },
            404 if endpoint.authenticated => TrackerError::TimedOut,
            409 => TrackerError::Conflict(body),
            410 => TrackerError::Forbidden(body),
            413 => TrackerError::TooLarge(body),
            429 => TrackerError::RateLimited { retry_after },
            507 => TrackerError::StorageFull { retry_after },
            500..=599 => TrackerError::Server {
                status: status.as_u16(),
                body,
                retry_after,
            },
            other => TrackerError::Rejected {
                status: other,
                body,
            },
        }
    }
}

/// Parses a `Retry-After` header in its delta-seconds form.
///
/// The tracker sends whole seconds. The HTTP-date form and garbage give `None`, and the retry
/// then waits its ordinary backoff.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint;

    fn map(endpoint: &Endpoint, status: u16) -> TrackerError {
        let status = StatusCode::from_u16(status).expect("valid status");
        TrackerError::from_status(endpoint, status, None, "detail".to_owned())
    }

    #[test]
    fn status_mapping_follows_the_protocol() {
        let cases: &[(&Endpoint, u16, &str)] = &[
            (&endpoint::NEW_JOB, 403, "no_jobs"),
            (&endpoint::MARK_AS_DONE, 403, "conflict"),
            (&endpoint::UPLOAD_BUNDLE, 403, "forbidden"),
            (&endpoint::UPLOAD_BUNDLE, 410, "forbidden"),
            (&endpoint::EXT_CLAIM, 404, "timed_out"),
            (&endpoint::JOB_COUNT, 404, "rejected"),
            (&endpoint::EXT_COMPLETE, 409, "conflict"),
            (&endpoint::EXT_COMPLETE, 400, "invalid"),
            (&endpoint::EXT_COMPLETE, 422, "invalid"),
            (&endpoint::UPLOAD_BUNDLE, 413, "too_large"),
            (&endpoint::EXT_HEARTBEAT, 429, "rate_limited"),
            (&endpoint::EXT_HEARTBEAT, 500, "server"),
            (&endpoint::EXT_HEARTBEAT, 503, "server"),
            (&endpoint::UPLOAD_BUNDLE, 507, "storage_full"),
            (&endpoint::EXT_HEARTBEAT, 401, "rejected"),
            (&endpoint::EXT_HEARTBEAT, 302, "rejected"),
        ];
        for (endpoint, status, kind) in cases {
            let error = map(endpoint, *status);
            assert_eq!(error.kind(), *kind, "{} {status}", endpoint.name);
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(map(&endpoint::EXT_HEARTBEAT, 500).is_retryable());
        assert!(map(&endpoint::EXT_HEARTBEAT, 429).is_retryable());
        for status in [400, 403, 404, 409, 413, 401] {
            assert!(
                !map(&endpoint::EXT_HEARTBEAT, status).is_retryable(),
                "{status}"
            );
        }
        assert!(!TrackerError::NoJobs.is_retryable());
        assert!(!TrackerError::TimedOut.is_retryable());
    }

    #[test]
    fn a_full_store_is_retryable_only_with_the_servers_delay() {
        let full = |retry_after| {
            let status = StatusCode::INSUFFICIENT_STORAGE;
            TrackerError::from_status(&endpoint::UPLOAD_BUNDLE, status, retry_after, String::new())
        };
        let with_delay = full(Some(Duration::from_secs(300)));
        assert!(with_delay.is_retryable());
        assert_eq!(with_delay.retry_after(), Some(Duration::from_secs(300)));
        assert!(!with_delay.may_have_applied(), "nothing was stored");
        assert_eq!(
            with_delay.to_string(),
            "the tracker's bundle store is full: upload again in 300 s"
        );
        let without = full(None);
        assert!(!without.is_retryable());
        assert!(
            without.to_string().ends_with("upload again later"),
            "{without}"
        );
    }

    #[test]
    fn a_rate_limit_was_not_applied_but_a_server_error_may_have_been() {
        assert!(!map(&endpoint::EXT_DEDUP, 429).may_have_applied());
        assert!(map(&endpoint::EXT_DEDUP, 502).may_have_applied());
        assert!(!map(&endpoint::EXT_DEDUP, 409).may_have_applied());
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
    }
}
