//! The scorer: batches samples across jobs, preprocesses them on the CPU pool, embeds them on
//! the model threads (one batch per device at a time), and applies threshold and tags.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::join_all;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tracing::{debug, info, warn};

use super::commit::{Committer, JobResult};
use super::jobs::LoadedJob;
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
}

/// A sample waiting for the model.
struct Pending {
    job: u64,
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
    /// Scores every job that arrives until the channel closes, then closes the open shard.
    pub(super) async fn run(
        self,
        mut jobs: mpsc::Receiver<LoadedJob>,
        mut committer: Committer,
    ) -> anyhow::Result<()> {
        let tokenizer = Arc::clone(&self.tokenizer);
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut states: HashMap<u64, JobState> = HashMap::new();
        let mut closed = false;
        // Batches preprocessing on the CPU pool while the model threads embed earlier ones.
        let mut ahead: VecDeque<tokio::task::JoinHandle<Prepared>> = VecDeque::new();
        let depth = 2 * self.backends.len();
        loop {
            if queue.is_empty() && ahead.is_empty() {
                if closed {
                    break;
                }
                let next = if committer.open_rows() > 0 {
                    match tokio::time::timeout(self.flush_interval, jobs.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            debug!("no new pairs for the flush interval; closing the shard");
                            committer.flush().await?;
                            continue;
                        }
                    }
                } else {
                    jobs.recv().await
                };
                match next {
                    Some(job) => {
                        admit(job, &mut queue, &mut states, &mut committer, &self.metrics).await?;
                    }
                    None => closed = true,
                }
            }
            while queue.len() < self.batch_size * self.backends.len() && !closed {
                match jobs.try_recv() {
                    Ok(job) => {
                        admit(job, &mut queue, &mut states, &mut committer, &self.metrics).await?;
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
                prepared.push(handle.await.context("preprocessing task failed")?);
            }
            let scored = join_all(
                prepared
                    .into_iter()
                    .zip(&self.backends)
                    .map(|(batch, backend)| embed(backend, batch, &self.metrics)),
            )
            .await;
            for batch in scored {
                for (pending, embeddings) in batch? {
                    let Some(state) = states.get_mut(&pending.job) else {
                        continue;
                    };
                    if let Some((image, text)) = embeddings {
                        self.judge(state, pending.sample, image, text);
                    } else {
                        state.result.undecodable += 1;
                    }
                    state.remaining -= 1;
                    if state.remaining == 0
                        && let Some(state) = states.remove(&pending.job)
                    {
                        committer.add_job(state.result).await?;
                    }
                }
            }
        }
        committer.flush().await
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
                job: result.number,
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

async fn admit(
    job: LoadedJob,
    queue: &mut VecDeque<Pending>,
    states: &mut HashMap<u64, JobState>,
    committer: &mut Committer,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    metrics.queued_samples.fetch_add(
        job.samples.len() as i64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let result = JobResult::new(job.number, job.permit, job.samples.len());
    if job.samples.is_empty() {
        return committer.add_job(result).await;
    }
    let remaining = job.samples.len();
    queue.extend(job.samples.into_iter().map(|sample| Pending {
        job: job.number,
        sample,
    }));
    if states
        .insert(job.number, JobState { result, remaining })
        .is_some()
    {
        warn!(
            job = job.number,
            "job claimed twice; the earlier copy is forgotten"
        );
    }
    info!(
        job = job.number,
        n_samples = remaining,
        queued = queue.len(),
        "job queued for scoring"
    );
    Ok(())
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
    batch: Vec<Pending>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<Prepared> {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let images: Vec<&[u8]> = batch
            .iter()
            .map(|item| item.sample.image.as_slice())
            .collect();
        let prepared = crate::preprocess::preprocess_batch(&images, side);
        let mut pixels = Vec::new();
        let mut texts = Vec::new();
        let mut ok = Vec::with_capacity(batch.len());
        for (item, prepared) in batch.iter().zip(prepared) {
            match prepared {
                Ok(prepared) => {
                    pixels.extend(prepared);
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
