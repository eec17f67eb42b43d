//! The options of `run`: flags with their `CLIP_*` environment variables, and their checks.

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use url::Url;

use crate::flags::{check_folder, positive};
use crate::model::{DeviceSpec, Precision};
use crate::npy::EmbeddingDtype;
use crate::output::{Output, S3Settings, Secret};
use crate::tags::{NsfwPolicy, TagMode};

/// Options of `run` (each also read from its `CLIP_*` environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Base URL of tracker-d.
    #[arg(long, env = "CLIP_TRACKER_URL", value_parser = cah_tracker_client::parse_http_url)]
    pub tracker: Url,
    /// Checkpoint folder with config.json, model.safetensors and tokenizer.json.
    #[arg(long, env = "CLIP_MODEL_DIR")]
    pub model: PathBuf,
    /// Where the dataset goes: a local folder, or `s3://BUCKET/PREFIX` (any other `scheme://`
    /// is refused; `./NAME` names a local folder whatever NAME looks like). For S3, each shard is
    /// written in --spool-dir and then uploaded whole, `NNNNN_stats.json` last; credentials and
    /// region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or
    /// AWS_DEFAULT_REGION (or the --s3-* flags), the endpoint from --s3-endpoint or
    /// AWS_ENDPOINT_URL.
    #[arg(long, env = "CLIP_OUTPUT")]
    pub output: Output,
    /// Local folder where shards for an `s3://` --output are written before their upload
    /// (ignored for a local --output). Relative to the working directory: under the systemd
    /// unit, /var/lib/clip-gpu-d/spool, which outlives restarts, so shards complete but not yet
    /// uploaded are uploaded at the next start.
    #[arg(long, env = "CLIP_SPOOL_DIR", default_value = "spool")]
    pub spool_dir: PathBuf,
    /// Also write each shard as `NNNNN.tfrecord` (`tf.train.Example` records: key, image,
    /// image_format, caption, url, sample_id, similarity, nsfw, width, height and both
    /// embeddings), as the 2021 workers did. As an environment variable: CLIP_TFRECORD=true
    /// (or 1, yes, on; false, 0, no, off).
    #[arg(long, env = "CLIP_TFRECORD", value_parser = BoolishValueParser::new())]
    pub tfrecord: bool,
    /// S3 endpoint for a non-AWS store (MinIO, Ceph...), e.g. `http://127.0.0.1:9000`:
    /// path-style requests, plain http allowed when it says http. Default: AWS_ENDPOINT_URL,
    /// else AWS itself.
    #[arg(long, env = "CLIP_S3_ENDPOINT", value_parser = crate::output::parse_endpoint)]
    pub s3_endpoint: Option<Url>,
    /// S3 region (default: AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key ID.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the environment variable: command lines are visible to
    /// other users).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,
    /// `cpu`, or CUDA device indices separated by commas (`0,1`): one model thread per device.
    #[arg(long, env = "CLIP_DEVICES", default_value = "0")]
    pub devices: String,
    /// Weight and activation precision: f32, f16 or bf16.
    #[arg(long, env = "CLIP_DTYPE", default_value = "f32")]
    pub dtype: Precision,
    /// Pairs per forward pass.
    #[arg(long, env = "CLIP_BATCH_SIZE", default_value = "256", value_parser = positive::<NonZeroUsize>)]
    pub batch_size: NonZeroUsize,
    /// Pairs per output shard.
    #[arg(long, env = "CLIP_SHARD_SIZE", default_value = "10000", value_parser = positive::<NonZeroUsize>)]
    pub shard_size: NonZeroUsize,
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
    #[arg(long, env = "CLIP_MAX_JOBS", default_value = "8", value_parser = positive::<NonZeroU32>)]
    pub max_jobs: NonZeroU32,
    /// Name on the tracker's leaderboard.
    #[arg(long, env = "CLIP_NICKNAME", default_value = "clip-gpu-d")]
    pub nickname: String,
    /// Wait between claims when the tracker has no GPU work, and after a released job; at
    /// least 1s.
    #[arg(long, env = "CLIP_POLL_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Close a short shard when no new pair arrived for this long (its jobs then complete); one
    /// that every held job waits in closes at once. At least 1s.
    #[arg(long, env = "CLIP_FLUSH_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// Largest bundle downloaded, in bytes (a larger one is reported invalid).
    #[arg(long, env = "CLIP_MAX_BUNDLE_BYTES", default_value = "4294967296", value_parser = positive::<NonZeroU64>)]
    pub max_bundle_bytes: NonZeroU64,
    /// Most decoded pixels a bundle may hold, in megapixels per image on average (by the images'
    /// headers; a bundle of fewer than 64 images gets 64 images' worth). A bundle over it is
    /// reported invalid before any image is decoded: every image is decoded whole, and the
    /// per-image limit (16,384 pixels a side) would let one bundle hold the preprocessing pool
    /// for minutes. Raise it for scrapers that store large originals (scraper-d --resize).
    #[arg(long, env = "CLIP_MAX_BUNDLE_MEGAPIXELS", default_value = "4", value_parser = positive::<NonZeroU64>)]
    pub max_bundle_megapixels: NonZeroU64,
    /// libtorch CPU threads, at least 1 (default: 1 when every device is a GPU, libtorch's
    /// choice on `cpu`). On a GPU the model threads only launch work and copy results, and
    /// libtorch's pool of a thread per core, contending with the preprocessing pool for the
    /// cores, made each batch 2.6 times slower on an H200 machine of 16 cores.
    #[arg(long, env = "CLIP_CPU_THREADS", value_parser = positive::<NonZeroU16>)]
    pub cpu_threads: Option<NonZeroU16>,
    /// Threads that decode and resize images for the model, at least 1 (default: every core
    /// but one per CUDA device, so the model threads that feed the GPUs never wait for a core).
    #[arg(long, env = "CLIP_PREPROCESS_THREADS", value_parser = positive::<NonZeroUsize>)]
    pub preprocess_threads: Option<NonZeroUsize>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when unset).
    #[arg(long, env = "CLIP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How the `.npy` embeddings are stored: f32, or f16 as clip-retrieval writes them (half
    /// the size; a stored unit vector's cosines move by at most about 1e-3). The parquet's
    /// similarity column is computed in f32 either way.
    #[arg(long, env = "CLIP_EMBEDDING_DTYPE", value_enum, default_value = "f32")]
    pub embedding_dtype: EmbeddingDtype,
    /// Longest drain after SIGTERM or SIGINT. Past it the daemon stops scoring, discards the
    /// open shard, releases the jobs it still holds (the tracker hands them out again at once)
    /// and exits 0; a shard being written or uploaded then is finished first. The default
    /// leaves a minute of the unit's TimeoutStopSec=600 for that and for the releases. At
    /// least 1s (0 does not mean "no limit").
    #[arg(long, env = "CLIP_DRAIN_TIMEOUT", default_value = "9m", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// The shortest `--poll-interval`, `--flush-interval` and `--drain-timeout`.
pub(super) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Validated [`RunArgs`].
#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: Url,
    pub model: PathBuf,
    pub output: Output,
    /// Where shards are written: the output folder, or the spool folder for S3.
    pub shard_dir: PathBuf,
    pub tfrecord: bool,
    pub s3: S3Settings,
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
    /// Decoded pixels a bundle may hold per image on average (`--max-bundle-megapixels`).
    pub bundle_pixels_per_image: u64,
    pub cpu_threads: Option<NonZeroU16>,
    /// Size of the preprocessing pool (`--preprocess-threads`, or its default for `devices`).
    pub preprocess_threads: usize,
    pub metrics_listen: Option<SocketAddr>,
    pub embedding_dtype: EmbeddingDtype,
    pub drain_timeout: Duration,
    /// Slowest average bundle download rate in bytes per second once `download_rate_grace`
    /// passed (not a flag; tests lower the grace).
    pub download_min_rate: u64,
    pub download_rate_grace: Duration,
    /// Shortest span of a job's failed downloads before its bundle counts as unreachable (not
    /// a flag; tests shorten it).
    pub unreachable_span: Duration,
}

impl TryFrom<RunArgs> for Config {
    type Error = anyhow::Error;

    fn try_from(args: RunArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(args.threshold.is_finite(), "--threshold must be a number");
        for (flag, value, why) in [
            (
                "--poll-interval (CLIP_POLL_INTERVAL)",
                args.poll_interval,
                "the wait between claims when the tracker has no work; below it the daemon would ask the tracker in a busy loop",
            ),
            (
                "--flush-interval (CLIP_FLUSH_INTERVAL)",
                args.flush_interval,
                "how long a short shard waits for pairs; below it every pause would close a shard",
            ),
            (
                "--drain-timeout (CLIP_DRAIN_TIMEOUT)",
                args.drain_timeout,
                "the longest drain after SIGTERM; 0 does not mean no limit, it would discard the open shard at every stop",
            ),
        ] {
            anyhow::ensure!(
                value >= MIN_INTERVAL,
                "{flag} is {}, but must be at least {}: {why}",
                humantime::format_duration(value),
                humantime::format_duration(MIN_INTERVAL),
            );
        }
        anyhow::ensure!(
            args.model.join("config.json").is_file(),
            "--model {} has no config.json",
            args.model.display()
        );
        let shard_dir_flag = match args.output {
            Output::Local(_) => ("--output", "CLIP_OUTPUT"),
            Output::S3(_) => ("--spool-dir", "CLIP_SPOOL_DIR"),
        };
        check_folder(shard_dir_flag, args.output.shard_dir(&args.spool_dir))?;
        let devices = parse_devices(&args.devices)?;
        let cuda_devices = devices
            .iter()
            .filter(|device| matches!(device, DeviceSpec::Cuda(_)))
            .count();
        Ok(Self {
            tracker: args.tracker,
            model: args.model,
            shard_dir: args.output.shard_dir(&args.spool_dir).to_owned(),
            output: args.output,
            tfrecord: args.tfrecord,
            s3: S3Settings {
                endpoint: args.s3_endpoint,
                region: args.s3_region,
                access_key_id: args.s3_access_key_id,
                secret_access_key: args.s3_secret_access_key,
            },
            dtype: args.dtype,
            batch_size: args.batch_size.get(),
            shard_size: args.shard_size.get(),
            threshold: args.threshold,
            nsfw_policy: args.nsfw_policy,
            tags: args.tags,
            max_jobs: args.max_jobs.get(),
            nickname: args.nickname,
            poll_interval: args.poll_interval,
            flush_interval: args.flush_interval,
            max_bundle_bytes: args.max_bundle_bytes.get(),
            bundle_pixels_per_image: args.max_bundle_megapixels.get().saturating_mul(1_000_000),
            cpu_threads: args
                .cpu_threads
                .or((cuda_devices == devices.len()).then_some(NonZeroU16::MIN)),
            preprocess_threads: args.preprocess_threads.map_or_else(
                || default_preprocess_threads(cuda_devices),
                NonZeroUsize::get,
            ),
            devices,
            metrics_listen: args.metrics_listen,
            embedding_dtype: args.embedding_dtype,
            drain_timeout: args.drain_timeout,
            download_min_rate: super::download::MIN_BUNDLE_RATE,
            download_rate_grace: super::download::MIN_RATE_GRACE,
            unreachable_span: super::fetch_failure::UNREACHABLE_SPAN,
        })
    }
}

/// Every core but one per CUDA device (that device's model thread), at least one.
fn default_preprocess_threads(cuda_devices: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    cores.saturating_sub(cuda_devices).max(1)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `run` with the required flags (a model folder with a `config.json`) and `extra`.
    fn config(extra: &[&str]) -> anyhow::Result<Config> {
        let model = tempfile::tempdir().expect("tempdir");
        std::fs::write(model.path().join("config.json"), "{}").expect("config.json");
        let model = model.path().display().to_string();
        let argv = [
            "clip-gpu-d",
            "run",
            "--tracker",
            "http://127.0.0.1:1/",
            "--model",
        ];
        let argv = argv
            .iter()
            .copied()
            .chain([model.as_str(), "--output", "dataset"])
            .chain(extra.iter().copied());
        let args = crate::embed::Args::try_parse_from(argv)?;
        let crate::embed::Command::Run(run) = args.command else {
            unreachable!("run was given");
        };
        Config::try_from(*run)
    }

    #[test]
    fn intervals_below_a_second_are_refused() {
        let ok = config(&["--poll-interval", "1s", "--flush-interval", "1s"]).expect("1s");
        assert_eq!(ok.poll_interval, Duration::from_secs(1));
        assert_eq!(ok.drain_timeout, Duration::from_secs(9 * 60));
        for (flag, variable) in [
            ("--poll-interval", "CLIP_POLL_INTERVAL"),
            ("--flush-interval", "CLIP_FLUSH_INTERVAL"),
            ("--drain-timeout", "CLIP_DRAIN_TIMEOUT"),
        ] {
            for value in ["0s", "500ms"] {
                let error = config(&[flag, value]).expect_err(value).to_string();
                assert!(
                    error.starts_with(&format!(
                        "{flag} ({variable}) is {value}, but must be at least 1s: "
                    )),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn the_cpu_pools_leave_the_cores_to_what_uses_them() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let on = |devices: &str| {
            config(&["--devices", devices])
                .expect(devices)
                .preprocess_threads
        };
        assert_eq!(on("cpu"), cores);
        assert_eq!(on("0"), (cores - 1).max(1));
        assert_eq!(on("0,1"), cores.saturating_sub(2).max(1));
        let set = config(&["--devices", "0", "--preprocess-threads", "3"]).expect("3");
        assert_eq!(set.preprocess_threads, 3);
        // libtorch's own CPU pool: one thread when it only drives GPUs.
        let threads = |extra: &[&str]| {
            config(extra)
                .expect("config")
                .cpu_threads
                .map(NonZeroU16::get)
        };
        assert_eq!(threads(&["--devices", "0,1"]), Some(1));
        assert_eq!(threads(&["--devices", "cpu"]), None);
        assert_eq!(threads(&["--devices", "0", "--cpu-threads", "4"]), Some(4));
        assert!(config(&["--preprocess-threads", "0"]).is_err());
    }

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
