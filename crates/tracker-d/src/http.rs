//! The HTTP surface: the 2021 API, the full-WAT endpoints, our extensions, blobs and pages.

mod admin;
mod blobs;
mod error;
mod ext;
mod json_body;
mod legacy;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use cah_protocol::paths;

use crate::tracker::Tracker;

pub use error::AppError;
pub use json_body::{BodyBudget, JsonBodyLimits, SMALL_JSON_BYTES};

/// Shared handler state.
pub type State = Arc<Tracker>;

/// Builds the router. JSON bodies are read within `json_bodies` (see [`json_body`]): the
/// routes that take batches up to `--max-json-bytes`, the others up to [`SMALL_JSON_BYTES`].
/// Bundle uploads stream to disk and have their own cap.
pub fn router(tracker: State, json_bodies: JsonBodyLimits) -> Router {
    // The route's layer runs after the router's, so it overrides `JsonRoute::Small`.
    let batch = || axum::Extension(json_body::JsonRoute::Batch);
    let budget = BodyBudget::new(json_bodies);
    Router::new()
        .route("/", get(pages::dashboard))
        .route(paths::LEADERBOARD, get(pages::leaderboard))
        .route(paths::DATA, get(pages::data))
        .route(paths::METRICS, get(pages::metrics))
        .route(
            "/worker/{client_type}/{display_name}/data",
            get(pages::worker_data),
        )
        .route(paths::NEW, get(legacy::new))
        .route(paths::VALIDATE_WORKER, post(legacy::validate_worker))
        .route(paths::JOB_COUNT, get(legacy::job_count))
        .route(paths::NEW_JOB, post(legacy::new_job))
        .route(paths::UPDATE_PROGRESS, post(legacy::update_progress))
        .route(paths::MARK_AS_DONE, post(legacy::mark_as_done))
        .route(
            paths::GPU_INVALID_DOWNLOAD,
            post(legacy::gpu_invalid_download),
        )
        .route(paths::BYE, post(legacy::bye))
        .route(paths::GET_UPLOAD_ADDRESS, get(legacy::get_upload_address))
        .route(
            paths::IS_COMPLETED,
            post(legacy::is_completed).layer(batch()),
        )
        .route(paths::CUSTOM_GET_CPU_WAT, get(legacy::get_cpu_wat))
        .route(paths::CUSTOM_LOOKUP_WAT, post(legacy::lookup_wat))
        .route(
            paths::CUSTOM_MARK_AS_DONE_CPU,
            post(legacy::mark_as_done_cpu),
        )
        .route(paths::EXT_INFO, get(ext::info))
        .route(paths::EXT_CLAIM, post(ext::claim))
        .route(paths::EXT_HEARTBEAT, post(ext::heartbeat))
        .route(paths::EXT_COMPLETE, post(ext::complete))
        .route(paths::EXT_RELEASE, post(ext::release))
        .route(paths::EXT_INVALID, post(ext::invalid))
        .route(paths::EXT_UPLOAD_URL, post(ext::upload_url))
        .route(paths::EXT_DEDUP, post(ext::dedup).layer(batch()))
        .route(paths::EXT_CLIENTS, get(ext::clients))
        .route("/blobs/{key}", put(blobs::put).get(blobs::get))
        .route("/admin/reset-job", post(admin::reset_job))
        .layer(DefaultBodyLimit::max(json_bodies.max_bytes))
        .layer(axum::Extension(json_body::JsonRoute::Small))
        .layer(axum::Extension(budget))
        .with_state(tracker)
}
