//! `bench`: throughput of both towers on random inputs, median of timed runs after warm-ups.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use tracing::info;

use super::ModelArgs;
use crate::backend::{ImageBatch, TextBatch};
use crate::flags::{check_output_file, positive};
use crate::tokenizer::CONTEXT_LENGTH;

/// Options of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes to measure (several values, or commas: `256,1024`).
    #[arg(long, env = "CLIP_BENCH_BATCH_SIZES", value_delimiter = ',', num_args = 1.., default_values = ["256", "1024"], value_parser = positive::<NonZeroUsize>)]
    pub batch_sizes: Vec<NonZeroUsize>,
    /// Untimed calls per batch size.
    #[arg(long, env = "CLIP_BENCH_WARMUP", default_value_t = 3)]
    pub warmup: usize,
    /// Timed calls per batch size.
    #[arg(long, env = "CLIP_BENCH_ITERATIONS", default_value = "20", value_parser = positive::<NonZeroUsize>)]
    pub iterations: NonZeroUsize,
    /// JSON report path, in a folder that exists.
    #[arg(long, env = "CLIP_BENCH_OUTPUT")]
    pub output: PathBuf,
}

/// Runs `bench` and writes one JSON object per batch size.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    check_output_file(("--output", "CLIP_BENCH_OUTPUT"), &args.output, &[])?;
    let backend = args.model.start_backend()?;
    let model_dir = args.model.model_dir()?;
    let config = crate::config::ClipConfig::from_file(&model_dir.join("config.json"))?;
    let side = usize::try_from(config.vision_config.image_size)?;
    let vocab = u64::try_from(config.text_config.vocab_size)?;
    let mut reports = Vec::new();
    for batch_size in args.batch_sizes.iter().map(|size| size.get()) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pixels: Vec<u8> = (0..batch_size * side * side * 3)
            .map(|_| (next() >> 56) as u8)
            .collect();
        let mut token_ids = Vec::with_capacity(batch_size * CONTEXT_LENGTH);
        for _ in 0..batch_size {
            let length = 8 + (next() % 60) as usize;
            token_ids.push(49406);
            token_ids.extend((0..length).map(|_| (next() % (vocab - 2)) as i64));
            token_ids.push(vocab as i64 - 1);
            token_ids.extend(std::iter::repeat_n(0, CONTEXT_LENGTH - length - 2));
        }
        let images = ImageBatch {
            n_images: batch_size,
            pixels,
        };
        let texts = TextBatch {
            n_texts: batch_size,
            token_ids,
        };
        let image_seconds = time(
            args,
            || images.clone(),
            |batch| backend.blocking_embed_images(batch).map(|_| ()),
        )?;
        let text_seconds = time(
            args,
            || texts.clone(),
            |batch| backend.blocking_embed_texts(batch).map(|_| ()),
        )?;
        let report = serde_json::json!({
            "device": args.model.device.to_string(),
            "dtype": format!("{:?}", args.model.dtype),
            "batch_size": batch_size,
            "image_per_second": batch_size as f64 / image_seconds,
            "text_per_second": batch_size as f64 / text_seconds,
            "image_median_seconds": image_seconds,
            "text_median_seconds": text_seconds,
        });
        info!(%report, "bench result");
        reports.push(report);
    }
    std::fs::write(&args.output, serde_json::to_vec_pretty(&reports)?)
        .with_context(|| format!("failed to write {}", args.output.display()))
}

/// Median seconds of one call on an input made by `input` before the clock starts (a copy of
/// the batch, as the daemon hands its batches over; the copy is not the model's time). Each
/// call ends with the features copied to the CPU, which waits for the device.
fn time<T, I, F>(args: &BenchArgs, mut input: I, mut call: F) -> anyhow::Result<f64>
where
    I: FnMut() -> T,
    F: FnMut(T) -> Result<(), crate::BackendError>,
{
    for _ in 0..args.warmup {
        call(input())?;
    }
    let mut seconds = Vec::with_capacity(args.iterations.get());
    for _ in 0..args.iterations.get() {
        let batch = input();
        let started = Instant::now();
        call(batch)?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[seconds.len() / 2])
}
