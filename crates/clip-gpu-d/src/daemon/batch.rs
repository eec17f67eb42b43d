//! One batch of samples on its way to the model: decoded, resized and tokenized on the
//! preprocessing pool, then embedded on a model thread, each stage on its own task so the
//! scorer keeps several batches in flight.

use std::sync::Arc;

use anyhow::Context;
use tracing::debug;

use super::holdings::Claim;
use crate::backend::{BackendThread, Embeddings, ImageBatch, TextBatch};
use crate::bundle::Sample;
use crate::metrics::{Metrics, Stage};
use crate::tokenizer::{CONTEXT_LENGTH, Tokenizer};

/// A sample waiting for the model.
pub(super) struct Pending {
    pub(super) claim: Claim,
    pub(super) sample: Sample,
}

/// Each sample with its image and text embeddings, `None` when its image did not decode.
pub(super) type Scored = Vec<(Pending, Option<(Vec<f32>, Vec<f32>)>)>;

/// A batch decoded and tokenized: pixels and tokens of the decodable samples, in order.
pub(super) struct Prepared {
    batch: Vec<Pending>,
    pixels: Vec<u8>,
    tokens: Vec<i64>,
    ok: Vec<bool>,
}

/// What preparing a batch needs besides the batch.
#[derive(Clone)]
pub(super) struct Preparer {
    pub(super) tokenizer: Arc<Tokenizer>,
    pub(super) side: usize,
    /// `--preprocess-threads` threads, apart from the model threads.
    pub(super) pool: Arc<rayon::ThreadPool>,
    pub(super) metrics: Arc<Metrics>,
}

impl Preparer {
    /// Starts decoding, preprocessing and tokenizing one batch on the blocking pool, which hands
    /// the images to the preprocessing pool.
    pub(super) fn prepare(&self, mut batch: Vec<Pending>) -> tokio::task::JoinHandle<Prepared> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let images: Vec<&[u8]> = batch
                .iter()
                .map(|item| item.sample.image.as_slice())
                .collect();
            let prepared = this
                .pool
                .install(|| crate::preprocess::preprocess_batch(&images, this.side));
            // Sized once: grown by doubling, the 38.5 MB of a batch of 256 were copied several
            // times and their pages faulted in again on each growth.
            let mut pixels = Vec::with_capacity(batch.len() * this.side * this.side * 3);
            let mut texts = Vec::new();
            let mut ok = Vec::with_capacity(batch.len());
            for (item, prepared) in batch.iter_mut().zip(prepared) {
                match prepared {
                    Ok(prepared) => {
                        pixels.extend(prepared.pixels);
                        // The dataset stores the size of the bytes it stores, not the bundle's.
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
            let tokens = this.tokenizer.tokenize_batch(&texts);
            this.metrics.observe(Stage::Preprocess, started.elapsed());
            Prepared {
                batch,
                pixels,
                tokens,
                ok,
            }
        })
    }
}

/// Starts embedding a prepared batch on one model thread; undecodable images get `None`. The
/// texts are queued behind the images, so the thread goes on to them without a round trip.
pub(super) fn embed(
    backend: Arc<BackendThread>,
    prepared: Prepared,
) -> tokio::task::JoinHandle<anyhow::Result<Scored>> {
    tokio::spawn(async move {
        let Prepared {
            batch,
            pixels,
            tokens,
            ok,
        } = prepared;
        let n_ok = tokens.len() / CONTEXT_LENGTH;
        let (images, texts) = tokio::join!(
            backend.embed_images(ImageBatch {
                n_images: n_ok,
                pixels,
            }),
            backend.embed_texts(TextBatch {
                n_texts: n_ok,
                token_ids: tokens,
            }),
        );
        let images = images.context("image batch failed")?;
        let texts = texts.context("text batch failed")?;
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
    })
}

fn row_pair(images: &Embeddings, texts: &Embeddings, row: usize) -> (Vec<f32>, Vec<f32>) {
    (images.row(row).to_vec(), texts.row(row).to_vec())
}
