//! One batch of samples on its way to the model: decoded, resized and tokenized on the
//! preprocessing pool, then embedded on a model thread, each stage on its own task so the
//! scorer keeps several batches in flight.

use std::sync::Arc;

use anyhow::Context;
use rayon::prelude::*;
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
            let texts: Vec<&str> = batch
                .iter()
                .map(|item| item.sample.meta.alt.as_str())
                .collect();
            // Images and texts both on the pool, each image written straight into the batch's
            // buffer: this thread's share of a batch (the 38.5 MB copy and its page faults, the
            // tokenizer) took about as long as the pool's on the development VM.
            let image_bytes = this.side * this.side * 3;
            let mut pixels = vec![0u8; batch.len() * image_bytes];
            let (prepared, rows) = this.pool.install(|| {
                rayon::join(
                    || crate::preprocess::prepare_batch_into(&images, this.side, &mut pixels),
                    || {
                        texts
                            .par_iter()
                            .map(|text| this.tokenizer.tokenize(text))
                            .collect::<Vec<_>>()
                    },
                )
            });
            let mut tokens = Vec::with_capacity(batch.len() * CONTEXT_LENGTH);
            let mut ok = Vec::with_capacity(batch.len());
            let mut kept = 0;
            for (index, ((item, prepared), row)) in
                batch.iter_mut().zip(prepared).zip(rows).enumerate()
            {
                match prepared {
                    Ok((width, height)) => {
                        // Failed images leave holes: later images move down over them.
                        if kept != index {
                            pixels.copy_within(
                                index * image_bytes..(index + 1) * image_bytes,
                                kept * image_bytes,
                            );
                        }
                        kept += 1;
                        // The dataset stores the size of the bytes it stores, not the bundle's.
                        let meta = &mut item.sample.meta;
                        if (meta.width, meta.height) != (width, height) {
                            debug!(
                                sample = meta.sample_id,
                                claimed = ?(meta.width, meta.height),
                                decoded = ?(width, height),
                                "bundle metadata gave the wrong image size; storing the decoded one"
                            );
                            (meta.width, meta.height) = (width, height);
                        }
                        tokens.extend_from_slice(&row);
                        ok.push(true);
                    }
                    Err(error) => {
                        debug!(sample = item.sample.meta.sample_id, error = %error, "image not decodable");
                        ok.push(false);
                    }
                }
            }
            pixels.truncate(kept * image_bytes);
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use cah_protocol::bundle::BundleSample;

    use super::*;
    use crate::daemon::holdings::Holdings;

    /// A tokenizer of the one-letter words `a`, `b` and `c`, with no merges.
    fn letters_tokenizer(dir: &std::path::Path) -> Tokenizer {
        let path = dir.join("tokenizer.json");
        let json = serde_json::json!({"model": {
            "vocab": {"a</w>": 0, "b</w>": 1, "c</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4},
            "merges": [],
        }});
        std::fs::write(&path, json.to_string()).expect("write tokenizer");
        Tokenizer::from_file(&path).expect("tokenizer")
    }

    fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([shade, (x * 7) as u8, (y * 5) as u8])
        });
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .expect("encode");
        bytes
    }

    #[tokio::test]
    async fn an_undecodable_image_leaves_no_hole_in_the_pixels_or_the_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokenizer = Arc::new(letters_tokenizer(dir.path()));
        let side = 16;
        let preparer = Preparer {
            tokenizer: Arc::clone(&tokenizer),
            side,
            pool: Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(2)
                    .build()
                    .expect("pool"),
            ),
            metrics: Metrics::new(),
        };
        let holdings = Holdings::new(Metrics::new());
        let images = [png(40, 20, 10), b"not an image".to_vec(), png(20, 30, 200)];
        let alts = ["a b", "c c c", "b a c"];
        let batch: Vec<Pending> = images
            .iter()
            .zip(alts)
            .enumerate()
            .map(|(index, (image, alt))| Pending {
                claim: holdings.claimed(1, 0),
                sample: Sample {
                    meta: BundleSample {
                        alt: alt.to_owned(),
                        ..crate::bundle::tests::sample(index as u64, "image", image)
                    },
                    image: image.clone(),
                },
            })
            .collect();
        let prepared = preparer.prepare(batch).await.expect("prepared");
        assert_eq!(prepared.ok, [true, false, true]);
        let alone: Vec<u8> = [&images[0], &images[2]]
            .iter()
            .flat_map(|bytes| crate::preprocess::preprocess(bytes, side).expect("decodes"))
            .collect();
        assert_eq!(
            prepared.pixels, alone,
            "the third image moved into the second slot"
        );
        let mut tokens = tokenizer.tokenize("a b").to_vec();
        tokens.extend(tokenizer.tokenize("b a c"));
        assert_eq!(prepared.tokens, tokens);
        let sizes: Vec<_> = prepared
            .batch
            .iter()
            .map(|item| (item.sample.meta.width, item.sample.meta.height))
            .collect();
        assert_eq!(sizes, [(40, 20), (1, 1), (20, 30)], "decoded sizes stored");
    }
}
