//! The `run` command: a long-running GPU daemon that claims GPU jobs from tracker-d, scores
//! their bundles with CLIP and writes dataset shards (see `shard` for the output contract).
//!
//! Stages, joined by bounded channels so memory stays bounded: the claimer holds at most
//! `--max-jobs` jobs (one semaphore permit each, released when the job is completed or
//! reported invalid); each job's bundle is downloaded, verified and parsed on its own task;
//! the scorer decodes and preprocesses on the CPU pool, batches samples across jobs for the
//! model threads (one per device), filters and tags; the committer writes shards and
//! completes each job only after the shard holding its last pair is visible.

mod commit;
mod jobs;
mod scoring;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cah_protocol::ClientType;
use cah_tracker_client::TrackerClient;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use crate::backend::BackendThread;
use crate::backend::torch::{RuntimeInfo, TorchBackend};
use crate::metrics::Metrics;
use crate::model::{DeviceSpec, Precision};
use crate::tags::{NsfwPolicy, TagMode};
use crate::tokenizer::Tokenizer;

/// Options of `run` (each also read from its `CLIP_*` environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Base URL of tracker-d.
    #[arg(long, env = "CLIP_TRACKER_URL")]
    pub tracker: Url,
    /// Checkpoint folder with config.json, model.safetensors and tokenizer.json.
    #[arg(long, env = "CLIP_MODEL_DIR")]
    pub model: PathBuf,
    /// Output folder of the dataset shards.
    #[arg(long, env = "CLIP_OUTPUT")]
    pub output: PathBuf,
    /// `cpu`, or CUDA device indices separated by commas (`0,1`): one model thread per device.
    #[arg(long, env = "CLIP_DEVICES", default_value = "0")]
    pub devices: String,
    /// Weight and activation precision: f32, f16 or bf16.
    #[arg(long, env = "CLIP_DTYPE", default_value = "f32")]
    pub dtype: Precision,
    /// Pairs per forward pass.
    #[arg(long, env = "CLIP_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Pairs per output shard.
    #[arg(long, env = "CLIP_SHARD_SIZE", default_value_t = 10_000)]
    pub shard_size: usize,
    /// Keep pairs whose image–text cosine similarity is at least this (LAION-5B English: 0.28).
    #[arg(
        long,
        env = "CLIP_THRESHOLD",
        default_value_t = 0.28,
        allow_hyphen_values = true
    )]
    pub threshold: f32,
    /// What to do with pairs tagged NSFW or UNSURE (underage and animal ones are always dropped).
    #[arg(long, env = "CLIP_NSFW_POLICY", value_enum, default_value = "tag")]
    pub nsfw_policy: NsfwPolicy,
    /// Zero-shot NSFW/underage/animal tagging; `off` only for test checkpoints or post-hoc tagging.
    #[arg(long, env = "CLIP_TAGS", value_enum, default_value = "on")]
    pub tags: TagMode,
    /// Most jobs held at once (claimed and not yet completed). Their bundles' images are held
    /// in memory, so memory is bounded by about this many times the bundle size.
    #[arg(long, env = "CLIP_MAX_JOBS", default_value_t = 8)]
    pub max_jobs: u32,
    /// Name on the tracker's leaderboard.
    #[arg(long, env = "CLIP_NICKNAME", default_value = "clip-gpu-d")]
    pub nickname: String,
    /// Wait between claims when the tracker has no GPU work.
    #[arg(long, env = "CLIP_POLL_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Close a short shard when no new pair arrived for this long (its jobs then complete).
    #[arg(long, env = "CLIP_FLUSH_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// Largest bundle downloaded, in bytes.
    #[arg(long, env = "CLIP_MAX_BUNDLE_BYTES", default_value_t = 4 << 30)]
    pub max_bundle_bytes: u64,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long, env = "CLIP_CPU_THREADS")]
    pub cpu_threads: Option<i32>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when unset).
    #[arg(long, env = "CLIP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Validated [`RunArgs`].
#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: Url,
    pub model: PathBuf,
    pub output: PathBuf,
    pub devices: Vec<DeviceSpec>,
    pub dtype: Precision,
    pub batch_size: usize,
    pub shard_size: usize,
    pub threshold: f32,
    pub nsfw_policy: NsfwPolicy,
    pub tags: TagMode,
    pub max_jobs: u32,
    pub nickname: String,
    pub poll_interval: Duration,
    pub flush_interval: Duration,
    pub max_bundle_bytes: u64,
    pub cpu_threads: Option<i32>,
    pub metrics_listen: Option<SocketAddr>,
}

impl TryFrom<RunArgs> for Config {
    type Error = anyhow::Error;

    fn try_from(args: RunArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(args.batch_size > 0, "--batch-size must be positive");
        anyhow::ensure!(args.shard_size > 0, "--shard-size must be positive");
        anyhow::ensure!(args.max_jobs > 0, "--max-jobs must be positive");
        anyhow::ensure!(args.threshold.is_finite(), "--threshold must be a number");
        anyhow::ensure!(
            args.model.join("config.json").is_file(),
            "--model {} has no config.json",
            args.model.display()
        );
        Ok(Self {
            devices: parse_devices(&args.devices)?,
            tracker: args.tracker,
            model: args.model,
            output: args.output,
            dtype: args.dtype,
            batch_size: args.batch_size,
            shard_size: args.shard_size,
            threshold: args.threshold,
            nsfw_policy: args.nsfw_policy,
            tags: args.tags,
            max_jobs: args.max_jobs,
            nickname: args.nickname,
            poll_interval: args.poll_interval,
            flush_interval: args.flush_interval,
            max_bundle_bytes: args.max_bundle_bytes,
            cpu_threads: args.cpu_threads,
            metrics_listen: args.metrics_listen,
        })
    }
}

/// `cpu`, or CUDA indices such as `0,1` (also `cuda:0,cuda:1`).
pub fn parse_devices(text: &str) -> anyhow::Result<Vec<DeviceSpec>> {
    let mut devices = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let device = match part.parse::<usize>() {
            Ok(index) => DeviceSpec::Cuda(index),
            Err(_) => part
                .parse::<DeviceSpec>()
                .map_err(|error| anyhow::anyhow!("--devices: {error}"))?,
        };
        anyhow::ensure!(!devices.contains(&device), "--devices names {device} twice");
        devices.push(device);
    }
    anyhow::ensure!(!devices.is_empty(), "--devices is empty");
    Ok(devices)
}

/// Runs the daemon until `shutdown` resolves, then drains: stops claiming, finishes the jobs
/// it holds, closes the open shard, completes the jobs and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to bind the metrics listener {addr}"))?,
        ),
        None => None,
    };
    run_with_listener(config, metrics_listener, shutdown).await
}

/// [`run`] with an already bound metrics listener (tests bind `127.0.0.1:0`).
pub async fn run_with_listener(
    config: Config,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let recovery = tokio::task::spawn_blocking({
        let output = config.output.clone();
        move || crate::shard::recover(&output)
    })
    .await
    .context("recovery task failed")?
    .with_context(|| format!("failed to recover {}", config.output.display()))?;
    info!(output = %config.output.display(), next_shard = recovery.next_number, deleted = ?recovery.deleted, "output folder ready");

    let tokenizer_path = config.model.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .with_context(|| format!("failed to load {}", tokenizer_path.display()))?;
    let side = crate::config::ClipConfig::from_file(&config.model.join("config.json"))?
        .vision_config
        .image_size;
    let side = usize::try_from(side).context("bad image_size")?;
    let backends = start_backends(&config).await?;

    let client = TrackerClient::with_defaults(config.tracker.clone())
        .context("failed to build the tracker client")?;
    let session = client
        .register(&config.nickname, ClientType::Gpu)
        .await
        .with_context(|| format!("failed to register with {}", config.tracker))?;
    let lease = client
        .info()
        .await
        .map(|info| Duration::from_secs(info.lease_seconds.max(1)))
        .unwrap_or(Duration::from_secs(300));
    info!(tracker = %config.tracker, lease_s = lease.as_secs(), "tracker reached");
    let committer =
        commit::Committer::start(&config, session.clone(), recovery, Arc::clone(&metrics)).await?;
    let prompts = scoring::embed_prompts(&backends[0], &tokenizer).await?;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    // Dropping `run` (a caller's timeout, or a test's simulated crash) stops its tasks too.
    let root = CancellationToken::new();
    let _cancel_on_drop = root.clone().drop_guard();
    if let Some(listener) = metrics_listener {
        info!(addr = ?listener.local_addr().ok(), "serving metrics");
        let stop = root.clone();
        tokio::spawn(crate::metrics::serve(
            listener,
            Arc::clone(&metrics),
            stop.cancelled_owned(),
        ));
    }
    let stop_claiming = root.child_token();
    let stop_heartbeat = root.child_token();
    let heartbeat = tokio::spawn(jobs::heartbeat(
        session.clone(),
        lease,
        stop_heartbeat.clone(),
    ));
    let (job_sender, job_receiver) = tokio::sync::mpsc::channel(config.max_jobs as usize);
    let claimer = tokio::spawn(jobs::claim_loop(
        jobs::ClaimContext {
            session: session.clone(),
            max_jobs: config.max_jobs,
            poll_interval: config.poll_interval,
            max_bundle_bytes: config.max_bundle_bytes,
            work_dir: config.output.join(".downloads"),
            http: reqwest::Client::new(),
            metrics: Arc::clone(&metrics),
        },
        job_sender,
        stop_claiming.clone(),
    ));
    let scorer = scoring::Scorer {
        backends,
        tokenizer: std::sync::Arc::new(tokenizer),
        side,
        prompts,
        batch_size: config.batch_size,
        threshold: config.threshold,
        nsfw_policy: config.nsfw_policy,
        tags: config.tags,
        metrics: Arc::clone(&metrics),
        flush_interval: config.flush_interval,
    };
    let scoring = scorer.run(job_receiver, committer);
    tokio::pin!(scoring);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        result = &mut scoring => result,
        () = &mut shutdown => {
            info!("draining: no new claims; finishing held jobs");
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            stop_claiming.cancel();
            scoring.await
        }
    };
    stop_claiming.cancel();
    if let Err(error) = claimer.await {
        warn!(error = %error, "claimer task failed");
    }
    stop_heartbeat.cancel();
    let _ = heartbeat.await;
    if let Err(error) = session.bye().await {
        warn!(error = %error, "failed to say bye to the tracker");
    }
    info!("stopped");
    result
}

async fn start_backends(config: &Config) -> anyhow::Result<Vec<BackendThread>> {
    if let Some(threads) = config.cpu_threads {
        tch::set_num_threads(threads);
    }
    RuntimeInfo::detect().log();
    let mut backends = Vec::new();
    for device in config.devices.clone() {
        let (dir, dtype) = (config.model.clone(), config.dtype);
        // Spawning waits for the model to load, so it runs off the async workers.
        let backend = tokio::task::spawn_blocking(move || {
            BackendThread::spawn(4, move || TorchBackend::load(&dir, device, dtype))
        })
        .await
        .context("backend start task failed")?
        .with_context(|| format!("failed to start CLIP on {device}"))?;
        backends.push(backend);
    }
    Ok(backends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_devices("cpu").expect("cpu"), [DeviceSpec::Cpu]);
        assert_eq!(
            parse_devices("0,1").expect("cuda"),
            [DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        assert_eq!(
            parse_devices("cuda:2").expect("cuda"),
            [DeviceSpec::Cuda(2)]
        );
        assert!(parse_devices("0,0").is_err());
        assert!(parse_devices("gpu").is_err());
        assert!(parse_devices("").is_err());
    }
}
