//! The scorer: batches samples across jobs, preprocesses them on the CPU pool, embeds them on
//! the model threads (one batch per device at a time), and applies threshold and tags.
//!
//! Jobs the tracker took back are dropped when they arrive. At the drain deadline (`abandon`)
//! the scorer stops at its next wait and discards the open shard; a commit in progress is
//! finished first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::join_all;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::commit::{Committer, JobResult};
use super::holdings::Claim;
use super::jobs::LoadedJob;
use super::liveness::{Liveness, Stage as Watched};
use super::registration::Registration;
use crate::backend::{BackendThread, Embeddings, ImageBatch, TextBatch};
use crate::bundle::Sample;
use crate::dedup::pair_hash;
use crate::metrics::{Metrics, Stage};
use crate::shard::KeptPair;
use crate::tags::{self, NsfwPolicy, NsfwTag, PromptEmbeddings, TagMode, Verdict};
use crate::tokenizer::{CONTEXT_LENGTH, Tokenizer};

/// Everything the scoring stage owns.
pub(super) struct Scorer {
    pub(super) backends: Vec<BackendThread>,
    pub(super) tokenizer: Arc<Tokenizer>,
    pub(super) side: usize,
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

/// A sample waiting for the model.
struct Pending {
    claim: Claim,
    sample: Sample,
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
        mut jobs: mpsc::Receiver<LoadedJob>,
        mut committer: Committer,
    ) -> anyhow::Result<()> {
        let tokenizer = Arc::clone(&self.tokenizer);
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut states: HashMap<Claim, JobState> = HashMap::new();
        let mut closed = false;
        // Batches preprocessing on the CPU pool while the model threads embed earlier ones.
        let mut ahead: VecDeque<tokio::task::JoinHandle<Prepared>> = VecDeque::new();
        let depth = 2 * self.backends.len();
        loop {
            if self.abandon.is_cancelled() {
                return committer.discard().await;
            }
            if queue.is_empty() && ahead.is_empty() {
                if closed {
                    break;
                }
                let next = if committer.open_rows() > 0 {
                    let next = tokio::time::timeout(self.flush_interval, jobs.recv());
                    match self.unless_abandoned(next).await {
                        None => continue,
                        Some(Ok(next)) => next,
                        Some(Err(_)) => {
                            debug!("no new pairs for the flush interval; closing the shard");
                            committer.flush().await?;
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
                    Some(job) => {
                        self.admit(job, &mut queue, &mut states, &mut committer)
                            .await?
                    }
                    None => closed = true,
                }
            }
            while queue.len() < self.batch_size * self.backends.len() && !closed {
                match jobs.try_recv() {
                    Ok(job) => {
                        self.admit(job, &mut queue, &mut states, &mut committer)
                            .await?
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
            while ahead.len() < depth && !queue.is_empty() {
                let take = queue.len().min(self.batch_size);
                let batch: Vec<Pending> = queue.drain(..take).collect();
                self.metrics
                    .queued_samples
                    .fetch_sub(take as i64, std::sync::atomic::Ordering::Relaxed);
                ahead.push_back(prepare(
                    Arc::clone(&tokenizer),
                    self.side,
                    batch,
                    Arc::clone(&self.metrics),
                ));
            }
            let mut prepared = Vec::new();
            for _ in 0..self.backends.len() {
                let Some(handle) = ahead.pop_front() else {
                    break;
                };
                let _busy = self.liveness.busy(Watched::Preprocess);
                let Some(batch) = self.unless_abandoned(handle).await else {
                    break;
                };
                prepared.push(batch.context("preprocessing task failed")?);
            }
            if self.abandon.is_cancelled() {
                continue;
            }
            let scored = {
                let _busy = self.liveness.busy(Watched::Model);
                let embedded = join_all(
                    prepared
                        .into_iter()
                        .zip(&self.backends)
                        .map(|(batch, backend)| embed(backend, batch, &self.metrics)),
                );
                match self.unless_abandoned(embedded).await {
                    Some(scored) => scored,
                    None => continue,
                }
            };
            for batch in scored {
                for (pending, embeddings) in batch? {
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
                        committer.add_job(state.result).await?;
                    }
                }
            }
        }
        if self.abandon.is_cancelled() {
            return committer.discard().await;
        }
        committer.flush().await
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
        committer: &mut Committer,
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
            return committer.add_job(result).await;
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

type Scored = Vec<(Pending, Option<(Vec<f32>, Vec<f32>)>)>;

/// A batch decoded and tokenized: pixels and tokens of the decodable samples, in order.
struct Prepared {
    batch: Vec<Pending>,
    pixels: Vec<u8>,
    tokens: Vec<i64>,
    ok: Vec<bool>,
}

/// Starts decoding, preprocessing and tokenizing one batch on the blocking pool (rayon inside).
fn prepare(
    tokenizer: Arc<Tokenizer>,
    side: usize,
    mut batch: Vec<Pending>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<Prepared> {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let images: Vec<&[u8]> = batch
            .iter()
            .map(|item| item.sample.image.as_slice())
            .collect();
        let prepared = crate::preprocess::preprocess_batch(&images, side);
        // Sized once: grown by doubling, the 38.5 MB of a batch of 256 were copied several times
        // and their pages faulted in again on each growth.
        let mut pixels = Vec::with_capacity(batch.len() * side * side * 3);
        let mut texts = Vec::new();
        let mut ok = Vec::with_capacity(batch.len());
        for (item, prepared) in batch.iter_mut().zip(prepared) {
            match prepared {
                Ok(prepared) => {
                    pixels.extend(prepared.pixels);
                    // The dataset stores the size of the bytes it stores, not the bundle's word.
                    let meta = &mut item.sample.meta;
                    if (meta.width, meta.height) != (prepared.width, prepared.height) {
                        debug!(
                            sample = meta.sample_id,
                            claimed = ?(meta.width, meta.height),
                            decoded = ?(prepared.width, prepared.height),
                            "bundle metadata gave the wrong image size; storing the decoded one"
                        );
                        (meta.width, meta.height) = (prepared.width, prepared.height);
                    }
                    texts.push(item.sample.meta.alt.as_str());
                    ok.push(true);
                }
                Err(error) => {
                    debug!(sample = item.sample.meta.sample_id, error = %error, "image not decodable");
                    ok.push(false);
                }
            }
        }
        let tokens = tokenizer.tokenize_batch(&texts);
        metrics.observe(Stage::Preprocess, started.elapsed());
        Prepared {
            batch,
            pixels,
            tokens,
            ok,
        }
    })
}

/// Embeds a prepared batch on one model thread; undecodable images get `None`.
async fn embed(
    backend: &BackendThread,
    prepared: Prepared,
    metrics: &Metrics,
) -> anyhow::Result<Scored> {
    let Prepared {
        batch,
        pixels,
        tokens,
        ok,
    } = prepared;
    let started = std::time::Instant::now();
    let n_ok = tokens.len() / CONTEXT_LENGTH;
    let images = backend
        .embed_images(ImageBatch {
            n_images: n_ok,
            pixels,
        })
        .await
        .context("image batch failed")?;
    let texts = backend
        .embed_texts(TextBatch {
            n_texts: n_ok,
            token_ids: tokens,
        })
        .await
        .context("text batch failed")?;
    let elapsed = started.elapsed();
    metrics.observe(Stage::Embed, elapsed);
    Metrics::add(&metrics.backend_busy_micros, elapsed.as_micros() as u64);
    let mut rows = 0..n_ok;
    let mut out = Vec::with_capacity(batch.len());
    for (item, ok) in batch.into_iter().zip(ok) {
        let embeddings = if ok {
            rows.next().map(|row| row_pair(&images, &texts, row))
        } else {
            None
        };
        out.push((item, embeddings));
    }
    Ok(out)
}

fn row_pair(images: &Embeddings, texts: &Embeddings, row: usize) -> (Vec<f32>, Vec<f32>) {
    (images.row(row).to_vec(), texts.row(row).to_vec())
}
