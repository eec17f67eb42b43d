//! Claims, heartbeats, completions and bundle uploads: the job lifecycle as clients drive it.

use bytes::Bytes;
use cah_protocol::ClientType;
use cah_protocol::IdString;
use cah_protocol::ext::{self, StoredBlob, UploadUrlResponse};
use cah_protocol::legacy::{JobResponse, MarkAsDoneRequest};
use futures_util::Stream;

use super::{Tracker, TrackerError};
use crate::clients::Client;
use crate::db::now_ms;
use crate::jobs::{self, ClaimedJob, Completion, Stage};
use crate::staging;

impl Tracker {
    pub(super) fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// `/api/newJob`: releases what the client held, then claims one job of its stage.
    pub async fn legacy_new_job(&self, token: &str) -> Result<JobResponse, TrackerError> {
        let client = self.client(token, None).await?;
        jobs::release(&self.db, &client.token, None).await?;
        let claimed = jobs::claim(
            &self.db,
            &client.token,
            stage_of(client.client_type),
            1,
            self.lease_until(),
        )
        .await?;
        let job = claimed.into_iter().next().ok_or(TrackerError::NoJobs)?;
        self.metrics.add(&self.metrics.claims, 1);
        let url = match &job.gpu_url {
            Some(gpu_url) => self.bundle_location(gpu_url).await?.url,
            None => job.url.clone(),
        };
        Ok(JobResponse {
            url,
            start_id: IdString(job.start_id),
            end_id: IdString(job.end_id),
            shard: job.shard,
            number: job.number,
        })
    }

    /// `/api/ext/claim`: up to `max_jobs` jobs, or every open half of one WAT.
    pub async fn claim(
        &self,
        token: &str,
        max_jobs: u32,
        whole_wat: bool,
    ) -> Result<Vec<ext::Job>, TrackerError> {
        let client = self.client(token, None).await?;
        if max_jobs == 0 || max_jobs > 1000 {
            return Err(TrackerError::Invalid(
                "max_jobs must be between 1 and 1000".into(),
            ));
        }
        let stage = stage_of(client.client_type);
        let claimed = if whole_wat && stage == Stage::Cpu {
            jobs::claim_whole_wat(&self.db, &client.token, self.lease_until()).await?
        } else {
            jobs::claim(&self.db, &client.token, stage, max_jobs, self.lease_until()).await?
        };
        self.metrics.add(&self.metrics.claims, claimed.len() as u64);
        let mut handed = Vec::with_capacity(claimed.len());
        for job in claimed {
            handed.push(self.ext_job(job).await?);
        }
        Ok(handed)
    }

    async fn ext_job(&self, job: ClaimedJob) -> Result<ext::Job, TrackerError> {
        let bundle = match &job.gpu_url {
            Some(gpu_url) => Some(self.bundle_location(gpu_url).await?),
            None => None,
        };
        Ok(ext::Job {
            number: job.number,
            wat_url: job.url,
            shard: job.shard,
            start_id: job.start_id,
            end_id: job.end_id,
            lease_until_ms: job.lease_until,
            bundle,
        })
    }

    /// `/api/updateProgress` and `/api/ext/heartbeat`: renews every lease the client holds.
    ///
    /// The renewal is the client's touch, which the touch flush writes within a second (and
    /// always before the reaper judges leases), as it does for every other call; the held jobs
    /// come from memory ([`jobs::held`]), so a heartbeat usually costs the database nothing.
    pub async fn heartbeat(
        &self,
        token: &str,
        progress: &str,
    ) -> Result<ext::HeartbeatResponse, TrackerError> {
        let client = self.client(token, Some(progress)).await?;
        let lease_until = self.lease_until();
        let jobs = jobs::held(&self.db, &client.token).await?;
        self.metrics.add(&self.metrics.heartbeats, 1);
        Ok(ext::HeartbeatResponse {
            jobs,
            lease_until_ms: lease_until,
        })
    }

    /// `/api/markAsDone`: completes the client's (lowest-numbered) job.
    pub async fn legacy_mark_as_done(
        &self,
        request: &MarkAsDoneRequest,
    ) -> Result<(), TrackerError> {
        let client = self.client(&request.token, None).await?;
        let held = jobs::held(&self.db, &client.token).await?;
        let number = *held.first().ok_or_else(|| {
            TrackerError::NotHeld("you do not hold a job (it may have timed out)".into())
        })?;
        self.complete_as(&client, number, request.url.as_deref(), request.count)
            .await
    }

    /// `/api/ext/complete`.
    pub async fn complete(&self, request: &ext::CompleteRequest) -> Result<(), TrackerError> {
        let client = self.client(&request.token, None).await?;
        self.complete_as(
            &client,
            request.number,
            request.bundle.as_deref(),
            request.count,
        )
        .await
    }

    pub(super) async fn complete_as(
        &self,
        client: &Client,
        number: u64,
        bundle: Option<&str>,
        count: Option<u64>,
    ) -> Result<(), TrackerError> {
        let completion = match client.client_type {
            ClientType::Cpu => {
                let bundle = bundle.map(str::trim).filter(|bundle| !bundle.is_empty());
                let bundle = bundle.ok_or_else(|| {
                    TrackerError::Invalid("a CPU completion needs the bundle's url".into())
                })?;
                self.check_handoff(number, bundle).await?;
                Completion::HandOff {
                    gpu_url: bundle.to_owned(),
                }
            }
            ClientType::Hybrid | ClientType::Gpu => Completion::Close {
                stage: stage_of(client.client_type),
                pairs: count.ok_or_else(|| {
                    TrackerError::Invalid("a HYBRID or GPU completion needs a count".into())
                })?,
            },
        };
        let applied = jobs::complete(
            &self.db,
            &client.token,
            &client.nickname,
            number,
            &completion,
        )
        .await?;
        if !applied {
            return Err(TrackerError::NotHeld(format!(
                "job {number} is not held by you: its lease expired or it was already completed"
            )));
        }
        self.clients.credit(&client.token);
        match completion {
            Completion::HandOff { .. } => self.metrics.add(&self.metrics.handoffs, 1),
            Completion::Close { pairs, .. } => {
                self.metrics.add(&self.metrics.closes, 1);
                self.metrics.add(&self.metrics.pairs, pairs);
            }
        }
        tracing::debug!(number, display_name = %client.display_name, "job completed");
        Ok(())
    }

    /// A `blob:` handoff must name a bundle that was uploaded for this very job.
    async fn check_handoff(&self, number: u64, bundle: &str) -> Result<(), TrackerError> {
        let Some(key) = bundle.strip_prefix("blob:") else {
            return Ok(());
        };
        if !staging::valid_key(key) || key_job(key) != Some(number) {
            return Err(TrackerError::Invalid(format!(
                "{bundle} is not a bundle of job {number}"
            )));
        }
        if self.staging.describe(&self.db, key).await?.is_none() {
            return Err(TrackerError::Invalid(format!(
                "{bundle} was not uploaded: PUT it to the upload url first"
            )));
        }
        Ok(())
    }

    /// `/api/gpuInvalidDownload`: the client's GPU job goes back to be scraped again.
    pub async fn legacy_invalid(&self, token: &str) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        let held = jobs::held(&self.db, &client.token).await?;
        let number = *held
            .first()
            .ok_or_else(|| TrackerError::NotHeld("you do not hold a job".into()))?;
        self.invalid(&client.token, number, "legacy gpuInvalidDownload")
            .await
    }

    /// `/api/ext/invalid`.
    pub async fn invalid(
        &self,
        token: &str,
        number: u64,
        reason: &str,
    ) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        if !jobs::invalidate(&self.db, &client.token, number).await? {
            return Err(TrackerError::NotHeld(format!(
                "you do not hold GPU job {number}"
            )));
        }
        self.metrics.add(&self.metrics.invalid_bundles, 1);
        tracing::warn!(number, display_name = %client.display_name, reason = %reason.chars().take(200).collect::<String>(), "bundle reported invalid, job goes back to scraping");
        Ok(())
    }

    /// `/api/ext/release`.
    pub async fn release(&self, token: &str, number: u64) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        if jobs::release(&self.db, &client.token, Some(number)).await? == 0 {
            return Err(TrackerError::NotHeld(format!(
                "you do not hold job {number}"
            )));
        }
        Ok(())
    }

    /// `/api/ext/uploadUrl`: a signed PUT URL for a CPU job the client holds.
    pub async fn upload_url(
        &self,
        token: &str,
        number: u64,
    ) -> Result<UploadUrlResponse, TrackerError> {
        let client = self.client(token, None).await?;
        if !jobs::held(&self.db, &client.token).await?.contains(&number) {
            return Err(TrackerError::NotHeld(format!(
                "you do not hold job {number}"
            )));
        }
        let key = staging::new_key(number);
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
        E: std::fmt::Display,
    {
        self.staging.verify("PUT", key, expires, signature)?;
        let number = key_job(key).ok_or(staging::StagingError::BadSignature)?;
        let stored = self.staging.store(&self.db, key, number, body).await?;
        self.metrics.add(&self.metrics.blobs_stored, 1);
        self.metrics.add(&self.metrics.blob_bytes, stored.size);
        tracing::info!(%key, size = stored.size, "bundle stored");
        Ok(stored)
    }
}

/// The CPU and HYBRID clients scrape; GPU clients score.
pub(crate) fn stage_of(client_type: ClientType) -> Stage {
    match client_type {
        ClientType::Hybrid | ClientType::Cpu => Stage::Cpu,
        ClientType::Gpu => Stage::Gpu,
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
