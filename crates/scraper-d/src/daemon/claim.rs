//! Works one claim (both halves of a WAT): extract, download, bundle, upload, complete; a
//! heartbeat task alongside; a WAT broken for good reported (see `broken_wat.rs`); a node that
//! cannot download releases the claim (see `broken_node.rs`); on a stop, the grace period,
//! then the unfinished jobs released.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cah_protocol::ext::{Job, StoredBlob};
use cah_tracker_client::{BundleBody, Completion, JobOutput, Session, TrackerError};

use super::broken_node::BrokenNode;
use super::broken_wat::{self, BrokenWat, WatError};
use super::heartbeat::{Held, heartbeat_loop, is_lost, lease_lost};
use super::progress::Progress;
use crate::candidates::SkipReason;
use crate::config::RunConfig;
use crate::extract::{DEFAULT_MAX_RECORD_BYTES, ExtractConfig, Extractor};
use crate::job::{HalfOutput, Pipeline};
use crate::metrics::Metrics;
use crate::shutdown::{AbortOnDrop, Stop};
use crate::stats::ResolverStrain;
use crate::{Candidate, HalfJob, bundle, source, systemd};

/// How long the releases of a stop may take together: the tracker client retries for up to two
/// minutes, and systemd kills the unit 30 s after SIGTERM (20 s of grace, these 4 s, then 5 s
/// for the goodbye). Past it the leases expire on their own.
const RELEASE_DEADLINE: Duration = Duration::from_secs(4);

/// Hands `numbers` back to the tracker, all at once, within [`RELEASE_DEADLINE`].
pub(super) async fn release(session: &Session, numbers: &[u64]) {
    if numbers.is_empty() {
        return;
    }
    let releases = futures_util::future::join_all(
        numbers
            .iter()
            .map(|&number| async move { (number, session.release(number).await) }),
    );
    match tokio::time::timeout(RELEASE_DEADLINE, releases).await {
        Ok(results) => {
            for (number, result) in results {
                match result {
                    Ok(()) => tracing::info!(job = number, "job released"),
                    Err(error) => {
                        tracing::warn!(job = number, error = %error, "release failed, the lease will expire")
                    }
                }
            }
        }
        Err(_) => tracing::warn!(
            jobs = ?numbers,
            deadline_ms = RELEASE_DEADLINE.as_millis() as u64,
            "the tracker did not answer the releases in time, the leases will expire"
        ),
    }
}

/// What became of the jobs of one claim.
#[derive(Debug, Default)]
pub struct ClaimOutcome {
    pub completed: Vec<u64>,
    pub released: Vec<u64>,
    /// Jobs whose WAT can never be used, reported as such to the tracker.
    pub reported: Vec<u64>,
    pub lost: Vec<u64>,
    /// The claim failed (its unfinished jobs were released or reported): the next claim waits.
    pub failed: bool,
}

pub(crate) struct Worker<'a> {
    pub(crate) config: &'a RunConfig,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) wat_client: &'a reqwest::Client,
    pub(crate) stop: &'a Stop,
    pub(crate) metrics: &'a Metrics,
}

impl Worker<'_> {
    pub(crate) async fn work(&self, session: &Session, jobs: Vec<Job>) -> ClaimOutcome {
        let numbers: Vec<u64> = jobs.iter().map(|job| job.number).collect();
        tracing::info!(jobs = ?numbers, wat = %jobs[0].wat_url, "claimed");
        let held = Arc::new(Mutex::new(Held {
            open: numbers.iter().copied().collect(),
            lost: HashSet::new(),
            completing: HashSet::new(),
        }));
        let progress = Arc::new(Progress::new(&self.config.node_name));
        // Aborted on drop too, so a cancelled run (a crash in tests) stops renewing leases.
        let heartbeat = AbortOnDrop(tokio::spawn(heartbeat_loop(
            session.clone(),
            progress.clone(),
            held.clone(),
            self.config.heartbeat_interval,
        )));
        let mut outcome = ClaimOutcome::default();
        let work = self.work_jobs(session, &jobs, &progress, &held, &mut outcome);
        let stopped = async {
            self.stop.wait().await;
            tracing::info!(
                grace_ms = self.config.shutdown_grace.as_millis() as u64,
                "finishing the current jobs before exiting"
            );
            tokio::time::sleep(self.config.shutdown_grace).await;
        };
        let finished = tokio::select! {
            result = work => {
                if let Err(error) = result {
                    let local = error.chain().any(|cause| {
                        matches!(cause.downcast_ref(), Some(bundle::BundleError::Io { .. }))
                    });
                    if let Some(broken) = error.downcast_ref::<BrokenNode>() {
                        self.report_broken_node(broken);
                    } else if local {
                        tracing::error!(
                            error = %format_args!("{error:#}"),
                            work_dir = %self.config.work_dir.display(),
                            "cannot write bundles: free space in the work folder or fix its permissions (--work-dir, SCRAPER_WORK_DIR)"
                        );
                    } else {
                        tracing::warn!(error = %format_args!("{error:#}"), "claim failed");
                    }
                    outcome.failed = true;
                }
                true
            }
            _ = stopped => false,
        };
        drop(heartbeat);
        if !finished {
            tracing::warn!("grace period over, releasing the unfinished jobs");
        }
        let (open, lost) = match held.lock() {
            Ok(held) => (held.open.clone(), held.lost.clone()),
            Err(_) => (HashSet::new(), HashSet::new()),
        };
        // Jobs released on their own (a refused upload) are no longer open.
        let mut unfinished = Vec::new();
        for number in numbers {
            if outcome.completed.contains(&number) {
                continue;
            }
            if lost.contains(&number) {
                outcome.lost.push(number);
            } else if open.contains(&number) {
                unfinished.push(number);
            }
            bundle::discard(&self.bundle_path(number));
        }
        release(session, &unfinished).await;
        outcome.released.extend(unfinished);
        outcome
    }

    /// What the operator of a node that cannot download anything must check.
    fn report_broken_node(&self, broken: &BrokenNode) {
        let nameservers = &self.config.resolver.nameservers;
        let resolver = if nameservers.is_empty() {
            "the system's (/etc/resolv.conf)".to_owned()
        } else {
            nameservers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        tracing::error!(
            job = broken.job,
            attempts = broken.attempts,
            resolver_error = broken.resolver_error,
            connect_failure = broken.connect_failure,
            timeout = broken.timeout,
            dns_failure = broken.dns_failure,
            private_address = broken.private_address,
            same_answer = broken.same_answer,
            same_answer_hosts = broken.same_answer_hosts,
            nameservers = %resolver,
            timeout_ms = self.config.fetch.timeout.as_millis() as u64,
            "this node cannot download images: no image stored and nearly every download failed on the node's side \
             or got no usable address from its resolver, or every host sent the same page; check its resolver \
             (--nameserver, SCRAPER_NAMESERVERS: one that says NXDOMAIN or 0.0.0.0 for every name filters or does not \
             recurse), its network and firewall (a captive portal, a filtering proxy or a sinkhole answers every name \
             with one page: curl -v http://example.com/ on the node shows it), and --timeout (SCRAPER_TIMEOUT); \
             the claim's jobs are released and their pairs not marked as scraped"
        );
    }

    fn bundle_path(&self, number: u64) -> std::path::PathBuf {
        self.config.work_dir.join(format!("job-{number}.tar"))
    }

    async fn work_jobs(
        &self,
        session: &Session,
        jobs: &[Job],
        progress: &Progress,
        held: &Mutex<Held>,
        outcome: &mut ClaimOutcome,
    ) -> anyhow::Result<()> {
        let first = jobs[0].number;
        progress.set(format!("job {first} extracting"), 0);
        let mut by_half = match self.extract(jobs).await {
            Ok(by_half) => by_half,
            Err(WatError::Broken(broken)) => {
                broken_wat::report(session, &broken, held, outcome).await;
                return Err(broken.into());
            }
            Err(WatError::Other(error)) => return Err(error),
        };
        for job in jobs {
            let number = job.number;
            if is_lost(held, number) {
                continue;
            }
            let candidates = by_half.remove(&job.shard).unwrap_or_default();
            let candidates = self.drop_seen(session, job, candidates).await;
            let hashes: Vec<u64> = candidates.iter().map(|c| c.pair_hash).collect();
            progress.set(format!("job {number} downloading"), candidates.len() as u64);
            systemd::status(&progress.text());
            let path = self.bundle_path(number);
            let download = self
                .pipeline
                .run_half(number, candidates, &path, progress.done.clone());
            let half = tokio::select! {
                half = download => {
                    half.with_context(|| format!("failed to write the bundle of job {number}"))?
                }
                () = lease_lost(held, number) => {
                    // Its downloads (up to an hour) would be thrown away at the upload.
                    tracing::warn!(job = number, "lease lost, stopping the job's downloads");
                    bundle::discard(&path);
                    continue;
                }
            };
            self.metrics.record_half(&half.outcomes);
            if let Some(broken) = BrokenNode::diagnose(number, &half.outcomes, half.failed_hosts) {
                // The other half would fail the same way: the whole claim goes back.
                bundle::discard(&half.bundle);
                return Err(broken.into());
            }
            if let Some(strain) = ResolverStrain::of(&half.outcomes) {
                strain.warn(Some(number));
            }
            if is_lost(held, number) {
                tracing::warn!(
                    job = number,
                    "lease lost before upload, dropping the bundle"
                );
                continue;
            }
            progress.set(format!("job {number} uploading"), 0);
            let (stored, completion) = match deliver(session, number, &half, held, progress).await {
                Ok(delivered) => delivered,
                Err(TrackerError::Io { path, cause }) => {
                    // The bundle on disk could not be read: a local fault, as when writing it.
                    bundle::discard(&half.bundle);
                    return Err(bundle::BundleError::Io { path, cause })
                        .with_context(|| format!("failed to upload the bundle of job {number}"));
                }
                Err(error) => {
                    // The tracker refused this half only: give it back and go on with the other,
                    // already extracted.
                    tracing::warn!(
                        job = number,
                        error = %error,
                        "upload or completion failed, releasing the job"
                    );
                    bundle::discard(&half.bundle);
                    if let Ok(mut held) = held.lock() {
                        held.open.remove(&number);
                    }
                    release(session, &[number]).await;
                    outcome.released.push(number);
                    outcome.failed = true;
                    continue;
                }
            };
            tracing::info!(
                job = number,
                candidates = half.stats.candidates,
                stored = half.stats.stored,
                bytes = stored.size,
                completion = ?completion,
                "job completed"
            );
            self.metrics.jobs_completed.inc();
            if self.config.tracker_dedup
                && let Err(error) = crate::dedup::record_with_tracker(session, &hashes).await
            {
                tracing::warn!(job = number, error = %error, "could not add the job's pairs to the tracker's parsed set");
            }
            if let Ok(mut held) = held.lock() {
                held.open.remove(&number);
            }
            outcome.completed.push(number);
            bundle::discard(&half.bundle);
        }
        Ok(())
    }

    /// Without the pairs other jobs already scraped (when tracker dedup is on); on a tracker
    /// failure, every candidate, since clip-gpu-d's `main` set still drops duplicates.
    ///
    /// A job the tracker says was scraped before (its bundle was reported invalid, or an admin
    /// reset it) keeps every candidate: `parsed` holds its own pairs from that scrape, which
    /// the check cannot tell from other jobs' pairs, so checking would drop the whole job.
    async fn drop_seen(
        &self,
        session: &Session,
        job: &Job,
        candidates: Vec<Candidate>,
    ) -> Vec<Candidate> {
        let number = job.number;
        if !self.config.tracker_dedup || candidates.is_empty() {
            return candidates;
        }
        if job.scraped_before {
            tracing::info!(
                job = number,
                candidates = candidates.len(),
                "job scraped before, keeping the pairs the tracker's parsed set holds"
            );
            return candidates;
        }
        let hashes: Vec<u64> = candidates.iter().map(|c| c.pair_hash).collect();
        match crate::dedup::unseen_by_tracker(session, &hashes).await {
            Ok(unseen) => {
                let before = candidates.len();
                let kept: Vec<Candidate> = candidates
                    .into_iter()
                    .zip(unseen)
                    .filter_map(|(candidate, new)| new.then_some(candidate))
                    .collect();
                let seen = before - kept.len();
                if seen > 0 {
                    tracing::info!(
                        job = number,
                        seen,
                        kept = kept.len(),
                        "skipping pairs other jobs scraped"
                    );
                }
                self.metrics.seen_by_tracker.add(seen as u64);
                kept
            }
            Err(error) => {
                tracing::warn!(job = number, error = %error, "tracker dedup failed, keeping every candidate");
                candidates
            }
        }
    }

    /// Extracts the candidates of every claimed half in one pass over the WAT.
    async fn extract(&self, jobs: &[Job]) -> Result<BTreeMap<u8, Vec<Candidate>>, WatError> {
        let halves = jobs
            .iter()
            .map(HalfJob::from_job)
            .collect::<Result<Vec<_>, _>>()
            .context("the job's half is invalid")?;
        let extract_config = ExtractConfig {
            halves,
            filters: self.config.filters.clone(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        };
        let url = url::Url::parse(&jobs[0].wat_url).context("the job's wat url is invalid")?;
        let runtime = tokio::runtime::Handle::current();
        let reader = source::spawn_download(
            &runtime,
            self.wat_client.clone(),
            url,
            self.config.wat_http.clone(),
        );
        let extracted = tokio::task::spawn_blocking(move || {
            let mut extractor = Extractor::new(reader, extract_config)?.stop_when_ids_exhausted();
            let candidates = extractor.by_ref().collect::<Result<Vec<_>, _>>()?;
            Ok::<_, crate::ScraperError>((candidates, extractor.into_counts()))
        })
        .await
        .context("the extraction task failed")?;
        let wat_url = jobs[0].wat_url.clone();
        let (candidates, counts) =
            extracted.map_err(|error| WatError::of_extraction(&wat_url, error))?;
        let gzip_truncated = counts.skipped(SkipReason::GzipTruncated);
        tracing::info!(
            candidates = candidates.len(),
            records = counts.records,
            bytes = counts.bytes_compressed,
            resumes = counts.resumes,
            gzip_truncated,
            gzip_corrupt = counts.skipped(SkipReason::GzipCorrupt),
            gzip_garbage = counts.skipped(SkipReason::GzipGarbage),
            truncated_record = counts.skipped(SkipReason::TruncatedRecord),
            bad_warc_header = counts.skipped(SkipReason::BadWarcHeader),
            "wat extracted"
        );
        let bytes = counts.bytes_compressed;
        if counts.records == 0 {
            return Err(BrokenWat::NotAWat {
                url: wat_url,
                bytes,
            }
            .into());
        }
        if gzip_truncated > 0 {
            return Err(BrokenWat::Truncated {
                url: wat_url,
                bytes,
            }
            .into());
        }
        let mut by_half: BTreeMap<u8, Vec<Candidate>> = BTreeMap::new();
        for candidate in candidates {
            by_half.entry(candidate.half).or_default().push(candidate);
        }
        Ok(by_half)
    }
}

/// Uploads a half's bundle (waiting out a full store) and completes its job.
async fn deliver(
    session: &Session,
    number: u64,
    half: &HalfOutput,
    held: &Mutex<Held>,
    progress: &Progress,
) -> Result<(StoredBlob, Completion), TrackerError> {
    let target = session.upload_url(number).await?;
    let stored = super::upload::through_a_full_store(number, || async {
        if is_lost(held, number) {
            return Err(TrackerError::Conflict(format!(
                "lease of job {number} lost while the tracker's bundle store was full"
            )));
        }
        session
            .upload_bundle_once_if_full(&target, BundleBody::File(half.bundle.clone()))
            .await
    })
    .await?;
    if let Ok(mut held) = held.lock() {
        held.completing.insert(number);
    }
    progress.set(format!("job {number} completing"), 0);
    let completion = session
        .complete(number, JobOutput::Bundle(format!("blob:{}", target.key)))
        .await;
    if completion.is_err()
        && let Ok(mut held) = held.lock()
    {
        held.completing.remove(&number);
    }
    Ok((stored, completion?))
}
