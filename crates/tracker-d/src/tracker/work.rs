//! Claims, heartbeats and completions: the job lifecycle as clients drive it.

use cah_protocol::ClientType;
use cah_protocol::IdString;
use cah_protocol::bundle::is_forbidden_bundle_address;
use cah_protocol::ext;
use cah_protocol::legacy::{JobResponse, MarkAsDoneRequest};

use super::{Tracker, TrackerError};
use crate::clients::Client;
use crate::db::now_ms;
use crate::jobs::{self, ClaimedJob, Completion, Stage};

/// Longest handoff string a CPU completion may carry, in bytes: a `blob:` key, a 2021
/// `rsync <uuid>` or a URL. It is stored in the indexed `gpu_url` column and sent with every
/// GPU claim of the job; PostgreSQL refuses index entries over about 2.7 kB.
pub const MAX_HANDOFF_BYTES: usize = 2048;

impl Tracker {
    pub(super) fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// `/api/newJob`: releases what the client held, then claims one job of its stage.
    pub async fn legacy_new_job(&self, token: &str) -> Result<JobResponse, TrackerError> {
        let client = self.client(token, None).await?;
        let _claiming = self.claim_locks.lock(&client.token).await;
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

    /// `/api/ext/claim`: up to `max_jobs` jobs, or every open half of one WAT, within the cap
    /// on jobs held at once: a client at the cap gets an empty list, as when there is no work,
    /// and one near it gets fewer jobs (a single half of a WAT when one more fits).
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
        let _claiming = self.claim_locks.lock(&client.token).await;
        let held = jobs::held(&self.db, &client.token).await?.len();
        let room = u32::try_from(held).map_or(0, |held| {
            self.settings.max_jobs_per_client.saturating_sub(held)
        });
        if room == 0 {
            tracing::debug!(display_name = %client.display_name, held, "claim refused at the cap on held jobs");
            return Ok(Vec::new());
        }
        let stage = stage_of(client.client_type);
        let whole_wat = whole_wat && stage == Stage::Cpu;
        let claimed = if whole_wat && room >= 2 {
            jobs::claim_whole_wat(&self.db, &client.token, self.lease_until()).await?
        } else {
            // A whole-WAT claim with room for one more job takes one half.
            let max_jobs = if whole_wat { 1 } else { max_jobs.min(room) };
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
        // Only a scraper needs to know; a GPU job is always past a handoff.
        let scraped_before = job.scraped_before && job.gpu_url.is_none();
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
            scraped_before,
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
                let bundle = bundle.unwrap_or_default();
                let bundle = self.check_cpu_completion(client, number, bundle).await?;
                Completion::HandOff {
                    gpu_url: bundle.to_owned(),
                }
            }
            // The close applies only with a count the job can hold (see `jobs::pair_room`).
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
            return Err(self.refusal(client, number, &completion).await?);
        }
        self.count_completion(client, number, &completion);
        Ok(())
    }

    /// The bookkeeping of a completion that applied: the client's credit, metrics, a log line.
    pub(super) fn count_completion(&self, client: &Client, number: u64, completion: &Completion) {
        self.clients.credit(&client.token);
        match completion {
            Completion::HandOff { .. } => self.metrics.add(&self.metrics.handoffs, 1),
            Completion::Close { pairs, .. } => {
                self.metrics.add(&self.metrics.closes, 1);
                self.metrics.add(&self.metrics.pairs, *pairs);
            }
        }
        tracing::debug!(number, display_name = %client.display_name, "job completed");
    }

    /// Checks a CPU client's handoff of job `number` and returns the bundle string to store:
    /// within [`MAX_HANDOFF_BYTES`], of an allowed kind, for a job the client holds, and for a
    /// `blob:` the job's latest upload.
    pub(super) async fn check_cpu_completion<'b>(
        &self,
        client: &Client,
        number: u64,
        bundle: &'b str,
    ) -> Result<&'b str, TrackerError> {
        let bundle = bundle.trim();
        if bundle.is_empty() {
            return Err(TrackerError::Invalid(
                "a CPU completion needs the bundle's url".into(),
            ));
        }
        if bundle.len() > MAX_HANDOFF_BYTES {
            return Err(TrackerError::Invalid(format!(
                "the bundle's url is {} bytes, more than the limit of {MAX_HANDOFF_BYTES}",
                bundle.len()
            )));
        }
        self.check_external_handoff(bundle)?;
        // A job no longer held is a 409 whatever the bundle says.
        if !jobs::held(&self.db, &client.token).await?.contains(&number) {
            return Err(not_held(number));
        }
        self.check_handoff(number, bundle).await?;
        Ok(bundle)
    }

    /// Why a completion did not apply: a count the job cannot hold (400), else the job is not
    /// held (409, or 403 in the 2021 API).
    pub(super) async fn refusal(
        &self,
        client: &Client,
        number: u64,
        completion: &Completion,
    ) -> Result<TrackerError, TrackerError> {
        match completion {
            Completion::Close { pairs, .. } => {
                if let Some(room) = jobs::pair_room(&self.db, &client.token, number).await?
                    && *pairs > room
                {
                    return Ok(too_many_pairs(number, *pairs, room));
                }
            }
            Completion::HandOff { gpu_url } => {
                if gpu_url.starts_with("blob:")
                    && jobs::held(&self.db, &client.token).await?.contains(&number)
                {
                    return Ok(TrackerError::NotHeld(format!(
                        "{gpu_url} was superseded by a newer upload url of job {number} while it was handed off: \
                         upload to the newer url and complete with its key"
                    )));
                }
            }
        }
        Ok(not_held(number))
    }

    /// A handoff other than `blob:` points GPU clients somewhere else: refused unless
    /// `--external-bundles` allows it, and then only an http(s) URL or a 2021 `rsync <id>`.
    fn check_external_handoff(&self, bundle: &str) -> Result<(), TrackerError> {
        if bundle.starts_with("blob:") {
            return Ok(());
        }
        if !self.settings.external_bundles {
            return Err(TrackerError::Invalid(
                "this tracker takes only bundles uploaded to it: complete with the blob:<key> of an upload url \
                 (external handoffs need --external-bundles)"
                    .into(),
            ));
        }
        let rsync = bundle
            .strip_prefix("rsync ")
            .is_some_and(|id| !id.trim().is_empty());
        let web = url::Url::parse(bundle)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        if web.as_ref().is_some_and(names_link_local) {
            return Err(TrackerError::Invalid(
                "a bundle's url must not name a link-local or cloud metadata address \
                 (169.254.0.0/16, fe80::/10, fd00:ec2::254): GPU clients would fetch it"
                    .into(),
            ));
        }
        if rsync || web.is_some() {
            Ok(())
        } else {
            Err(TrackerError::Invalid(
                "a bundle's url must be blob:<key>, an http(s) url or a 2021 rsync <id>".into(),
            ))
        }
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
}

/// Whether `url`'s host is a link-local or cloud metadata address literal, which an external
/// handoff must not point GPU clients at (clip-gpu-d refuses them too, resolved names
/// included). Loopback and private addresses stay allowed: a swarm on one LAN may keep its
/// bundles there, and `--external-bundles` is for CPU clients the operator trusts.
fn names_link_local(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_forbidden_bundle_address(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_forbidden_bundle_address(ip.into()),
        _ => false,
    }
}

/// The CPU and HYBRID clients scrape; GPU clients score.
pub(crate) fn stage_of(client_type: ClientType) -> Stage {
    match client_type {
        ClientType::Hybrid | ClientType::Cpu => Stage::Cpu,
        ClientType::Gpu => Stage::Gpu,
    }
}

/// The job is no longer the client's (409, or 403 in the 2021 API).
fn not_held(number: u64) -> TrackerError {
    TrackerError::NotHeld(format!(
        "job {number} is not held by you: its lease expired or it was already completed"
    ))
}

/// A close whose count is more than the job's sample IDs: every pair carries one of them.
fn too_many_pairs(number: u64, pairs: u64, room: u64) -> TrackerError {
    TrackerError::Invalid(format!(
        "count {pairs} is more than job {number} can hold: it has {room} sample IDs, one per pair"
    ))
}
