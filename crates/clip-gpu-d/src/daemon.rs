//! The `run` command: a long-running GPU daemon that claims GPU jobs from tracker-d, scores
//! their bundles with CLIP and writes dataset shards (see `shard` for the output contract).
//!
//! Stages, joined by bounded channels so memory stays bounded: the claimer holds at most
//! `--max-jobs` jobs (one semaphore permit each, released when the job is completed or
//! reported invalid); each job's bundle is downloaded, verified and parsed on its own task;
//! the scorer batches samples across jobs, has them decoded on the preprocessing pool
//! (`--preprocess-threads`, a core left to each model thread) and embedded on the model
//! threads (one per device, the next batch always queued), filters and tags; the committer,
//! running beside the scorer so the GPUs never wait on it, writes shards and completes each
//! job only after the shard holding its last pair is visible. A job waiting in
//! the open shard keeps its permit, so when every permit waits there the committer closes the
//! shard at once rather than leave the GPU idle until `--flush-interval`.
//!
//! Around them: `registration` registers again when the tracker forgets the daemon, and
//! `holdings` knows which jobs are still the daemon's; `liveness` tells the systemd watchdog
//! whether the stages move. On shutdown the daemon drains until `--drain-timeout` (or a second
//! stop request), then releases what it still holds.

mod batch;
mod commit;
mod commit_feed;
mod config;
mod download;
mod fetch_failure;
mod forbidden_address;
mod holdings;
mod jobs;
mod liveness;
mod main_backlog;
mod redirect;
mod registration;
mod scoring;
mod startup;
mod token_file;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cah_protocol::ClientType;
use cah_tracker_client::{TrackerClient, TrackerError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::config::{Config, RunArgs, parse_devices};
use self::liveness::Liveness;
use self::registration::Registration;
use self::startup::{Reached, until_reached};
use crate::backend::BackendThread;
use crate::backend::torch::{RuntimeInfo, TorchBackend};
use crate::metrics::Metrics;
use crate::output::Output;
use crate::output::s3::{S3Error, ShardBucket, Writer};

/// Runs the daemon until `shutdown` resolves, then drains: stops claiming, finishes the jobs
/// it holds, closes the open shard, completes the jobs and returns. Past `--drain-timeout` it
/// discards the open shard and releases the jobs it still holds instead.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics_listener = bind_metrics(&config).await?;
    run_with_listener(config, metrics_listener, shutdown).await
}

/// [`run`] for the binary: the first stop request (SIGTERM or SIGINT) starts the drain, a
/// second cuts it short as if `--drain-timeout` had passed.
pub async fn run_until_stopped(
    config: Config,
    stops: crate::shutdown::StopRequests,
) -> anyhow::Result<()> {
    let metrics_listener = bind_metrics(&config).await?;
    Box::pin(run_with_stops(
        config,
        metrics_listener,
        stops.nth(1),
        stops.nth(2),
    ))
    .await
}

/// [`run`] with an already bound metrics listener (tests bind `127.0.0.1:0`).
pub async fn run_with_listener(
    config: Config,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Boxed, here and in `run_until_stopped`: the whole daemon's state is about 16 KB, too
    // much to move around inline in every caller's future.
    Box::pin(run_with_stops(
        config,
        metrics_listener,
        shutdown,
        std::future::pending(),
    ))
    .await
}

async fn bind_metrics(config: &Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind the metrics listener {addr}"))?;
    Ok(Some(listener))
}

/// [`run_with_listener`], where `cut_short` resolving during the drain ends it as the drain
/// deadline does. A stop during the start (the model load included) ends it at once.
async fn run_with_stops(
    config: Config,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
    cut_short: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    tokio::pin!(shutdown, cut_short);
    let bucket = match &config.output {
        Output::Local(_) => None,
        Output::S3(location) => Some(ShardBucket::connect(
            location,
            &config.s3,
            Writer::this_process(&config.shard_dir),
        )?),
    };
    if let Some(bucket) = &bucket {
        tokio::select! {
            checked = bucket.check_credentials() => checked?,
            () = shutdown.as_mut() => return stopped_while_starting(),
        }
    }
    if let Some(bucket) = &bucket {
        // One daemon per prefix, and taken before the listing: shard numbers come from it, so a
        // daemon that waited for the prefix must list what the other one wrote meanwhile.
        let prefix = format!("the S3 prefix {}", bucket.url(""));
        if let Reached::Stopped =
            until_reached(&prefix, shutdown.as_mut(), S3Error::is_transient, || {
                bucket.claim_writer()
            })
            .await?
        {
            return stopped_while_starting();
        }
    }
    let published = match &bucket {
        Some(bucket) => {
            let store = format!("the S3 store at {}", bucket.url(""));
            match until_reached(&store, shutdown.as_mut(), S3Error::is_transient, || {
                bucket.published()
            })
            .await?
            {
                Reached::Yes(published) => published,
                Reached::Stopped => {
                    release_prefix(Some(bucket)).await;
                    return stopped_while_starting();
                }
            }
        }
        None => Default::default(),
    };
    let recovery = tokio::task::spawn_blocking({
        let shard_dir = config.shard_dir.clone();
        move || crate::shard::recover(&shard_dir, &published)
    })
    .await
    .context("recovery task failed")?
    .with_context(|| {
        let flag = match config.output {
            Output::Local(_) => "--output",
            Output::S3(_) => "--spool-dir",
        };
        format!(
            "cannot prepare the output folder {} ({flag}): check that it can be created and written",
            config.shard_dir.display()
        )
    })?;
    info!(
        output = %config.output,
        shard_dir = %config.shard_dir.display(),
        next_shard = recovery.next_number,
        deleted = ?recovery.deleted,
        "output ready"
    );

    let load = async {
        let model = config.model.clone();
        let (tokenizer, side) = tokio::task::spawn_blocking(move || {
            let tokenizer = crate::embed::load_tokenizer(&model)?;
            anyhow::Ok((tokenizer, crate::embed::read_image_size(&model)?))
        })
        .await
        .context("tokenizer load task failed")??;
        let backends = start_backends(&config).await?;
        anyhow::Ok((tokenizer, side, backends))
    };
    // The loads run in the blocking pool, so a stop request ends the start while they go on
    // there; main does not wait long for them.
    let (tokenizer, side, backends) = tokio::select! {
        loaded = load => loaded?,
        () = shutdown.as_mut() => {
            release_prefix(bucket.as_ref()).await;
            return stopped_while_starting();
        }
    };

    let client = TrackerClient::with_defaults(config.tracker.clone())
        .context("failed to build the tracker client")?;
    let tracker = format!("the tracker at {}", config.tracker);
    let session = match until_reached(
        &tracker,
        shutdown.as_mut(),
        TrackerError::is_retryable,
        || client.register(&config.nickname, ClientType::Gpu),
    )
    .await
    .with_context(|| format!("failed to register with {}", config.tracker))?
    {
        Reached::Yes(session) => session,
        Reached::Stopped => {
            release_prefix(bucket.as_ref()).await;
            return stopped_while_starting();
        }
    };
    let lease = client
        .info()
        .await
        .map(|info| Duration::from_secs(info.lease_seconds.max(1)))
        .unwrap_or(Duration::from_secs(300));
    info!(tracker = %config.tracker, lease_s = lease.as_secs(), "tracker reached");
    let token_file = token_file::TokenFile::open(&config.shard_dir);
    let registration = Arc::new(Registration::new(session, Arc::clone(&metrics), token_file));
    let liveness = Liveness::new();
    // Cancelled at the drain deadline.
    let abandon = CancellationToken::new();
    let writer_bucket = bucket.clone();
    let committer = commit::Committer::start(
        &config,
        Arc::clone(&registration),
        recovery,
        bucket,
        (Arc::clone(&metrics), Arc::clone(&liveness)),
        abandon.clone(),
    )
    .await?;
    // The shards an earlier run left are committed: its jobs can go back now.
    registration.say_bye_for_earlier_runs().await;
    let prompts = scoring::embed_prompts(&backends[0], &tokenizer).await?;

    // READY=1 after a forward pass (the prompts), as external-interfaces.md §2.3 asks.
    crate::systemd::ready();
    // Dropping `run` (a caller's timeout, or a test's simulated crash) stops its tasks too.
    let root = CancellationToken::new();
    let _cancel_on_drop = root.clone().drop_guard();
    if let Some(interval) = crate::systemd::watchdog_interval() {
        // A stage busy for a whole watchdog interval (the committer: three) is wedged; the
        // pings stop and systemd restarts the daemon at most one more interval later.
        let (liveness, stop) = (Arc::clone(&liveness), root.clone());
        tokio::spawn(async move {
            let check = move || liveness.check(interval);
            tokio::select! {
                () = stop.cancelled() => {}
                () = crate::systemd::watchdog(interval, check) => {}
            }
        });
    }
    if let Some(listener) = metrics_listener {
        info!(addr = ?listener.local_addr().ok(), "serving metrics");
        let stop = root.clone();
        tokio::spawn(crate::metrics::serve(
            listener,
            Arc::clone(&metrics),
            stop.cancelled_owned(),
        ));
    }
    let stop_renewing = root.child_token();
    let renewer = writer_bucket
        .clone()
        .map(|bucket| tokio::spawn(renew_writer(bucket, stop_renewing.clone())));
    let stop_claiming = root.child_token();
    let stop_heartbeat = root.child_token();
    let heartbeat = tokio::spawn(jobs::heartbeat(
        Arc::clone(&registration),
        lease,
        stop_heartbeat.clone(),
    ));
    let (job_sender, job_receiver) = tokio::sync::mpsc::channel(config.max_jobs as usize);
    let work_dir = config.shard_dir.join(".downloads");
    let claimer = tokio::spawn(jobs::claim_loop(
        jobs::ClaimContext {
            registration: Arc::clone(&registration),
            max_jobs: config.max_jobs,
            poll_interval: config.poll_interval,
            max_bundle_bytes: config.max_bundle_bytes,
            bundle_pixels_per_image: config.bundle_pixels_per_image,
            work_dir: work_dir.clone(),
            http: download::bundle_client()?,
            metrics: Arc::clone(&metrics),
            backoff: Arc::default(),
            fetch_failures: Arc::default(),
            unreachable_span: config.unreachable_span,
            download_limits: download::DownloadLimits {
                min_rate: config.download_min_rate,
                grace: config.download_rate_grace,
            },
        },
        job_sender,
        stop_claiming.clone(),
    ));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.preprocess_threads)
        .thread_name(|index| format!("clip-preprocess-{index}"))
        .build()
        .context("failed to start the preprocessing threads")?;
    info!(
        threads = config.preprocess_threads,
        "preprocessing pool started"
    );
    let scorer = scoring::Scorer {
        backends: backends.into_iter().map(Arc::new).collect(),
        preparer: batch::Preparer {
            tokenizer: Arc::new(tokenizer),
            side,
            pool: Arc::new(pool),
            metrics: Arc::clone(&metrics),
        },
        prompts,
        batch_size: config.batch_size,
        threshold: config.threshold,
        nsfw_policy: config.nsfw_policy,
        tags: config.tags,
        metrics: Arc::clone(&metrics),
        flush_interval: config.flush_interval,
        registration: Arc::clone(&registration),
        liveness,
        abandon: abandon.clone(),
    };
    let scoring = scorer.run(job_receiver, committer);
    tokio::pin!(scoring);
    let result = tokio::select! {
        result = &mut scoring => result,
        () = shutdown.as_mut() => {
            info!(
                drain_timeout_s = config.drain_timeout.as_secs_f64(),
                "draining: no new claims; finishing held jobs"
            );
            crate::systemd::stopping();
            stop_claiming.cancel();
            tokio::select! {
                result = &mut scoring => result,
                () = tokio::time::sleep(config.drain_timeout) => {
                    warn!(
                        held = registration.holdings.claims().len(),
                        "drain deadline passed; discarding the open shard and releasing the held jobs"
                    );
                    abandon.cancel();
                    scoring.await
                }
                () = cut_short.as_mut() => {
                    warn!(
                        held = registration.holdings.claims().len(),
                        "drain cut short by a second stop request; discarding the open shard and releasing the held jobs"
                    );
                    abandon.cancel();
                    scoring.await
                }
            }
        }
    };
    stop_claiming.cancel();
    if abandon.is_cancelled() {
        // Downloads still running would never finish in time.
        claimer.abort();
    }
    match claimer.await {
        Err(error) if !error.is_cancelled() => warn!(error = %error, "claimer task failed"),
        _ => {}
    }
    stop_heartbeat.cancel();
    let _ = heartbeat.await;
    if abandon.is_cancelled() {
        release_held(&registration, &metrics).await;
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
    }
    if result.is_err() && crate::shard::has_uncommitted(&config.shard_dir) {
        // A shard is visible but its hashes are not in `main`: a bye would hand its jobs to
        // another daemon at once, which would write their pairs again. Their leases run out
        // instead, and the restart commits the shard first.
        warn!("a written shard is not committed; leaving its jobs to their leases, no bye");
    } else if let Err(error) = registration.bye().await {
        warn!(error = %error, "failed to say bye to the tracker");
    }
    // No renewal may write the object again after it is deleted.
    stop_renewing.cancel();
    if let Some(renewer) = renewer {
        let _ = renewer.await;
    }
    if result.is_ok() && !crate::shard::has_uncommitted(&config.shard_dir) {
        release_prefix(writer_bucket.as_ref()).await;
    }
    info!("stopped");
    result
}

/// Writes the prefix's writer object every [`crate::output::s3::WRITER_RENEW_EVERY`] until
/// `stop`, which also ends a renewal under way; failures are logged (the uploads check the
/// prefix themselves).
async fn renew_writer(bucket: ShardBucket, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(crate::output::s3::WRITER_RENEW_EVERY) => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            renewed = bucket.renew_writer() => {
                if let Err(error) = renewed {
                    warn!(error = %error, "failed to renew the writer object of the S3 prefix");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Deletes the prefix's writer object at a clean stop, so that another daemon may take the
/// prefix at once; a failure is logged (the object frees the prefix once it is old).
async fn release_prefix(bucket: Option<&ShardBucket>) {
    if let Some(bucket) = bucket
        && let Err(error) = bucket.release_writer().await
    {
        warn!(error = %error, "failed to delete the writer object; the prefix frees itself later");
    }
}

/// Logs a stop requested while a service the start needs was unreachable (nothing is held yet).
fn stopped_while_starting() -> anyhow::Result<()> {
    info!("stopped before the start completed");
    Ok(())
}

/// Gives every job still held back to the tracker, which hands it out again at once instead of
/// when its lease expires.
async fn release_held(registration: &Registration, metrics: &Metrics) {
    let numbers = registration.holdings.take_all();
    let (session, _) = registration.session();
    let mut released = Vec::new();
    for number in numbers {
        match session.release(number).await {
            Ok(()) => released.push(number),
            // The tracker forgot this daemon: its jobs are back in the queue already.
            Err(TrackerError::TimedOut) => break,
            Err(error) => {
                warn!(job = number, error = %error, "failed to release a job; its lease will expire instead");
            }
        }
    }
    Metrics::add(&metrics.jobs_released, released.len() as u64);
    info!(jobs = ?released, "released the jobs still held");
}

async fn start_backends(config: &Config) -> anyhow::Result<Vec<BackendThread>> {
    if let Some(threads) = config.cpu_threads {
        crate::backend::torch::set_cpu_threads(threads);
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
