//! The command line: `embed` (images and texts to `.npy` embeddings and their cosine matrix)
//! and `bench` (tower throughput on random inputs, for scripts/gpu-check.sh).

use std::num::{NonZeroU16, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use tracing::info;

use crate::backend::torch::{RuntimeInfo, TorchBackend};
use crate::backend::{BackendThread, Embeddings, ImageBatch, TextBatch};
use crate::flags::{check_output_file, positive};
use crate::model::{DeviceSpec, Precision};
use crate::preprocess::preprocess_batch;
use crate::telemetry::LogFormat;
use crate::tokenizer::{CONTEXT_LENGTH, Tokenizer};

/// Where scripts/fetch-model.sh puts OpenAI CLIP ViT-B/32.
pub const DEFAULT_MODEL_SUBDIR: &str = ".cache/cah/clip-vit-base-patch32";

/// `clip-gpu-d`: OpenAI CLIP on libtorch.
#[derive(Debug, clap::Parser)]
#[command(name = "clip-gpu-d", version, about)]
pub struct Args {
    /// Log format on stderr.
    #[arg(
        long,
        env = "CLIP_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Embeds images and texts and writes PREFIX.img_emb.npy, PREFIX.text_emb.npy and
    /// PREFIX.similarity.npy (images × texts cosine), all float32.
    Embed(EmbedArgs),
    /// Measures image and text tower throughput on random inputs and writes a JSON report.
    Bench(crate::embed::bench::BenchArgs),
    /// Runs the GPU daemon: claims GPU jobs from tracker-d and writes dataset shards.
    Run(Box<crate::daemon::RunArgs>),
}

/// Options of `embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files (JPEG, PNG or WebP); in the environment variable, separated by newlines.
    #[arg(long, env = "CLIP_EMBED_IMAGES", value_delimiter = '\n', num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// Text file with one caption per line.
    #[arg(long, env = "CLIP_EMBED_TEXTS_FILE")]
    pub texts_file: PathBuf,
    /// Output path prefix, in a folder that exists: PREFIX.img_emb.npy... are written (a
    /// folder, or a path ending with `/`, is refused).
    #[arg(long, env = "CLIP_EMBED_OUTPUT")]
    pub output: PathBuf,
    /// Inputs per forward pass.
    #[arg(long, env = "CLIP_BATCH_SIZE", default_value = "256", value_parser = positive::<NonZeroUsize>)]
    pub batch_size: NonZeroUsize,
    /// Also write the model inputs, PREFIX.pixels.npy (u8 RGB values, HWC, as float32) and
    /// PREFIX.tokens.npy (token ids as float32), for parity checks against other runtimes.
    /// As an environment variable: CLIP_EMBED_DUMP_INPUTS=true (or 1, yes, on; false, 0, no,
    /// off).
    #[arg(long, env = "CLIP_EMBED_DUMP_INPUTS", value_parser = BoolishValueParser::new())]
    pub dump_inputs: bool,
}

/// Which model runs where.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Checkpoint folder with config.json, model.safetensors and tokenizer.json
    /// (default: ~/.cache/cah/clip-vit-base-patch32, where scripts/fetch-model.sh puts it).
    #[arg(long, env = "CLIP_MODEL_DIR")]
    pub model: Option<PathBuf>,
    /// cpu, cuda or cuda:N. CUDA never falls back to the CPU.
    #[arg(long, env = "CLIP_DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,
    /// Weight and activation precision: f32, f16 or bf16.
    #[arg(long, env = "CLIP_DTYPE", default_value = "f32")]
    pub dtype: Precision,
    /// libtorch CPU threads, at least 1 (default: libtorch's choice).
    #[arg(long, env = "CLIP_CPU_THREADS", value_parser = positive::<NonZeroU16>)]
    pub cpu_threads: Option<NonZeroU16>,
}

pub mod bench;

impl ModelArgs {
    pub fn model_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(dir) => Ok(dir.clone()),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set; pass --model")?;
                Ok(Path::new(&home).join(DEFAULT_MODEL_SUBDIR))
            }
        }
    }

    /// Logs the runtime and starts the backend thread with the model loaded.
    pub fn start_backend(&self) -> anyhow::Result<BackendThread> {
        if let Some(threads) = self.cpu_threads {
            crate::backend::torch::set_cpu_threads(threads);
        }
        RuntimeInfo::detect().log();
        let model_dir = self.model_dir()?;
        let (device, dtype) = (self.device, self.dtype);
        let dir = model_dir.clone();
        BackendThread::spawn(4, move || TorchBackend::load(&dir, device, dtype)).with_context(
            || {
                format!(
                    "failed to start CLIP from {} on {device}",
                    model_dir.display()
                )
            },
        )
    }
}

/// Output files of `embed`.
#[derive(Debug, Clone)]
pub struct EmbedOutput {
    pub image_embeddings: PathBuf,
    pub text_embeddings: PathBuf,
    pub similarity: PathBuf,
}

/// Runs `embed`.
pub fn run_embed(args: &EmbedArgs) -> anyhow::Result<EmbedOutput> {
    let mut suffixes = vec![".img_emb.npy", ".text_emb.npy", ".similarity.npy"];
    if args.dump_inputs {
        suffixes.extend([".pixels.npy", ".tokens.npy"]);
    }
    check_output_file(("--output", "CLIP_EMBED_OUTPUT"), &args.output, &suffixes)?;
    let model_dir = args.model.model_dir()?;
    let tokenizer = load_tokenizer(&model_dir)?;
    let texts_raw = std::fs::read_to_string(&args.texts_file)
        .with_context(|| format!("failed to read {}", args.texts_file.display()))?;
    let texts: Vec<&str> = texts_raw.lines().collect();
    let backend = args.model.start_backend()?;

    let started = Instant::now();
    let side = read_image_size(&model_dir)?;
    let mut image_bytes = Vec::with_capacity(args.images.len());
    for path in &args.images {
        image_bytes.push(
            std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?,
        );
    }
    let mut pixels = Vec::with_capacity(args.images.len() * side * side * 3);
    for (path, prepared) in args.images.iter().zip(preprocess_batch(&image_bytes, side)) {
        pixels.extend(
            prepared
                .map(|prepared| prepared.pixels)
                .with_context(|| format!("failed to prepare image {}", path.display()))?,
        );
    }
    let per_image = side * side * 3;
    let mut image_embeddings = Vec::new();
    let batch_size = args.batch_size.get();
    for chunk in pixels.chunks(per_image * batch_size) {
        let batch = ImageBatch {
            n_images: chunk.len() / per_image,
            pixels: chunk.to_vec(),
        };
        image_embeddings.push(
            backend
                .blocking_embed_images(batch)
                .context("image batch failed")?,
        );
    }
    let token_ids = tokenizer.tokenize_batch(&texts);
    if args.dump_inputs {
        dump_inputs(&args.output, &pixels, per_image, &token_ids)?;
    }
    let mut text_embeddings = Vec::new();
    for chunk in token_ids.chunks(CONTEXT_LENGTH * batch_size) {
        let batch = TextBatch {
            n_texts: chunk.len() / CONTEXT_LENGTH,
            token_ids: chunk.to_vec(),
        };
        text_embeddings.push(
            backend
                .blocking_embed_texts(batch)
                .context("text batch failed")?,
        );
    }
    let images = concat(image_embeddings);
    let texts_embedded = concat(text_embeddings);
    let similarity = images.similarities(&texts_embedded);

    let output = EmbedOutput {
        image_embeddings: with_suffix(&args.output, ".img_emb.npy"),
        text_embeddings: with_suffix(&args.output, ".text_emb.npy"),
        similarity: with_suffix(&args.output, ".similarity.npy"),
    };
    write(&output.image_embeddings, &images)?;
    write(&output.text_embeddings, &texts_embedded)?;
    crate::npy::write_f32(
        &output.similarity,
        images.rows,
        texts_embedded.rows,
        &similarity,
    )
    .with_context(|| format!("failed to write {}", output.similarity.display()))?;
    info!(
        n_images = images.rows,
        n_texts = texts_embedded.rows,
        elapsed_ms = started.elapsed().as_millis() as u64,
        output = %args.output.display(),
        "embeddings written"
    );
    Ok(output)
}

fn dump_inputs(
    prefix: &Path,
    pixels: &[u8],
    per_image: usize,
    token_ids: &[i64],
) -> anyhow::Result<()> {
    let pixels_f32: Vec<f32> = pixels.iter().map(|value| f32::from(*value)).collect();
    let path = with_suffix(prefix, ".pixels.npy");
    crate::npy::write_f32(&path, pixels.len() / per_image, per_image, &pixels_f32)
        .with_context(|| format!("failed to write {}", path.display()))?;
    // Token ids are below 2^24, so float32 holds them exactly.
    let tokens_f32: Vec<f32> = token_ids.iter().map(|id| *id as f32).collect();
    let path = with_suffix(prefix, ".tokens.npy");
    crate::npy::write_f32(
        &path,
        token_ids.len() / CONTEXT_LENGTH,
        CONTEXT_LENGTH,
        &tokens_f32,
    )
    .with_context(|| format!("failed to write {}", path.display()))
}

/// The checkpoint's tokenizer, or an error that says how to get the model.
pub(crate) fn load_tokenizer(model_dir: &Path) -> anyhow::Result<Tokenizer> {
    let tokenizer_path = model_dir.join("tokenizer.json");
    Tokenizer::from_file(&tokenizer_path).with_context(|| {
        format!(
            "failed to load {}: is the model there? scripts/fetch-model.sh downloads it \
                 (where the Internet is reachable); --model names another folder",
            tokenizer_path.display()
        )
    })
}

/// The side of the checkpoint's square input images.
pub(crate) fn read_image_size(model_dir: &Path) -> anyhow::Result<usize> {
    let config = crate::config::ClipConfig::from_file(&model_dir.join("config.json"))?;
    usize::try_from(config.vision_config.image_size).context("bad image_size")
}

fn concat(parts: Vec<Embeddings>) -> Embeddings {
    let dim = parts.first().map_or(0, |part| part.dim);
    let rows = parts.iter().map(|part| part.rows).sum();
    let values = parts.into_iter().flat_map(|part| part.values).collect();
    Embeddings { rows, dim, values }
}

fn write(path: &Path, embeddings: &Embeddings) -> anyhow::Result<()> {
    crate::npy::write_f32(path, embeddings.rows, embeddings.dim, &embeddings.values)
        .with_context(|| format!("failed to write {}", path.display()))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
