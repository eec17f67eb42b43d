//! The committer: dedups scored jobs through the tracker, writes kept pairs into shards, and
//! completes each job only once the shard holding its last pair is visible (for the S3
//! output: uploaded, stats object last).
//!
//! `clipped` gets every scored pair at once. `main` is only *checked* when a job's pairs are
//! written and only *added to* once their shard is visible (before its jobs complete), so a
//! crash never leaves hashes in `main` whose pairs are in no visible shard; within the open
//! shard a local set stops duplicates between jobs.
//!
//! A job waiting in the open shard keeps its `--max-jobs` permit, so the memory and the tracker
//! leases the daemon holds stay bounded by `--max-jobs`. When every permit is held by such a
//! job, nothing else is downloading or being scored and the claimer cannot claim: the open shard
//! is then closed at once, however short, instead of idling until `--flush-interval`.
//!
//! A job the tracker took back (see `holdings`) is never completed, and its pairs never become
//! visible through this daemon: another daemon may hold the job now and write them too. They
//! are dropped if they are not written yet, and taken back out of the open shard if they are
//! (checked before each job is added and, after a heartbeat, before the shard closes). Only
//! pairs in shards already closed stay; their hashes are in `main`, so the re-issued copy of
//! the job finds them as duplicates.
//!
//! When `main` refuses a visible shard's hashes, its jobs still complete and the hashes wait in
//! the `main_backlog`, added again at later commits and at the drain.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use cah_protocol::ext::DedupSet;
use cah_tracker_client::{JobOutput, TrackerError};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Config;
use super::holdings::Claim;
use super::jobs::renew_leases;
use super::liveness::{Liveness, Stage as Watched};
use super::main_backlog::MainBacklog;
use super::registration::Registration;
use crate::metrics::{Metrics, Stage};
use crate::output::s3::{S3Error, ShardBucket};
use crate::shard::{self, FinishedShard, KeptPair, Recovery, ShardFormat, ShardWriter};

/// The first pause after a failed shard upload, and the longest.
const UPLOAD_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
const UPLOAD_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// A scored job on its way to the dataset.
#[derive(Debug)]
pub(super) struct JobResult {
    pub(super) claim: Claim,
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) n_samples: usize,
    pub(super) scored_hashes: Vec<u64>,
    pub(super) kept: Vec<KeptPair>,
    pub(super) below_threshold: u64,
    pub(super) undecodable: u64,
    pub(super) dropped: BTreeMap<&'static str, u64>,
}

/// A job whose pairs sit in the open shard.
#[derive(Debug)]
struct Waiting {
    claim: Claim,
    kept: u64,
    last_shard: u32,
    _permit: OwnedSemaphorePermit,
}

pub(super) struct Committer {
    registration: Arc<Registration>,
    shard_dir: std::path::PathBuf,
    /// The S3 output, when shards are uploaded from `shard_dir`.
    bucket: Option<ShardBucket>,
    writer: Option<ShardWriter>,
    open_hashes: HashSet<u64>,
    /// Visible shards whose hashes `main` has not taken yet.
    main_backlog: MainBacklog,
    waiting: Vec<Waiting>,
    /// `--max-jobs`: the permits there are, each held by a job in flight or in `waiting`.
    max_jobs: usize,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    /// Cancelled at the drain deadline: stops retrying an upload.
    abandon: CancellationToken,
}

impl JobResult {
    pub(super) fn new(claim: Claim, permit: OwnedSemaphorePermit, n_samples: usize) -> Self {
        Self {
            claim,
            permit,
            n_samples,
            scored_hashes: Vec::new(),
            kept: Vec::new(),
            below_threshold: 0,
            undecodable: 0,
            dropped: BTreeMap::new(),
        }
    }
}

impl Committer {
    /// Uploads and commits the shards a crash left unfinished, then opens the next shard.
    pub(super) async fn start(
        config: &Config,
        registration: Arc<Registration>,
        recovery: Recovery,
        bucket: Option<ShardBucket>,
        (metrics, liveness): (Arc<Metrics>, Arc<Liveness>),
        abandon: CancellationToken,
    ) -> anyhow::Result<Self> {
        let format = ShardFormat {
            shard_size: config.shard_size,
            tfrecord: config.tfrecord,
            embedding_dtype: config.embedding_dtype,
        };
        let mut committer = Self {
            registration,
            shard_dir: config.shard_dir.clone(),
            bucket,
            writer: Some(ShardWriter::new(
                &config.shard_dir,
                format,
                recovery.next_number,
            )),
            open_hashes: HashSet::new(),
            main_backlog: MainBacklog::default(),
            waiting: Vec::new(),
            max_jobs: config.max_jobs as usize,
            metrics,
            liveness,
            abandon,
        };
        if committer.bucket.is_some() {
            // Complete in the spool and committed, but not (fully) uploaded.
            for number in &recovery.complete {
                if !recovery
                    .uncommitted
                    .iter()
                    .any(|shard| shard.number == *number)
                {
                    committer.publish(*number).await?;
                }
            }
        }
        for finished in recovery.uncommitted {
            info!(
                shard = finished.number,
                n_pairs = finished.hashes.len(),
                "committing a shard left by a crash"
            );
            committer.commit(finished).await?;
        }
        Ok(committer)
    }

    pub(super) fn open_rows(&self) -> usize {
        self.writer.as_ref().map_or(0, ShardWriter::open_rows)
    }

    /// Dedups a scored job, writes its new pairs, and completes it when they are visible; drops
    /// it when the tracker took it back meanwhile.
    pub(super) async fn add_job(&mut self, result: JobResult) -> anyhow::Result<()> {
        let _busy = self.liveness.busy(Watched::Commit);
        let number = result.claim.number;
        if !self.registration.holdings.is_held(result.claim) {
            info!(
                job = number,
                n_kept = result.kept.len(),
                "job lost to the tracker while it was scored; its pairs are dropped"
            );
            return Ok(());
        }
        // Pairs of this job's earlier claim must leave the open shard before the dedup below;
        // when this job fills the shard, the leases are checked first.
        let fills = result.kept.len() >= self.room();
        self.take_out_lost(fills).await?;
        let scored = &result.scored_hashes;
        if let Err(error) = self
            .registration
            .call(|session| async move { session.dedup(DedupSet::Clipped, scored, true).await })
            .await
        {
            warn!(job = number, error = %error, "failed to add scored pairs to the clipped set");
        }
        let hashes: Vec<u64> = result.kept.iter().map(|pair| pair.hash).collect();
        let new = if hashes.is_empty() {
            Vec::new()
        } else {
            let hashes = &hashes;
            match self
                .registration
                .call(|session| async move { session.dedup(DedupSet::Main, hashes, false).await })
                .await
            {
                Ok(new) => new,
                Err(error) => {
                    warn!(job = number, error = %error, "main dedup check failed; keeping every pair");
                    vec![true; hashes.len()]
                }
            }
        };
        let n_kept_before_dedup = result.kept.len();
        let mut fresh = Vec::new();
        for (pair, is_new) in result.kept.into_iter().zip(new) {
            if is_new
                && !self.main_backlog.contains(pair.hash)
                && self.open_hashes.insert(pair.hash)
            {
                fresh.push(pair);
            }
        }
        let kept = fresh.len() as u64;
        Metrics::add(&self.metrics.pairs_kept, kept);
        Metrics::add(
            &self.metrics.pairs_duplicate,
            n_kept_before_dedup as u64 - kept,
        );
        info!(
            job = number,
            n_samples = result.n_samples,
            below_threshold = result.below_threshold,
            undecodable = result.undecodable,
            dropped = ?result.dropped,
            duplicates = n_kept_before_dedup as u64 - kept,
            kept,
            "job scored"
        );
        if fresh.is_empty() {
            self.complete(result.claim, 0).await;
            return Ok(());
        }
        let (finished, open_rows, open_number, failed) = self
            .with_writer(move |writer| {
                let mut finished = Vec::new();
                let mut failed = None;
                for pair in fresh {
                    match writer.push(pair) {
                        Ok(shard) => finished.extend(shard),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
                Ok((finished, writer.open_rows(), writer.number(), failed))
            })
            .await?;
        if let Some(error) = failed {
            // Shards this job filled before the failure are visible: they are committed (their
            // hashes reach `main`) before the error stops the daemon and its jobs go back, or
            // the daemon that gets this job next would write those pairs a second time.
            for shard in finished {
                self.commit(shard).await?;
            }
            return Err(error.into());
        }
        let last_shard = if open_rows > 0 {
            open_number
        } else {
            open_number.saturating_sub(1)
        };
        self.waiting.push(Waiting {
            claim: result.claim,
            kept,
            last_shard,
            _permit: result.permit,
        });
        for shard in finished {
            self.commit(shard).await?;
        }
        debug_assert!(self.waiting.len() <= self.max_jobs, "one permit per job");
        if self.waiting.len() >= self.max_jobs {
            // Every permit waits on this shard: no job is in flight and none can be claimed.
            info!(
                n_jobs = self.waiting.len(),
                n_pairs = self.open_rows(),
                "every held job waits in the open shard; closing it early"
            );
            self.flush().await?;
        }
        Ok(())
    }

    /// Closes the open shard, however short, and commits it.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        let _busy = self.liveness.busy(Watched::Commit);
        self.take_out_lost(true).await?;
        if let Some(finished) = self.with_writer(ShardWriter::finish).await? {
            self.commit(finished).await?;
        } else if self.main_backlog.len() > 0 {
            self.main_backlog
                .add_to_main(&self.registration, &self.shard_dir, 1)
                .await?;
        }
        Ok(())
    }

    /// Rows the open shard can still take before it closes.
    fn room(&self) -> usize {
        self.writer.as_ref().map_or(0, ShardWriter::room)
    }

    /// Takes the pairs of waiting jobs that the tracker took back out of the open shard, after
    /// a heartbeat when `ask` (the shard is about to close).
    async fn take_out_lost(&mut self, ask: bool) -> anyhow::Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        if ask {
            renew_leases(&self.registration).await;
        }
        let holdings = &self.registration.holdings;
        let (lost, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|job| !holdings.is_held(job.claim));
        self.waiting = waiting;
        for job in lost {
            let claim = job.claim.id();
            let hashes = self
                .with_writer(move |writer| Ok(writer.take_out(claim)))
                .await?;
            for hash in &hashes {
                self.open_hashes.remove(hash);
            }
            Metrics::add(&self.metrics.pairs_taken_out, hashes.len() as u64);
            warn!(
                job = job.claim.number,
                n_pairs = hashes.len(),
                "job lost to the tracker while its pairs waited in the open shard; taken out of it"
            );
        }
        Ok(())
    }

    /// Publishes a complete shard (uploads it, for S3), adds its hashes to `main`, completes its
    /// jobs and drops its marker.
    async fn commit(&mut self, finished: FinishedShard) -> anyhow::Result<()> {
        self.publish(finished.number).await?;
        for hash in &finished.hashes {
            self.open_hashes.remove(hash);
        }
        self.main_backlog
            .push(finished.number, finished.hashes.clone());
        // This shard, after any earlier one the tracker refused; marked committed once added.
        self.main_backlog
            .add_to_main(&self.registration, &self.shard_dir, 3)
            .await?;
        info!(
            shard = finished.number,
            n_pairs = finished.hashes.len(),
            "shard written"
        );
        Metrics::add(&self.metrics.shards_written, 1);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|job| job.last_shard <= finished.number);
        self.waiting = waiting;
        // Completed even when `main` refused the hashes: the pairs are visible.
        for job in done {
            self.complete(job.claim, job.kept).await;
        }
        Ok(())
    }

    /// Uploads shard `number` from the spool when the output is S3; a no-op for a local output.
    ///
    /// A failed upload is tried again, 5 s later doubling to 5 min, for as long as it takes:
    /// exiting would let the leases of its jobs run out while their pairs wait in the spool,
    /// and another daemon would write them again. The heartbeats go on meanwhile; the drain
    /// deadline stops the retries. A prefix another daemon took over is not retried: the
    /// upload would overwrite its shards.
    async fn publish(&self, number: u32) -> anyhow::Result<()> {
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        let mut pause = UPLOAD_RETRY_FIRST;
        let mut attempt = 1u32;
        let (started, uploaded) = loop {
            let started = std::time::Instant::now();
            match bucket.publish(&self.shard_dir, number).await {
                Ok(uploaded) => break (started, uploaded),
                // Another daemon writes the prefix now: retrying would overwrite its shards.
                Err(error @ S3Error::PrefixTaken { .. }) => {
                    return Err(anyhow::Error::new(error).context(format!(
                        "shard {number:05} not uploaded; it stays in the spool"
                    )));
                }
                Err(error) => {
                    Metrics::add(&self.metrics.upload_failures, 1);
                    warn!(
                        shard = number,
                        attempt,
                        retry_in_s = pause.as_secs(),
                        error = %error,
                        "shard upload failed; trying again"
                    );
                    // Progress for the watchdog: a store that is down is no wedged daemon.
                    drop(self.liveness.busy(Watched::Commit));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.abandon.cancelled() => {
                            return Err(anyhow::Error::new(error).context(format!(
                                "shard {number:05} still not uploaded at the drain deadline; it stays in the spool for the next start"
                            )));
                        }
                    }
                    pause = (pause * 2).min(UPLOAD_RETRY_MAX);
                    attempt += 1;
                }
            }
        };
        if uploaded {
            self.metrics.observe(Stage::Upload, started.elapsed());
            info!(
                shard = number,
                url = %bucket.url(&format!("{number:05}_stats.json")),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "shard uploaded"
            );
        }
        Ok(())
    }

    /// Discards the open shard (the drain deadline): its jobs are released, not completed.
    pub(super) async fn discard(&mut self) -> anyhow::Result<()> {
        let n_pairs = self.open_rows();
        self.with_writer(ShardWriter::discard).await?;
        let jobs: Vec<u64> = self.waiting.drain(..).map(|job| job.claim.number).collect();
        self.open_hashes.clear();
        info!(n_pairs, jobs = ?jobs, "open shard discarded");
        Ok(())
    }

    /// Completes a job whose pairs are visible, if the daemon still holds it: a job the tracker
    /// took back is never completed (under a new token it would close someone else's claim).
    async fn complete(&self, claim: Claim, kept: u64) {
        let number = claim.number;
        let _finishing = self.registration.holdings.change();
        if !self.registration.holdings.finish(claim) {
            warn!(
                job = number,
                kept, "job lost to the tracker before its shard closed; not completing it"
            );
            return;
        }
        let (session, generation) = self.registration.session();
        match session.complete(number, JobOutput::Pairs(kept)).await {
            Ok(_) => {
                Metrics::add(&self.metrics.jobs_completed, 1);
                info!(job = number, kept, "job completed");
            }
            Err(TrackerError::TimedOut) => {
                Metrics::add(&self.metrics.jobs_lost, 1);
                warn!(
                    job = number,
                    "the tracker forgot this daemon before the job was completed; it re-issues the job"
                );
                if let Err(error) = self.registration.renew(generation).await {
                    warn!(error = %error, "failed to register with the tracker again");
                }
            }
            Err(TrackerError::Conflict(detail)) => {
                Metrics::add(&self.metrics.jobs_lost, 1);
                warn!(job = number, detail = %detail, "job lost to the tracker before its completion");
            }
            Err(error) => {
                // Give it back rather than let the heartbeats hold it forever; its pairs are in
                // `main`, so the re-issued copy finds them as duplicates.
                warn!(job = number, error = %error, "failed to complete the job; releasing it");
                let _ = session.release(number).await;
            }
        }
    }

    async fn with_writer<T, F>(&mut self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut ShardWriter) -> Result<T, shard::ShardError> + Send + 'static,
    {
        let mut writer = self
            .writer
            .take()
            .context("the shard writer failed earlier")?;
        let started = std::time::Instant::now();
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut writer);
            (writer, result)
        })
        .await
        .context("shard writer task failed")?;
        self.writer = Some(writer);
        self.metrics.observe(Stage::Write, started.elapsed());
        Ok(result?)
    }
}
