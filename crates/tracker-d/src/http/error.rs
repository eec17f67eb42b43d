//! Error responses: a status code and a plain-text detail, as the 2021 server rendered them.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, detail, retry_after) = match self {
            AppError::BadBody(detail) => (StatusCode::BAD_REQUEST, detail, None),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large".to_owned(),
                None,
            ),
            AppError::Ext(error) => status_of(&error, false),
            AppError::Legacy(error) => status_of(&error, true),
        };
        if status.is_server_error() {
            tracing::error!(%status, error = %detail, "request failed");
        } else {
            tracing::debug!(%status, error = %detail, "request refused");
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

fn status_of(error: &TrackerError, legacy: bool) -> (StatusCode, String, Option<u64>) {
    let status = match error {
        TrackerError::UnknownToken => StatusCode::NOT_FOUND,
        TrackerError::NoJobs => StatusCode::FORBIDDEN,
        TrackerError::NotHeld(_) if legacy => StatusCode::FORBIDDEN,
        TrackerError::NotHeld(_) => StatusCode::CONFLICT,
        TrackerError::Invalid(_) => StatusCode::BAD_REQUEST,
        TrackerError::Forbidden(_) => StatusCode::FORBIDDEN,
        TrackerError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        TrackerError::Unauthorized => StatusCode::UNAUTHORIZED,
        TrackerError::Staging(staging) => match staging {
            StagingError::BadSignature => StatusCode::FORBIDDEN,
            StagingError::Expired => StatusCode::GONE,
            StagingError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StagingError::NotFound(_) => StatusCode::NOT_FOUND,
            StagingError::Interrupted(_) => StatusCode::BAD_REQUEST,
            StagingError::Conflict(_) => StatusCode::CONFLICT,
            StagingError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            StagingError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        TrackerError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let retry_after = match error {
        // Rounded up: a client that waits exactly this long must find a token free.
        TrackerError::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
        TrackerError::Db(_) => Some(1),
        _ => None,
    };
    (status, error.to_string(), retry_after)
}

/// A JSON body decoded whatever its `Content-Type`, with a 400 and a readable detail on failure.
#[derive(Debug)]
pub(super) struct JsonBody<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::TooLarge
                } else {
                    AppError::BadBody(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| AppError::BadBody(format!("invalid JSON body: {error}")))
    }
}
