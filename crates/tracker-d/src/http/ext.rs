//! Handlers of our extensions under `/api/ext/`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cah_protocol::ext::{
    ClaimRequest, ClaimResponse, CompleteRequest, DedupRequest, DedupResponse, HeartbeatRequest,
    HeartbeatResponse, InfoResponse, InvalidRequest, JobRequest, UploadUrlResponse,
};
use serde::Deserialize;

use super::error::{AppError, JsonBody};
use crate::tracker::MAX_LISTED_CLIENTS;

type Tracker = State<super::State>;

pub(super) async fn info(State(tracker): Tracker) -> Json<InfoResponse> {
    Json(InfoResponse {
        api_version: cah_protocol::API_VERSION,
        server: format!("tracker-d {}", env!("CARGO_PKG_VERSION")),
        lease_seconds: tracker.settings().lease.as_secs(),
        max_bundle_bytes: tracker.staging().max_bytes(),
    })
}

pub(super) async fn claim(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<ClaimRequest>,
) -> Result<Json<ClaimResponse>, AppError> {
    let jobs = tracker
        .claim(&request.token, request.max_jobs, request.whole_wat)
        .await?;
    Ok(Json(ClaimResponse { jobs }))
}

pub(super) async fn heartbeat(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, AppError> {
    Ok(Json(
        tracker.heartbeat(&request.token, &request.progress).await?,
    ))
}

pub(super) async fn complete(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<CompleteRequest>,
) -> Result<&'static str, AppError> {
    tracker.complete(&request).await?;
    Ok("success")
}

pub(super) async fn release(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<&'static str, AppError> {
    tracker.release(&request.token, request.number).await?;
    Ok("success")
}

pub(super) async fn invalid(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<InvalidRequest>,
) -> Result<&'static str, AppError> {
    tracker
        .invalid(&request.token, request.number, &request.reason)
        .await?;
    Ok("success")
}

pub(super) async fn upload_url(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<Json<UploadUrlResponse>, AppError> {
    Ok(Json(
        tracker.upload_url(&request.token, request.number).await?,
    ))
}

pub(super) async fn dedup(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<DedupRequest>,
) -> Result<Json<DedupResponse>, AppError> {
    let new = tracker
        .dedup(&request.token, request.set, &request.hashes, request.add)
        .await?;
    Ok(Json(DedupResponse { new }))
}

/// Clients `GET /api/ext/clients` lists when no `limit` is given: every node of a large swarm.
pub(super) const DEFAULT_LISTED_CLIENTS: u32 = 1_000;

#[derive(Debug, Deserialize)]
pub(super) struct ClientsQuery {
    limit: Option<u32>,
}

/// The most recently seen clients, at most `limit` (default [`DEFAULT_LISTED_CLIENTS`]): the
/// answer is bounded however many clients ever registered. Every limit is served from one
/// cached listing of [`MAX_LISTED_CLIENTS`], so no choice of limits makes callers count anew.
pub(super) async fn clients(
    State(tracker): Tracker,
    Query(query): Query<ClientsQuery>,
) -> Result<Response, AppError> {
    let limit = query.limit.unwrap_or(DEFAULT_LISTED_CLIENTS);
    if limit == 0 || limit > MAX_LISTED_CLIENTS {
        return Err(AppError::BadBody(format!(
            "limit must be between 1 and {MAX_LISTED_CLIENTS}"
        )));
    }
    let listing = tracker.recent_clients().await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        listing.json(limit as usize),
    )
        .into_response())
}
