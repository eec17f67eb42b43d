//! Bundle uploads: upload URLs for the scraper that holds a job, the PUTs to them, and the
//! `blob:` handoff that names what was stored.
//!
//! One held CPU job has one upload key at a time: asking for a new upload URL supersedes the
//! previous key, cancels its upload in flight and deletes its blob. A PUT is stored only to
//! the job's current key while the job is being scraped, and never replaces a stored blob; the
//! same bytes sent again (a retry whose answer was lost) get the stored blob's answer.

use bytes::Bytes;
use cah_protocol::ClientType;
use cah_protocol::ext::{StoredBlob, UploadUrlResponse};
use futures_util::Stream;

use super::{Tracker, TrackerError};
use crate::jobs::{
    self,
    upload_key::{self, UploadState},
};
use crate::staging::{self, Part, StagingError};

impl Tracker {
    /// `/api/ext/uploadUrl`: a signed PUT URL for a CPU job the client holds, superseding the
    /// job's previous one.
    pub async fn upload_url(
        &self,
        token: &str,
        number: u64,
    ) -> Result<UploadUrlResponse, TrackerError> {
        let client = self.client(token, None).await?;
        let not_held = || TrackerError::NotHeld(format!("you do not hold job {number}"));
        if client.client_type != ClientType::Cpu {
            if !jobs::held(&self.db, &client.token).await?.contains(&number) {
                return Err(not_held());
            }
            return Err(TrackerError::Invalid(format!(
                "only CPU clients upload bundles; a {} client completes with a count",
                client.client_type
            )));
        }
        let key = staging::new_key(number);
        let commit = self.staging.commit_lock(number).await;
        if !upload_key::issue(&self.db, &client.token, number, &key).await? {
            return Err(not_held());
        }
        self.staging.cancel_receiving(number);
        let superseded = self
            .staging
            .delete_superseded(&self.db, number, &key)
            .await?;
        drop(commit);
        if superseded > 0 {
            self.metrics.add(&self.metrics.blobs_collected, superseded);
            tracing::debug!(number, superseded, "superseded bundles deleted");
        }
        let (put_url, expires_at_ms) = self.staging.put_url(&self.public_url, &key);
        Ok(UploadUrlResponse {
            put_url,
            key,
            expires_at_ms,
            max_bytes: self.staging.max_bytes(),
        })
    }

    /// `PUT /blobs/{key}` with a valid signature: stores the bundle.
    pub async fn put_blob<S, E>(
        &self,
        key: &str,
        expires: i64,
        signature: &str,
        body: S,
    ) -> Result<StoredBlob, TrackerError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + 'static,
    {
        self.staging.verify("PUT", key, expires, signature)?;
        let number = key_job(key).ok_or(StagingError::BadSignature)?;
        // Refused before the body is read, when that is already certain.
        self.storable(number, key).await?;
        let part = self.staging.receive(key, number, body).await?;
        let commit = self.staging.commit_lock(number).await;
        let stored = self.store(number, key, part).await;
        drop(commit);
        let (stored, new) = stored?;
        if new {
            self.metrics.add(&self.metrics.blobs_stored, 1);
            self.metrics.add(&self.metrics.blob_bytes, stored.size);
            tracing::info!(%key, size = stored.size, "bundle stored");
        } else {
            tracing::debug!(%key, "bundle sent again, already stored");
        }
        Ok(stored)
    }

    /// Under the job's commit lock: stores `part` as blob `key`, or answers a retry of the
    /// same bytes with the stored blob (`false`), or refuses.
    async fn store(
        &self,
        number: u64,
        key: &str,
        part: Part,
    ) -> Result<(StoredBlob, bool), TrackerError> {
        if let Err(error) = self.storable(number, key).await {
            self.staging.discard(part).await;
            return Err(error);
        }
        match self.staging.describe(&self.db, key).await? {
            None => Ok((
                self.staging.commit(&self.db, part, key, number).await?,
                true,
            )),
            Some((size, sha256)) if size == part.size && sha256 == part.sha256 => {
                self.staging.settle_retry(part, key).await?;
                let stored = StoredBlob {
                    key: key.to_owned(),
                    size,
                    sha256,
                };
                Ok((stored, false))
            }
            Some(_) => {
                self.staging.discard(part).await;
                Err(StagingError::Conflict(format!(
                    "blob {key} is already stored with other bytes and cannot be replaced"
                ))
                .into())
            }
        }
    }

    /// Whether a PUT to `key` may be stored: it is job `number`'s current upload key and the
    /// job is still being scraped (held in the CPU queue, not handed off).
    pub(super) async fn storable(&self, number: u64, key: &str) -> Result<(), TrackerError> {
        let state = upload_key::state(&self.db, number).await?;
        let Some(UploadState {
            key: current,
            scraping,
        }) = state
        else {
            return Err(StagingError::Conflict(format!("no job {number}")).into());
        };
        if !scraping {
            return Err(StagingError::Conflict(format!(
                "job {number} is not being scraped any more (its bundle was handed off, or its lease was lost): \
                 its bundle cannot be uploaded or replaced"
            ))
            .into());
        }
        if current.as_deref() != Some(key) {
            return Err(StagingError::Conflict(format!(
                "this upload url of job {number} was superseded by a newer one"
            ))
            .into());
        }
        Ok(())
    }

    /// A `blob:` handoff must name the bundle uploaded to this job's current upload key.
    pub(super) async fn check_handoff(
        &self,
        number: u64,
        bundle: &str,
    ) -> Result<(), TrackerError> {
        let Some(key) = bundle.strip_prefix("blob:") else {
            return Ok(());
        };
        if !staging::valid_key(key) || key_job(key) != Some(number) {
            return Err(TrackerError::Invalid(format!(
                "{bundle} is not a bundle of job {number}"
            )));
        }
        let current = upload_key::state(&self.db, number)
            .await?
            .and_then(|state| state.key);
        if current.as_deref() != Some(key) {
            return Err(TrackerError::Invalid(format!(
                "{bundle} is not the latest upload of job {number}: complete with the key of the last upload url"
            )));
        }
        if self.staging.describe(&self.db, key).await?.is_none() {
            return Err(TrackerError::Invalid(format!(
                "{bundle} was not uploaded: PUT it to the upload url first"
            )));
        }
        Ok(())
    }
}

/// The job number inside a `job-N-hex` key.
fn key_job(key: &str) -> Option<u64> {
    key.strip_prefix("job-")?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_names_its_job() {
        assert_eq!(super::key_job(&crate::staging::new_key(42)), Some(42));
        assert_eq!(super::key_job("job-x-1"), None);
        assert_eq!(super::key_job("other"), None);
    }
}
