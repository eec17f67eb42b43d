//! `PUT` and `GET /blobs/{key}`: the staging store behind signed URLs.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cah_protocol::ext::StoredBlob;
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use super::error::{AppError, announced_length};
use crate::staging::StagingError;
use crate::tracker::TrackerError;

/// Bytes read from a blob file per step of its response body. `ReaderStream`'s default of 4 KiB
/// made each step a round trip through the blocking pool: a 100 MB bundle took about 2 s to
/// serve on the H200 machine (gVisor), which held a GPU daemon fed by one tracker to a fifth of
/// its speed; 256 KiB reads a 100 MB file about 15 times as fast here.
const BLOB_READ_CHUNK: usize = 256 * 1024;

type Tracker = State<super::State>;

#[derive(Debug, Deserialize)]
pub(super) struct Signed {
    expires: i64,
    signature: String,
}

pub(super) async fn put(
    State(tracker): Tracker,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
    request: Request,
) -> Result<Json<StoredBlob>, AppError> {
    // Refused before anything is read (no `100 Continue` either) when it cannot fit.
    let max_bytes = tracker.staging().max_bytes();
    if announced_length(&request).is_some_and(|announced| announced > max_bytes) {
        return Err(TrackerError::from(StagingError::TooLarge { max_bytes }).into());
    }
    let stored = tracker
        .put_blob(
            &key,
            signed.expires,
            &signed.signature,
            request.into_body().into_data_stream(),
        )
        .await?;
    Ok(Json(stored))
}

pub(super) async fn get(
    State(tracker): Tracker,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
) -> Result<Response, AppError> {
    let staging = tracker.staging();
    staging
        .verify("GET", &key, signed.expires, &signed.signature)
        .map_err(TrackerError::from)?;
    let path = staging.path(&key);
    let file = tokio::fs::File::open(&path).await.map_err(|error| {
        TrackerError::from(if error.kind() == std::io::ErrorKind::NotFound {
            StagingError::NotFound(key.clone())
        } else {
            StagingError::io(path.clone(), error)
        })
    })?;
    let length = file
        .metadata()
        .await
        .map_err(|source| TrackerError::from(StagingError::io(path, source)))?
        .len();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(ReaderStream::with_capacity(file, BLOB_READ_CHUNK)),
    )
        .into_response())
}
