//! Handlers of the 2021 API (`/api/*`, `/custom/*`): same paths, fields, status codes and bodies.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use cah_protocol::legacy::{
    CustomResponse, IsCompletedRequest, JobResponse, LookupWatRequest, MarkAsDoneCpuRequest,
    MarkAsDoneRequest, NewQuery, NewResponse, TokenRequest, TypeQuery, UpdateProgressRequest,
};

use super::error::{AppError, JsonBody};
use crate::tracker::TrackerError;

type Tracker = State<super::State>;
type Address = ConnectInfo<SocketAddr>;

const SUCCESS: &str = "success";

pub(super) async fn new(
    State(tracker): Tracker,
    ConnectInfo(address): Address,
    Query(query): Query<NewQuery>,
) -> Result<Json<NewResponse>, AppError> {
    let response = tracker
        .register(&query.nickname, query.client_type, address.ip())
        .await
        .map_err(AppError::legacy)?;
    Ok(Json(response))
}

pub(super) async fn validate_worker(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<&'static str, AppError> {
    let valid = tracker
        .validate(&request.token)
        .await
        .map_err(AppError::legacy)?;
    Ok(if valid { "True" } else { "False" })
}

pub(super) async fn job_count(
    State(tracker): Tracker,
    Query(query): Query<TypeQuery>,
) -> Result<String, AppError> {
    let count = tracker
        .job_count(query.client_type)
        .await
        .map_err(AppError::legacy)?;
    Ok(count.to_string())
}

pub(super) async fn new_job(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Json<JobResponse>, AppError> {
    let job = tracker
        .legacy_new_job(&request.token)
        .await
        .map_err(AppError::legacy)?;
    Ok(Json(job))
}

pub(super) async fn update_progress(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<UpdateProgressRequest>,
) -> Result<&'static str, AppError> {
    tracker
        .heartbeat(&request.token, &request.progress)
        .await
        .map_err(AppError::legacy)?;
    Ok(SUCCESS)
}

pub(super) async fn mark_as_done(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<MarkAsDoneRequest>,
) -> Result<&'static str, AppError> {
    tracker
        .legacy_mark_as_done(&request)
        .await
        .map_err(AppError::legacy)?;
    Ok(SUCCESS)
}

pub(super) async fn gpu_invalid_download(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<&'static str, AppError> {
    tracker
        .legacy_invalid(&request.token)
        .await
        .map_err(AppError::legacy)?;
    Ok(SUCCESS)
}

pub(super) async fn bye(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<&'static str, AppError> {
    tracker
        .bye(&request.token)
        .await
        .map_err(AppError::legacy)?;
    Ok(SUCCESS)
}

pub(super) async fn get_upload_address(State(tracker): Tracker) -> String {
    tracker.upload_address()
}

pub(super) async fn is_completed(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<IsCompletedRequest>,
) -> Result<Json<Vec<String>>, AppError> {
    let completed = tracker
        .is_completed(&request.addresses)
        .await
        .map_err(AppError::legacy)?;
    Ok(Json(completed))
}

pub(super) async fn get_cpu_wat(State(tracker): Tracker) -> Result<String, AppError> {
    match tracker.get_cpu_wat().await.map_err(AppError::legacy)? {
        Some(url) => Ok(url),
        None => Err(AppError::legacy(TrackerError::NoJobs)),
    }
}

pub(super) async fn lookup_wat(
    State(tracker): Tracker,
    ConnectInfo(address): Address,
    JsonBody(request): JsonBody<LookupWatRequest>,
) -> Result<Json<CustomResponse>, AppError> {
    let response = tracker
        .lookup_wat(&request.url, request.token.as_deref(), address.ip())
        .await
        .map_err(AppError::legacy)?;
    Ok(Json(response))
}

pub(super) async fn mark_as_done_cpu(
    State(tracker): Tracker,
    JsonBody(request): JsonBody<MarkAsDoneCpuRequest>,
) -> Result<Json<CustomResponse>, AppError> {
    let response = tracker
        .mark_as_done_cpu(&request)
        .await
        .map_err(AppError::legacy)?;
    Ok(Json(response))
}
