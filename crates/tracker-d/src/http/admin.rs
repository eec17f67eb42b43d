//! Admin endpoints: the secret travels in the `x-cah-admin-secret` header, never in a query string.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::error::{AppError, JsonBody};
use crate::tracker::TrackerError;

type Tracker = State<super::State>;

#[derive(Debug, Deserialize)]
pub(super) struct ResetJob {
    number: u64,
}

/// Reopens a job as an open CPU job, whatever its state.
pub(super) async fn reset_job(
    State(tracker): Tracker,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ResetJob>,
) -> Result<&'static str, AppError> {
    let secret = headers
        .get(cah_protocol::ADMIN_SECRET_HEADER)
        .and_then(|value| value.to_str().ok());
    tracker.check_admin(secret)?;
    if !tracker.reset_job(request.number).await? {
        return Err(TrackerError::Invalid(format!("no job {}", request.number)).into());
    }
    tracing::info!(number = request.number, "job reset by admin");
    Ok("success")
}
