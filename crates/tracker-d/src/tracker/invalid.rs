//! `/api/ext/invalid`: a GPU client's bundle, or a CPU client's WAT, cannot be used.

use super::{Tracker, TrackerError, clean_label};
use crate::clients::Client;
use crate::jobs::{self, Stage, broken::MAX_FAILURE_REASON_CHARS};

impl Tracker {
    /// `/api/gpuInvalidDownload`: the client's GPU job goes back to be scraped again. Only the
    /// GPU meaning: a 2021 CPU client calling it holds no GPU job.
    pub async fn legacy_invalid(&self, token: &str) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        let held = jobs::held(&self.db, &client.token).await?;
        let number = *held
            .first()
            .ok_or_else(|| TrackerError::NotHeld("you do not hold a job".into()))?;
        self.invalid_bundle(&client, number, "legacy gpuInvalidDownload")
            .await
    }

    /// `/api/ext/invalid`: from a GPU client, the bundle of its job `number` cannot be used;
    /// from a CPU or HYBRID client, the WAT of its job `number` cannot be used.
    pub async fn invalid(
        &self,
        token: &str,
        number: u64,
        reason: &str,
    ) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        let reason = clean_label(reason, MAX_FAILURE_REASON_CHARS);
        match super::work::stage_of(client.client_type) {
            Stage::Gpu => self.invalid_bundle(&client, number, &reason).await,
            Stage::Cpu => self.broken_wat(&client, number, &reason).await,
        }
    }

    /// The job goes back to the CPU queue to be scraped again: the bundle is what was broken.
    async fn invalid_bundle(
        &self,
        client: &Client,
        number: u64,
        reason: &str,
    ) -> Result<(), TrackerError> {
        // A CPU client that is cached has its handoff's credit still unwritten, or written by
        // a flush: either way the cache takes it back and the next flush writes that.
        let cached = |token: &str| self.clients.contains(token);
        let Some(invalidated) =
            jobs::invalidate(&self.db, &client.token, number, |token| !cached(token)).await?
        else {
            return Err(TrackerError::NotHeld(format!(
                "you do not hold GPU job {number}"
            )));
        };
        if let (false, Some(cpu_holder)) = (
            invalidated.holder_uncredited,
            invalidated.cpu_holder.as_deref(),
        ) {
            self.clients.uncredit(cpu_holder);
        }
        self.metrics.add(&self.metrics.invalid_bundles, 1);
        let cpu_completor = invalidated.cpu_completor.as_deref().unwrap_or_default();
        tracing::warn!(number, display_name = %client.display_name, %cpu_completor, reason = %reason, "bundle reported invalid, job goes back to scraping and its handoff loses its credit");
        Ok(())
    }

    /// The job goes behind every other open CPU job, or fails for good at
    /// `--max-wat-failures` reports (see [`jobs::broken`]).
    async fn broken_wat(
        &self,
        client: &Client,
        number: u64,
        reason: &str,
    ) -> Result<(), TrackerError> {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        let max_failures = u64::from(self.settings.max_wat_failures);
        let Some(reported) =
            jobs::broken::report(&self.db, &client.token, number, reason, max_failures).await?
        else {
            return Err(TrackerError::NotHeld(format!(
                "you do not hold CPU job {number}: its lease expired or it was already completed"
            )));
        };
        self.metrics.add(&self.metrics.broken_wat_reports, 1);
        if reported.failed {
            self.metrics.add(&self.metrics.jobs_failed, 1);
            tracing::warn!(number, url = %reported.url, failures = reported.failures, display_name = %client.display_name, reason = %reason, "wat cannot be used, job failed for good: reset it with POST /admin/reset-job once the file is fixed");
        } else {
            tracing::warn!(number, url = %reported.url, failures = reported.failures, max_failures, display_name = %client.display_name, reason = %reason, "wat reported unusable, job goes behind every other open job");
        }
        Ok(())
    }
}
