//! Bundle uploads: ask the tracker for a signed URL, then `PUT` the bytes there, streamed.

use std::path::PathBuf;

use bytes::Bytes;
use cah_protocol::ext::{JobRequest, StoredBlob, UploadUrlResponse};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio_util::io::ReaderStream;
use url::Url;

use crate::client::TrackerClient;
use crate::endpoint::{self, Endpoint};
use crate::error::TrackerError;
use crate::retry::{Attempt, with_retries};
use crate::session::Session;
use crate::transport::{Reply, decode_json};

/// Read size of a streamed bundle file.
const FILE_CHUNK_BYTES: usize = 256 * 1024;

/// The bytes of a bundle to upload. Both kinds can be sent again, so uploads are retried.
#[derive(Debug, Clone)]
pub enum BundleBody {
    /// A file, streamed from disk (never read whole into memory) and reopened for each attempt.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl Session {
    /// `POST /api/ext/uploadUrl`: a signed, expiring URL to `PUT` job `number`'s bundle to.
    pub async fn upload_url(&self, number: u64) -> Result<UploadUrlResponse, TrackerError> {
        let request = JobRequest {
            token: self.token().to_owned(),
            number,
        };
        self.client()
            .post_json(&endpoint::EXT_UPLOAD_URL, &request)
            .await
    }

    /// Uploads a bundle to the URL from [`upload_url`](Self::upload_url); see
    /// [`TrackerClient::upload_bundle`]. Complete the job with `blob:<key>` afterwards.
    pub async fn upload_bundle(
        &self,
        target: &UploadUrlResponse,
        body: BundleBody,
    ) -> Result<StoredBlob, TrackerError> {
        self.client().upload_bundle(target, body).await
    }

    /// [`upload_bundle`](Self::upload_bundle), except that a full store (507) is returned at
    /// once whatever its `Retry-After`, for a caller that waits it out itself (other failures
    /// are retried as usual).
    pub async fn upload_bundle_once_if_full(
        &self,
        target: &UploadUrlResponse,
        body: BundleBody,
    ) -> Result<StoredBlob, TrackerError> {
        self.client()
            .upload_with(&endpoint::UPLOAD_BUNDLE_ONCE_IF_FULL, target, body)
            .await
    }
}

impl TrackerClient {
    /// `PUT`s a bundle to `target.put_url` as `application/octet-stream` with its exact
    /// `Content-Length`, and returns what the store kept.
    ///
    /// A body larger than `target.max_bytes` (when non-zero) fails with
    /// [`TrackerError::TooLarge`] before anything is sent; the store's own 413 maps to the same.
    /// [`TrackerError::Forbidden`] (403) means the URL's signature is bad or expired: ask for a
    /// new one. [`TrackerError::StorageFull`] (507) means the tracker's store is full and kept
    /// nothing: keep the bundle and upload it again after its `retry_after` (with this URL while
    /// it has not expired, else a new one); the retry policy waits that long itself only when
    /// its `max_elapsed` allows, which the default's 2 minutes do not for tracker-d's 5.
    /// Uploads use the longer upload timeout of [`crate::ClientConfig`].
    pub async fn upload_bundle(
        &self,
        target: &UploadUrlResponse,
        body: BundleBody,
    ) -> Result<StoredBlob, TrackerError> {
        self.upload_with(&endpoint::UPLOAD_BUNDLE, target, body)
            .await
    }

    async fn upload_with(
        &self,
        endpoint: &Endpoint,
        target: &UploadUrlResponse,
        body: BundleBody,
    ) -> Result<StoredBlob, TrackerError> {
        let url = self
            .base_url()
            .join(&target.put_url)
            .map_err(|error| TrackerError::Decode {
                call: endpoint::EXT_UPLOAD_URL.name,
                detail: format!("put_url {:?} is not a url: {error}", target.put_url),
            })?;
        let (url, body) = (&url, &body);
        let (reply, sent_bytes) =
            with_retries(self.retry_policy(), endpoint, |attempt| async move {
                let (request_body, length) = open_body(body).await?;
                if target.max_bytes > 0 && length > target.max_bytes {
                    return Err(TrackerError::TooLarge(format!(
                        "bundle of {length} bytes exceeds the store's limit of {}",
                        target.max_bytes
                    )));
                }
                let reply = self
                    .put(endpoint, url, attempt, request_body, length)
                    .await?;
                Ok((reply, length))
            })
            .await?;
        let stored: StoredBlob = decode_json(endpoint, &reply.into_body())?;
        if stored.size != sent_bytes {
            return Err(TrackerError::Decode {
                call: endpoint.name,
                detail: format!("store kept {} of {sent_bytes} bytes", stored.size),
            });
        }
        tracing::debug!(key = %stored.key, size = stored.size, "bundle uploaded");
        Ok(stored)
    }

    async fn put(
        &self,
        endpoint: &Endpoint,
        url: &Url,
        attempt: Attempt,
        body: reqwest::Body,
        length: u64,
    ) -> Result<Reply, TrackerError> {
        let request = self
            .http()
            .put(url.clone())
            .timeout(self.upload_timeout())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, length)
            .body(body);
        self.exchange(endpoint, attempt, request).await
    }
}

/// Opens the body for one attempt: the file is reopened each time, so a retry starts over.
async fn open_body(body: &BundleBody) -> Result<(reqwest::Body, u64), TrackerError> {
    match body {
        BundleBody::Bytes(bytes) => Ok((reqwest::Body::from(bytes.clone()), bytes.len() as u64)),
        BundleBody::File(path) => {
            let io_error = |source| TrackerError::Io {
                path: path.clone(),
                cause: source,
            };
            let file = tokio::fs::File::open(path).await.map_err(io_error)?;
            let length = file.metadata().await.map_err(io_error)?.len();
            let stream = ReaderStream::with_capacity(file, FILE_CHUNK_BYTES);
            Ok((reqwest::Body::wrap_stream(stream), length))
        }
    }
}
