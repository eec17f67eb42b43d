//! Error responses: a status code and a plain-text detail, as the 2021 server rendered them.
//!
//! A refusal (4xx) says what is wrong with the request. A failure of the tracker (5xx) says
//! what failed and when to come back, never its cause's text, which may name the server's
//! files: the cause goes to the tracker's log.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::json_body::{BodyBudget, JsonRoute};

use crate::staging::StagingError;
use crate::tracker::TrackerError;

/// A failed request.
#[derive(Debug)]
pub enum AppError {
    /// Our extension semantics (409 for a job not held).
    Ext(TrackerError),
    /// 2021 semantics: 403 for a job not held, as the old client library expects.
    Legacy(TrackerError),
    /// A body that is not the JSON we expect.
    BadBody(String),
    /// A body over the size limit.
    TooLarge,
    /// A body that stopped arriving (see `--body-timeout`).
    BodyTimedOut,
    /// A body not whole within `--json-body-deadline`.
    BodyDeadline(Duration),
    /// No room in the JSON body budget (`--json-body-budget`): retry after the duration.
    Busy(Duration),
}

impl From<TrackerError> for AppError {
    fn from(error: TrackerError) -> Self {
        AppError::Ext(error)
    }
}

impl AppError {
    /// The same error with 2021 status codes.
    pub fn legacy(error: TrackerError) -> Self {
        AppError::Legacy(error)
    }
}

/// How long a client waits before it sends a bundle to a full store again: time for the reaper
/// to collect bundles or for an operator to free space, and well inside a job lease.
const STORE_FULL_RETRY_AFTER: Duration = Duration::from_secs(300);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, detail, retry_after) = match &self {
            AppError::BadBody(detail) => (StatusCode::BAD_REQUEST, detail.clone(), None),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large".to_owned(),
                None,
            ),
            AppError::BodyTimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving".to_owned(),
                None,
            ),
            AppError::BodyDeadline(deadline) => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body took longer than {} to arrive",
                    humantime::format_duration(*deadline)
                ),
                None,
            ),
            AppError::Busy(retry_after) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the tracker holds as many request bodies as it may; send it again in {} s",
                    retry_after.as_secs()
                ),
                Some(retry_after.as_secs()),
            ),
            AppError::Ext(error) => status_of(error, false),
            AppError::Legacy(error) => status_of(error, true),
        };
        match &self {
            AppError::Ext(error) | AppError::Legacy(error) if status.is_server_error() => {
                log_failure(status, error);
            }
            _ => tracing::debug!(%status, error = %detail, "request refused"),
        }
        let mut response = (status, detail).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The status, the detail a client is told, and the `Retry-After` seconds of `error`.
fn status_of(error: &TrackerError, legacy: bool) -> (StatusCode, String, Option<u64>) {
    let status = match error {
        TrackerError::UnknownToken => StatusCode::NOT_FOUND,
        TrackerError::NoJobs => StatusCode::FORBIDDEN,
        TrackerError::NotHeld(_) if legacy => StatusCode::FORBIDDEN,
        TrackerError::NotHeld(_) => StatusCode::CONFLICT,
        TrackerError::Invalid(_) => StatusCode::BAD_REQUEST,
        TrackerError::Forbidden(_) => StatusCode::FORBIDDEN,
        TrackerError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        TrackerError::Full { .. } => StatusCode::SERVICE_UNAVAILABLE,
        TrackerError::Unauthorized => StatusCode::UNAUTHORIZED,
        TrackerError::Staging(staging) => match staging {
            StagingError::BadSignature => StatusCode::FORBIDDEN,
            StagingError::Expired => StatusCode::GONE,
            StagingError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StagingError::NotFound(_) => StatusCode::NOT_FOUND,
            StagingError::Interrupted(_) => StatusCode::BAD_REQUEST,
            StagingError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            StagingError::Conflict(_) => StatusCode::CONFLICT,
            StagingError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
            StagingError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            StagingError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        TrackerError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let retry_after = match error {
        // Rounded up: a client that waits exactly this long must find a token free.
        TrackerError::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
        TrackerError::Db(_) | TrackerError::Staging(StagingError::Db(_)) => Some(1),
        TrackerError::Full { .. } => Some(crate::tracker::FULL_RETRY_AFTER.as_secs()),
        TrackerError::Staging(StagingError::Full { .. }) => Some(STORE_FULL_RETRY_AFTER.as_secs()),
        _ => None,
    };
    let detail = if status.is_server_error() {
        failure_detail(error)
    } else {
        error.to_string()
    };
    (status, detail, retry_after)
}

/// What a client is told of a failure of the tracker: what failed and what to do.
fn failure_detail(error: &TrackerError) -> String {
    match error {
        TrackerError::Staging(StagingError::Full { .. }) => format!(
            "the tracker's bundle store is full: keep the bundle and upload it again in {} s",
            STORE_FULL_RETRY_AFTER.as_secs()
        ),
        TrackerError::Staging(StagingError::Io { .. }) => {
            "the tracker's bundle store failed to read or write a bundle; retry later".to_owned()
        }
        TrackerError::Db(_) | TrackerError::Staging(StagingError::Db(_)) => {
            "the tracker's database is unavailable; retry later".to_owned()
        }
        TrackerError::Full { .. } => error.to_string(),
        _ => "the tracker failed; retry later".to_owned(),
    }
}

/// Logs a failure of the tracker with its cause, and the file it concerns as a field of its own.
fn log_failure(status: StatusCode, error: &TrackerError) {
    match error {
        TrackerError::Staging(StagingError::Full { path, cause }) => {
            tracing::error!(%status, path = %path.display(), error = %cause, "bundle store full, upload refused");
        }
        TrackerError::Staging(StagingError::Io { path, cause }) => {
            tracing::error!(%status, path = %path.display(), error = %cause, "bundle store io failed");
        }
        _ => tracing::error!(%status, error = %error, "request failed"),
    }
}

/// The `Content-Length` a request announces, if any.
pub(super) fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A JSON body decoded whatever its `Content-Type`, with a 400 and a readable detail on failure.
///
/// It is read within its route's cap (413), the body budget (503) and the body deadline (408),
/// see [`json_body`](super::json_body). A body announced larger than the cap, or than the
/// budget has room for, is refused before anything is read, so a client that sent
/// `Expect: 100-continue` gets the refusal instead of `100 Continue`.
#[derive(Debug)]
pub(super) struct JsonBody<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let route = request
            .extensions()
            .get::<JsonRoute>()
            .copied()
            .unwrap_or(JsonRoute::Small);
        let budget = request
            .extensions()
            .get::<Arc<BodyBudget>>()
            .cloned()
            .expect("the router puts the body budget in every request");
        budget.decode(request, route).await.map(JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::path::PathBuf;

    use super::*;

    fn io_failure(kind: ErrorKind) -> AppError {
        let path = PathBuf::from("/srv/cah/staging/tmp/job-7-abc.part");
        AppError::from(TrackerError::from(StagingError::io(
            path,
            Error::from(kind),
        )))
    }

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_full_store_is_507_with_retry_after_and_no_path() {
        for kind in [ErrorKind::StorageFull, ErrorKind::QuotaExceeded] {
            let response = io_failure(kind).into_response();
            assert_eq!(
                response.status(),
                StatusCode::INSUFFICIENT_STORAGE,
                "{kind:?}"
            );
            assert_eq!(response.headers()[header::RETRY_AFTER], "300", "{kind:?}");
            let body = body_of(response).await;
            assert!(body.contains("bundle store is full"), "{body}");
            assert!(!body.contains('/'), "{body}");
        }
    }

    #[tokio::test]
    async fn failures_of_the_tracker_name_no_server_path() {
        let response = io_failure(ErrorKind::PermissionDenied).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        let body = body_of(response).await;
        assert!(body.contains("bundle store failed"), "{body}");
        assert!(!body.contains('/'), "{body}");
    }
}
