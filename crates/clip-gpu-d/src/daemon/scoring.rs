//! The scorer: batches samples across jobs, has them preprocessed on the CPU pool and embedded
//! on the model threads, several batches in flight so each GPU has the next batch queued while
//! it embeds one, applies threshold and tags, and hands each scored job to the committer, which
//! runs beside it (`commit_feed`).
//!
//! Jobs the tracker took back are dropped when they arrive. At the drain deadline (`abandon`)
//! the scorer stops at its next wait and the committer discards the open shard; a commit in
//! progress is finished first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::batch::{self, Pending, Prepared, Preparer, Scored};
use super::commit::{Committer, JobResult};
use super::commit_feed::{self, FEED_DEPTH, ToCommit};
use super::holdings::Claim;
use super::jobs::LoadedJob;
use super::liveness::{Liveness, Stage as Watched};
use super::registration::Registration;
use crate::backend::{BackendThread, TextBatch};
use crate::bundle::Sample;
use crate::dedup::pair_hash;
use crate::metrics::{Metrics, Stage};
use crate::shard::KeptPair;
use crate::tags::{self, NsfwPolicy, NsfwTag, PromptEmbeddings, TagMode, Verdict};
use crate::tokenizer::Tokenizer;

/// Batches being preprocessed ahead of the model, per model thread.
const PREPARED_AHEAD: usize = 2;
/// Batches queued on or running on each model thread: one embedding, one waiting behind it.
const ON_THE_MODEL: usize = 2;

/// Everything the scoring stage owns.
pub(super) struct Scorer {
    pub(super) backends: Vec<Arc<BackendThread>>,
    pub(super) preparer: Preparer,
    pub(super) prompts: PromptEmbeddings,
    pub(super) batch_size: usize,
    pub(super) threshold: f32,
    pub(super) nsfw_policy: NsfwPolicy,
    pub(super) tags: TagMode,
    pub(super) metrics: Arc<Metrics>,
    pub(super) flush_interval: Duration,
    pub(super) registration: Arc<Registration>,
    pub(super) liveness: Arc<Liveness>,
    /// Cancelled at the drain deadline.
    pub(super) abandon: CancellationToken,
}

/// A job whose samples are being scored.
struct JobState {
    result: JobResult,
    remaining: usize,
}

/// Embeds the three prompt lists once.
pub(super) async fn embed_prompts(
    backend: &BackendThread,
    tokenizer: &Tokenizer,
) -> anyhow::Result<PromptEmbeddings> {
    let embed = |texts: Vec<&str>| {
        let batch = TextBatch {
            n_texts: texts.len(),
            token_ids: tokenizer.tokenize_batch(&texts),
        };
        backend.embed_texts(batch)
    };
    Ok(PromptEmbeddings {
        content: embed(texts_of(tags::CONTENT_PROMPTS))
            .await
            .context("failed to embed the prompts")?,
        age: embed(texts_of(tags::AGE_PROMPTS))
            .await
            .context("failed to embed the prompts")?,
        object: embed(texts_of(tags::OBJECT_PROMPTS))
            .await
            .context("failed to embed the prompts")?,
    })
}

fn texts_of<C>(table: &[(&'static str, C)]) -> Vec<&'static str> {
    table.iter().map(|(text, _)| *text).collect()
}

impl Scorer {
    /// Scores every job that arrives until the channel closes, then closes the open shard; at
    /// the drain deadline, discards the open shard instead.
    pub(super) async fn run(
        self,
        jobs: mpsc::Receiver<LoadedJob>,
        committer: Committer,
    ) -> anyhow::Result<()> {
        let (feed, receiver) = mpsc::channel(FEED_DEPTH);
        let committing = commit_feed::serve(committer, receiver, self.abandon.clone());
        // The scorer's end drops its sender, and the committer then closes the open shard.
        tokio::try_join!(self.score(jobs, feed), committing)?;
        Ok(())
    }

    async fn score(
        self,
        mut jobs: mpsc::Receiver<LoadedJob>,
        feed: mpsc::Sender<ToCommit>,
    ) -> anyhow::Result<()> {
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut states: HashMap<Claim, JobState> = HashMap::new();
        let mut closed = false;
        // Whether pairs went to the committer since the shard was last flushed.
        let mut unflushed = false;
        let mut preparing: VecDeque<JoinHandle<Prepared>> = VecDeque::new();
        let mut embedding: VecDeque<JoinHandle<anyhow::Result<Scored>>> = VecDeque::new();
        let n_backends = self.backends.len();
        let mut next_backend = 0;
        // The prompts were embedded before scoring started.
        let mut busy_seen: Duration = self.backends.iter().map(|backend| backend.busy()).sum();
        loop {
            if self.abandon.is_cancelled() {
                return Ok(());
            }
            if queue.is_empty() && preparing.is_empty() && embedding.is_empty() {
                if closed {
                    break;
                }
                let next = if unflushed {
                    let next = tokio::time::timeout(self.flush_interval, jobs.recv());
                    match self.unless_abandoned(next).await {
                        None => continue,
                        Some(Ok(next)) => next,
                        Some(Err(_)) => {
                            debug!("no new pairs for the flush interval; closing the shard");
                            self.commit(&feed, ToCommit::Flush).await?;
                            unflushed = false;
                            continue;
                        }
                    }
                } else {
                    match self.unless_abandoned(jobs.recv()).await {
                        None => continue,
                        Some(next) => next,
                    }
                };
                match next {
                    Some(job) => self.admit(job, &mut queue, &mut states, &feed).await?,
                    None => closed = true,
                }
            }
            while queue.len() < self.batch_size * n_backends && !closed {
                match jobs.try_recv() {
                    Ok(job) => self.admit(job, &mut queue, &mut states, &feed).await?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
            while preparing.len() < PREPARED_AHEAD * n_backends && !queue.is_empty() {
                let take = queue.len().min(self.batch_size);
                let batch: Vec<Pending> = queue.drain(..take).collect();
                self.metrics
                    .queued_samples
                    .fetch_sub(take as i64, std::sync::atomic::Ordering::Relaxed);
                preparing.push_back(self.preparer.prepare(batch));
            }
            // Keep every model thread's queue full; take results only when it is.
            if embedding.len() < ON_THE_MODEL * n_backends
                && let Some(handle) = preparing.pop_front()
            {
                let prepared = {
                    let _busy = self.liveness.busy(Watched::Preprocess);
                    match self.unless_abandoned(handle).await {
                        Some(prepared) => prepared.context("preprocessing task failed")?,
                        None => continue,
                    }
                };
                let backend = Arc::clone(&self.backends[next_backend]);
                next_backend = (next_backend + 1) % n_backends;
                embedding.push_back(batch::embed(backend, prepared));
                continue;
            }
            let Some(handle) = embedding.pop_front() else {
                continue;
            };
            let scored = {
                let _busy = self.liveness.busy(Watched::Model);
                match self.unless_abandoned(handle).await {
                    Some(scored) => scored.context("embedding task failed")??,
                    None => continue,
                }
            };
            self.count_busy(&mut busy_seen);
            for (pending, embeddings) in scored {
                let Some(state) = states.get_mut(&pending.claim) else {
                    continue;
                };
                if let Some((image, text)) = embeddings {
                    self.judge(state, pending.sample, image, text);
                } else {
                    state.result.undecodable += 1;
                }
                state.remaining -= 1;
                if state.remaining == 0
                    && let Some(state) = states.remove(&pending.claim)
                {
                    self.commit(&feed, ToCommit::Job(state.result)).await?;
                    unflushed = true;
                }
            }
        }
        Ok(())
    }

    /// Hands the committer a message. It stops early only at the drain deadline (when the
    /// message no longer matters) or on an error, which `run` returns in place of this one.
    async fn commit(&self, feed: &mpsc::Sender<ToCommit>, message: ToCommit) -> anyhow::Result<()> {
        if feed.send(message).await.is_err() && !self.abandon.is_cancelled() {
            anyhow::bail!("the committer stopped");
        }
        Ok(())
    }

    /// Adds the model threads' busy time since the last call to the metrics.
    fn count_busy(&self, seen: &mut Duration) {
        let busy: Duration = self.backends.iter().map(|backend| backend.busy()).sum();
        let new = busy.saturating_sub(*seen);
        *seen = busy;
        self.metrics.observe(Stage::Embed, new);
        Metrics::add(&self.metrics.backend_busy_micros, new.as_micros() as u64);
    }

    /// `work`'s output, or `None` when the drain deadline passes first.
    async fn unless_abandoned<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.abandon.cancelled() => None,
            output = work => Some(output),
        }
    }

    /// Queues a loaded job's samples, unless the tracker took the job back meanwhile.
    async fn admit(
        &self,
        job: LoadedJob,
        queue: &mut VecDeque<Pending>,
        states: &mut HashMap<Claim, JobState>,
        feed: &mpsc::Sender<ToCommit>,
    ) -> anyhow::Result<()> {
        let claim = job.claim;
        if !self.registration.holdings.is_held(claim) {
            info!(
                job = claim.number,
                "job lost to the tracker before scoring; dropped"
            );
            return Ok(());
        }
        let result = JobResult::new(claim, job.permit, job.samples.len());
        if job.samples.is_empty() {
            return self.commit(feed, ToCommit::Job(result)).await;
        }
        let remaining = job.samples.len();
        self.metrics
            .queued_samples
            .fetch_add(remaining as i64, std::sync::atomic::Ordering::Relaxed);
        queue.extend(
            job.samples
                .into_iter()
                .map(|sample| Pending { claim, sample }),
        );
        states.insert(claim, JobState { result, remaining });
        info!(
            job = claim.number,
            n_samples = remaining,
            queued = queue.len(),
            "job queued for scoring"
        );
        Ok(())
    }

    fn judge(&self, state: &mut JobState, sample: Sample, image: Vec<f32>, text: Vec<f32>) {
        let similarity: f32 = image.iter().zip(&text).map(|(a, b)| a * b).sum();
        let hash = pair_hash(&sample.meta.url, &sample.meta.alt);
        let result = &mut state.result;
        result.scored_hashes.push(hash);
        Metrics::add(&self.metrics.pairs_scored, 1);
        if similarity < self.threshold {
            result.below_threshold += 1;
            return;
        }
        let verdict = match self.tags {
            TagMode::On => tags::judge(&self.prompts, &image, &sample.meta.alt, self.nsfw_policy),
            TagMode::Off => Verdict::Keep(NsfwTag::Untagged),
        };
        match verdict {
            Verdict::Keep(nsfw) => result.kept.push(KeptPair {
                sample: sample.meta,
                image: sample.image,
                hash,
                job: result.claim.number,
                claim: result.claim.id(),
                similarity,
                nsfw,
                image_embedding: image,
                text_embedding: text,
            }),
            Verdict::Drop(reason) => {
                *result.dropped.entry(reason.as_str()).or_insert(0) += 1;
            }
        }
    }
}
