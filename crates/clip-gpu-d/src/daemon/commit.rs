//! The committer: dedups scored jobs through the tracker, writes kept pairs into shards, and
//! completes each job only once the shard holding its last pair is visible.
//!
//! `clipped` gets every scored pair at once. `main` is only *checked* when a job's pairs are
//! written and only *added to* once their shard is visible (before its jobs complete), so a
//! crash never leaves hashes in `main` whose pairs are in no visible shard; within the open
//! shard a local set stops duplicates between jobs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use cah_protocol::ext::DedupSet;
use cah_tracker_client::{JobOutput, Session};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::Config;
use crate::metrics::{Metrics, Stage};
use crate::shard::{self, FinishedShard, KeptPair, Recovery, ShardWriter};

/// A scored job on its way to the dataset.
#[derive(Debug)]
pub(super) struct JobResult {
    pub(super) number: u64,
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
    number: u64,
    kept: u64,
    last_shard: u32,
    _permit: OwnedSemaphorePermit,
}

pub(super) struct Committer {
    session: Session,
    output: std::path::PathBuf,
    writer: Option<ShardWriter>,
    open_hashes: HashSet<u64>,
    waiting: Vec<Waiting>,
    metrics: Arc<Metrics>,
}

impl JobResult {
    pub(super) fn new(number: u64, permit: OwnedSemaphorePermit, n_samples: usize) -> Self {
        Self {
            number,
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
    /// Commits the shards a crash left uncommitted, then opens the next shard.
    pub(super) async fn start(
        config: &Config,
        session: Session,
        recovery: Recovery,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut committer = Self {
            session,
            output: config.output.clone(),
            writer: Some(ShardWriter::new(
                &config.output,
                config.shard_size,
                recovery.next_number,
            )),
            open_hashes: HashSet::new(),
            waiting: Vec::new(),
            metrics,
        };
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

    /// Dedups a scored job, writes its new pairs, and completes it when they are visible.
    pub(super) async fn add_job(&mut self, result: JobResult) -> anyhow::Result<()> {
        if let Err(error) = self
            .session
            .dedup(DedupSet::Clipped, &result.scored_hashes, true)
            .await
        {
            warn!(job = result.number, error = %error, "failed to add scored pairs to the clipped set");
        }
        let hashes: Vec<u64> = result.kept.iter().map(|pair| pair.hash).collect();
        let new = if hashes.is_empty() {
            Vec::new()
        } else {
            match self.session.dedup(DedupSet::Main, &hashes, false).await {
                Ok(new) => new,
                Err(error) => {
                    warn!(job = result.number, error = %error, "main dedup check failed; keeping every pair");
                    vec![true; hashes.len()]
                }
            }
        };
        let n_kept_before_dedup = result.kept.len();
        let mut fresh = Vec::new();
        for (pair, is_new) in result.kept.into_iter().zip(new) {
            if is_new && self.open_hashes.insert(pair.hash) {
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
            job = result.number,
            n_samples = result.n_samples,
            below_threshold = result.below_threshold,
            undecodable = result.undecodable,
            dropped = ?result.dropped,
            duplicates = n_kept_before_dedup as u64 - kept,
            kept,
            "job scored"
        );
        if fresh.is_empty() {
            self.complete(result.number, 0).await;
            return Ok(());
        }
        let (finished, open_rows, open_number) = self
            .with_writer(move |writer| {
                let mut finished = Vec::new();
                for pair in fresh {
                    finished.extend(writer.push(pair)?);
                }
                Ok((finished, writer.open_rows(), writer.number()))
            })
            .await?;
        let last_shard = if open_rows > 0 {
            open_number
        } else {
            open_number.saturating_sub(1)
        };
        self.waiting.push(Waiting {
            number: result.number,
            kept,
            last_shard,
            _permit: result.permit,
        });
        for shard in finished {
            self.commit(shard).await?;
        }
        Ok(())
    }

    /// Closes the open shard, however short, and commits it.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(finished) = self.with_writer(ShardWriter::finish).await? {
            self.commit(finished).await?;
        }
        Ok(())
    }

    /// Adds a visible shard's hashes to `main`, completes its jobs and drops its marker.
    async fn commit(&mut self, finished: FinishedShard) -> anyhow::Result<()> {
        let mut added = false;
        for attempt in 0..3u32 {
            match self
                .session
                .dedup(DedupSet::Main, &finished.hashes, true)
                .await
            {
                Ok(_) => {
                    added = true;
                    break;
                }
                Err(error) => {
                    warn!(shard = finished.number, attempt, error = %error, "failed to add a shard's pairs to the main set")
                }
            }
        }
        info!(
            shard = finished.number,
            n_pairs = finished.hashes.len(),
            "shard written"
        );
        Metrics::add(&self.metrics.shards_written, 1);
        for hash in &finished.hashes {
            self.open_hashes.remove(hash);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|job| job.last_shard <= finished.number);
        self.waiting = waiting;
        for job in done {
            self.complete(job.number, job.kept).await;
        }
        if added {
            let (output, number) = (self.output.clone(), finished.number);
            tokio::task::spawn_blocking(move || shard::mark_committed(&output, number))
                .await
                .context("commit task failed")??;
        }
        Ok(())
    }

    async fn complete(&self, number: u64, kept: u64) {
        self.metrics
            .held_jobs
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Metrics::add(&self.metrics.jobs_completed, 1);
        match self.session.complete(number, JobOutput::Pairs(kept)).await {
            Ok(_) => info!(job = number, kept, "job completed"),
            Err(error) => warn!(job = number, error = %error, "failed to complete the job"),
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
