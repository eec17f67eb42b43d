//! Leased jobs through the extension API: claim, heartbeat, complete, release, report a bundle
//! or a WAT invalid.

use cah_protocol::ext::{
    ClaimRequest, ClaimResponse, CompleteRequest, HeartbeatRequest, HeartbeatResponse,
    InvalidRequest, Job, JobRequest,
};

use crate::completion::{Completion, JobOutput};
use crate::endpoint;
use crate::error::TrackerError;
use crate::session::{Session, completion};

impl Session {
    /// `POST /api/ext/claim`: claims up to `max_jobs` jobs (at least 1), each with its own lease;
    /// `whole_wat` asks for every open half of one WAT at once. An empty list means no work now.
    ///
    /// Retried on transient failures. If an attempt's answer was lost after the tracker
    /// applied it, the jobs it claimed stay held by this client and appear in the next
    /// [`heartbeat`](Self::heartbeat)'s `jobs`: release any number there that the caller does
    /// not know, or they are renewed with the others until the client goes away.
    pub async fn claim(&self, max_jobs: u32, whole_wat: bool) -> Result<Vec<Job>, TrackerError> {
        let request = ClaimRequest {
            token: self.token().to_owned(),
            max_jobs: max_jobs.max(1),
            whole_wat,
        };
        let response: ClaimResponse = self
            .client()
            .post_json(&endpoint::EXT_CLAIM, &request)
            .await?;
        Ok(response.jobs)
    }

    /// `POST /api/ext/heartbeat`: renews the leases of every job this client holds and lists
    /// them. A job missing from the list was lost (its lease expired): stop working on it.
    pub async fn heartbeat(&self, progress: &str) -> Result<HeartbeatResponse, TrackerError> {
        let request = HeartbeatRequest {
            token: self.token().to_owned(),
            progress: progress.to_owned(),
        };
        self.client()
            .post_json(&endpoint::EXT_HEARTBEAT, &request)
            .await
    }

    /// `POST /api/ext/complete`: completes job `number` with the worker's output.
    ///
    /// [`TrackerError::Conflict`] (409) when this client does not hold the job: its lease was
    /// lost, or it is already completed. See [`Completion`] for a conflict that answers a retry.
    pub async fn complete(
        &self,
        number: u64,
        output: JobOutput,
    ) -> Result<Completion, TrackerError> {
        let (bundle, count) = match output {
            JobOutput::Bundle(bundle) => (Some(bundle), None),
            JobOutput::Pairs(count) => (None, Some(count)),
        };
        let request = CompleteRequest {
            token: self.token().to_owned(),
            number,
            bundle,
            count,
        };
        let reply = self
            .client()
            .post(&endpoint::EXT_COMPLETE, &request)
            .await?;
        Ok(completion(reply))
    }

    /// `POST /api/ext/release`: gives job `number` back untouched, for another worker.
    ///
    /// A conflict that answers a retry counts as success: the job is not held any more.
    pub async fn release(&self, number: u64) -> Result<(), TrackerError> {
        let request = JobRequest {
            token: self.token().to_owned(),
            number,
        };
        self.client()
            .post(&endpoint::EXT_RELEASE, &request)
            .await
            .map(drop)
    }

    /// `POST /api/ext/invalid` from a GPU client: the bundle of GPU job `number` is unusable,
    /// for `reason`; the job goes back to the CPU queue to be scraped again.
    ///
    /// The same call from a CPU or HYBRID client reports the job's WAT instead: see
    /// [`report_broken_wat`](Self::report_broken_wat), the name to use there. The tracker
    /// tells the two meanings apart by the client's type.
    ///
    /// A conflict that answers a retry counts as success, as for [`release`](Self::release).
    pub async fn report_invalid(&self, number: u64, reason: &str) -> Result<(), TrackerError> {
        let request = InvalidRequest {
            token: self.token().to_owned(),
            number,
            reason: reason.to_owned(),
        };
        self.client()
            .post(&endpoint::EXT_INVALID, &request)
            .await
            .map(drop)
    }

    /// `POST /api/ext/invalid` from a CPU or HYBRID client: the WAT of CPU job `number` can
    /// never be used (it holds no WARC record, it is cut inside a gzip member, it is too large,
    /// or its URL answers 404 or 410), for `reason` (short: the tracker keeps 200 characters).
    ///
    /// tracker-d counts the report and puts the job behind every other open job; after
    /// `--max-wat-failures` reports (default 3) the job fails for good and is never handed out
    /// again. Use it only for a failure that another attempt cannot fix; [`release`](Self::release)
    /// the job for anything else (a timeout, a 5xx, a stop).
    ///
    /// A tracker without this meaning (before it, `invalid` took only GPU jobs) answers
    /// [`TrackerError::Conflict`]: release the job then. A conflict that answers a retry counts
    /// as success, as for [`release`](Self::release).
    pub async fn report_broken_wat(&self, number: u64, reason: &str) -> Result<(), TrackerError> {
        self.report_invalid(number, reason).await
    }
}
