//! `scraper-d run`: register, claim whole WATs, work them (see `daemon/claim.rs`), repeat until
//! stopped; systemd readiness, watchdog and status along the way.

mod broken_node;
mod broken_wat;
mod claim;
mod heartbeat;
mod progress;
mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cah_protocol::ClientType;
use cah_protocol::ext::Job;
use cah_tracker_client::{Session, TrackerClient, TrackerError};
use tokio::sync::Semaphore;

use crate::config::RunConfig;
use crate::fetch::Fetcher;
use crate::job::Pipeline;
use crate::metrics::Metrics;
use crate::resolver::Resolver;
use crate::shutdown::{AbortOnDrop, Stop};
use crate::systemd;

pub use claim::ClaimOutcome;

/// How long a claim in flight when the stop arrives may still take: its jobs are then released.
const CLAIM_AFTER_STOP: Duration = Duration::from_secs(2);

/// What one run did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs completed (bundle uploaded and accepted).
    pub completed: Vec<u64>,
    /// Jobs given back (shutdown, a WAT that could not be read this time, a node that could
    /// not download).
    pub released: Vec<u64>,
    /// Jobs whose WAT can never be used (no WARC record, truncated, too large, 404 or 410),
    /// reported to the tracker instead of released.
    pub reported: Vec<u64>,
    /// Jobs whose lease was lost while working on them.
    pub lost: Vec<u64>,
}

/// Runs the daemon until `shutdown` resolves (then finishes or releases the current jobs
/// within `config.shutdown_grace`), or, with `exit_when_idle`, until no job is left.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunSummary> {
    let stop = Stop::spawn(shutdown);
    prepare_work_dir(&config.work_dir)?;
    remove_stale_bundles(&config.work_dir);
    let resolver = Resolver::new(&config.resolver, config.policy.clone())
        .context("failed to build the dns resolver")?;
    let fetcher =
        Fetcher::new(config.fetch.clone(), resolver).context("failed to build the http client")?;
    let metrics = Arc::new(Metrics::new(fetcher.large_bodies()));
    if let Some(address) = config.metrics_listen {
        crate::metrics::serve(address, metrics.clone())
            .await
            .with_context(|| format!("failed to serve metrics on {address}"))?;
    }
    let pipeline = Pipeline {
        fetcher,
        validate: Arc::new(config.validate.clone()),
        resize: Arc::new(config.resize.clone()),
        cpu: Arc::new(Semaphore::new(config.decode_threads.max(1))),
        concurrency: config.concurrency,
        tail: config.tail,
    };
    let wat_client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .context("failed to build the wat http client")?;
    let tracker = TrackerClient::with_defaults(config.tracker.clone())
        .context("failed to build the tracker client")?;
    // Ready before the tracker answers: waiting for it, at boot as later, is this daemon's
    // normal work (shown in the status line), so it must neither hold `systemctl start` (and
    // cloud-init's `enable --now`) nor run into the unit's start timeout; the watchdog covers
    // the wait.
    systemd::ready(&waiting_status(&config, None));
    let watchdog = systemd::spawn_watchdog().map(AbortOnDrop);
    let Some(mut session) = register(&tracker, &config, &stop).await else {
        systemd::stopping();
        return Ok(RunSummary::default());
    };
    tracing::info!(tracker = %config.tracker, "registered with the tracker");
    systemd::status(&format!("{}: idle", config.node_name));
    let mut summary = RunSummary::default();
    let worker = claim::Worker {
        config: &config,
        pipeline: &pipeline,
        wat_client: &wat_client,
        stop: &stop,
        metrics: &metrics,
    };
    // Set by a registration until a claim succeeds: a claim that answers `TimedOut` (404) right
    // after one is not a forgotten token but a tracker without the extension API.
    let mut reregistered = false;
    while !stop.is_stopping() {
        let Some(claimed) = claim_or_stop(&session, &stop, &mut summary.released).await else {
            break;
        };
        let jobs = match claimed {
            Ok(jobs) if stop.is_stopping() => {
                summary
                    .released
                    .extend(release_at_once(&session, &jobs).await);
                break;
            }
            Ok(jobs) => {
                reregistered = false;
                jobs
            }
            Err(TrackerError::TimedOut) => {
                if reregistered {
                    tracing::error!(
                        wait_s = config.idle_wait.as_secs_f64(),
                        "the tracker answers claims with 404 right after a registration: it lacks the extension api (/api/ext/claim) or forgets clients at once"
                    );
                    idle(&config, &stop).await;
                    if stop.is_stopping() {
                        break;
                    }
                } else {
                    tracing::warn!("the tracker forgot this client, registering again");
                }
                let registration = tokio::select! {
                    result = session.reregister() => result,
                    _ = stop.wait() => break,
                };
                match registration {
                    Ok(()) => reregistered = true,
                    Err(error) => {
                        tracing::warn!(error = %error, "registration failed");
                        idle(&config, &stop).await;
                    }
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %error, "claim failed");
                idle(&config, &stop).await;
                continue;
            }
        };
        if jobs.is_empty() {
            if config.exit_when_idle {
                tracing::info!("no job left, exiting");
                break;
            }
            tracing::debug!("no job available");
            idle(&config, &stop).await;
            continue;
        }
        let (jobs, mismatched) = one_wat(jobs);
        if !mismatched.is_empty() {
            summary
                .released
                .extend(release_at_once(&session, &mismatched).await);
        }
        let outcome = Box::pin(worker.work(&session, jobs)).await;
        let failed = outcome.failed;
        summary.completed.extend(outcome.completed);
        summary.released.extend(outcome.released);
        summary.reported.extend(outcome.reported);
        summary.lost.extend(outcome.lost);
        if failed {
            // A failed claim (a full disk, a tracker refusing uploads) would fail again at
            // once: claiming straight away would download and extract the same WAT in a loop.
            // After a WAT reported unusable the wait is cheap insurance too: a node whose
            // network turns every download into an error page would otherwise report WAT
            // after WAT as fast as it can fetch them.
            tracing::info!(
                wait_s = config.idle_wait.as_secs_f64(),
                "waiting after a failed claim"
            );
            idle(&config, &stop).await;
        }
        let forgotten = pipeline.fetcher.forget_idle_hosts();
        tracing::debug!(hosts = forgotten, "per-host state dropped");
        systemd::status(&format!("{}: idle", config.node_name));
    }
    systemd::stopping();
    drop(watchdog);
    if let Err(error) = tokio::time::timeout(Duration::from_secs(5), session.bye()).await {
        tracing::debug!(error = %error, "bye timed out");
    }
    tracing::info!(
        completed = summary.completed.len(),
        released = summary.released.len(),
        reported = summary.reported.len(),
        lost = summary.lost.len(),
        "scraper stopped"
    );
    Ok(summary)
}

/// A claim raced against the stop signal (the client retries a failing tracker for minutes);
/// `None` on a stop. A claim in flight at the stop gets [`CLAIM_AFTER_STOP`] to answer, so the
/// jobs it hands out are released at once instead of waiting out their leases.
async fn claim_or_stop(
    session: &Session,
    stop: &Stop,
    released: &mut Vec<u64>,
) -> Option<Result<Vec<Job>, TrackerError>> {
    let claim = session.claim(2, true);
    tokio::pin!(claim);
    tokio::select! {
        result = &mut claim => return Some(result),
        _ = stop.wait() => {}
    }
    if let Ok(Ok(jobs)) = tokio::time::timeout(CLAIM_AFTER_STOP, &mut claim).await {
        released.extend(release_at_once(session, &jobs).await);
    }
    None
}

/// Splits a claim into the jobs of its first job's WAT, one per half, and the others: a claim
/// is worked as one pass over one WAT, so a job of another WAT or a second job of the same
/// half would be completed with the wrong candidates.
fn one_wat(jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let mut kept: Vec<Job> = Vec::new();
    let mut mismatched = Vec::new();
    for job in jobs {
        let fits = kept.first().is_none_or(|first| {
            first.wat_url == job.wat_url && kept.iter().all(|other| other.shard != job.shard)
        });
        if fits {
            kept.push(job);
        } else {
            tracing::warn!(
                job = job.number,
                shard = job.shard,
                wat = %job.wat_url,
                "the claim mixes wats or repeats a half, releasing this job"
            );
            mismatched.push(job);
        }
    }
    (kept, mismatched)
}

/// Jobs claimed after the stop (or that do not belong to the claim's WAT) go straight back.
async fn release_at_once(session: &Session, jobs: &[Job]) -> Vec<u64> {
    let numbers: Vec<u64> = jobs.iter().map(|job| job.number).collect();
    if !numbers.is_empty() {
        tracing::info!(jobs = ?numbers, "releasing jobs not to be worked");
        claim::release(session, &numbers).await;
    }
    numbers
}

async fn register(tracker: &TrackerClient, config: &RunConfig, stop: &Stop) -> Option<Session> {
    loop {
        let registration = tokio::select! {
            result = tracker.register(&config.nickname, ClientType::Cpu) => result,
            _ = stop.wait() => return None,
        };
        match registration {
            Ok(session) => return Some(session),
            Err(error) => {
                tracing::warn!(error = %error, "registration failed, retrying");
                systemd::status(&waiting_status(config, Some(&error)));
            }
        }
        idle(config, stop).await;
        if stop.is_stopping() {
            return None;
        }
    }
}

/// The status line while the tracker has not answered a registration yet.
fn waiting_status(config: &RunConfig, error: Option<&TrackerError>) -> String {
    let mut status = format!(
        "{}: waiting for the tracker at {}",
        config.node_name, config.tracker
    );
    if let Some(error) = error {
        status.push_str(&format!(" ({error})"));
    }
    status
}

async fn idle(config: &RunConfig, stop: &Stop) {
    tokio::select! {
        _ = tokio::time::sleep(config.idle_wait) => {}
        _ = stop.wait() => {}
    }
}

/// Creates the work folder when it is missing, its last component only (a mistyped path must
/// not grow a tree of folders), and says so.
fn prepare_work_dir(work_dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::create_dir(work_dir) {
        Ok(()) => {
            tracing::info!(work_dir = %work_dir.display(), "created the work folder");
            Ok(())
        }
        Err(error)
            if error.kind() == std::io::ErrorKind::AlreadyExists
                && std::fs::metadata(work_dir).is_ok_and(|metadata| metadata.is_dir()) =>
        {
            Ok(())
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "failed to create the work folder {} (--work-dir, SCRAPER_WORK_DIR): its parent must be a folder that exists",
                work_dir.display()
            )
        }),
    }
}

/// Bundles left by a crash belong to jobs whose leases expire: never upload them.
fn remove_stale_bundles(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("job-") && (name.ends_with(".tar") || name.ends_with(".tar.tmp")) {
            tracing::info!(file = %name, "removing a bundle left by an earlier run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
