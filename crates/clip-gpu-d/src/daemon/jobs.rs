//! Claiming GPU jobs, renewing their leases, and fetching and checking their bundles.
//!
//! When the tracker forgot the daemon (a claim or heartbeat answers `TimedOut`), the claimer
//! or the heartbeat registers again (see `registration`) and carries on; a heartbeat that no
//! longer lists a job means its lease expired. Either way the job is lost: the tracker hands it
//! out again, and this daemon drops its copy at the next stage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cah_protocol::ext::Job;
use cah_tracker_client::TrackerError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::download::{DownloadLimits, download};
use super::fetch_failure::{
    FetchError, FetchFailures, LOCAL_ERROR_BACKOFF, Verdict, invalid_reason, unreachable,
};
use super::holdings::Claim;
use super::registration::Registration;
use crate::bundle::Sample;
use crate::metrics::{Metrics, Stage};

/// A job whose bundle was fetched and checked, with the permit that counts it as held.
#[derive(Debug)]
pub(super) struct LoadedJob {
    pub(super) claim: Claim,
    pub(super) samples: Vec<Sample>,
    pub(super) permit: OwnedSemaphorePermit,
}

/// What the claimer needs.
#[derive(Clone)]
pub(super) struct ClaimContext {
    pub(super) registration: Arc<Registration>,
    pub(super) max_jobs: u32,
    pub(super) poll_interval: Duration,
    pub(super) max_bundle_bytes: u64,
    /// Decoded pixels a bundle may hold per image on average.
    pub(super) bundle_pixels_per_image: u64,
    pub(super) work_dir: PathBuf,
    pub(super) http: reqwest::Client,
    pub(super) metrics: Arc<Metrics>,
    pub(super) backoff: Arc<Backoff>,
    /// Failed downloads per job number (see `MAX_FETCH_FAILURES`).
    pub(super) fetch_failures: Arc<FetchFailures>,
    /// Shortest span of failures before a bundle counts as unreachable (`UNREACHABLE_SPAN`).
    pub(super) unreachable_span: Duration,
    pub(super) download_limits: DownloadLimits,
}

/// The time before which the claimer must not claim, set after a local failure.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Backoff {
    fn start(&self, pause: Duration) {
        let until = tokio::time::Instant::now() + pause;
        let mut guard = self
            .until
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *guard = Some(guard.map_or(until, |current| current.max(until)));
    }

    /// Whether a pause is pending.
    fn pending(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .is_some_and(|until| until > tokio::time::Instant::now())
    }

    /// Takes the pending deadline, if any.
    fn take(&self) -> Option<tokio::time::Instant> {
        self.until
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }
}

/// Claims jobs while permits are free, and fetches each on its own task, until `stop`.
pub(super) async fn claim_loop(
    context: ClaimContext,
    jobs: mpsc::Sender<LoadedJob>,
    stop: CancellationToken,
) {
    let _ = tokio::fs::remove_dir_all(&context.work_dir).await;
    if let Err(error) = tokio::fs::create_dir_all(&context.work_dir).await {
        warn!(error = %error, dir = %context.work_dir.display(), "failed to create the download folder");
    }
    let permits = Arc::new(Semaphore::new(context.max_jobs as usize));
    let mut fetches = tokio::task::JoinSet::new();
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let mut held = vec![first];
        while let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
            held.push(permit);
        }
        // A failed fetch starts the pause before it gives its permit back.
        if let Some(until) = context.backoff.take() {
            drop(held);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(until) => continue,
            }
        }
        if jobs.is_closed() {
            break; // the scorer stopped: nothing would score a claimed job
        }
        let (session, generation) = context.registration.session();
        // Until the claimed jobs are recorded, a heartbeat may list jobs the daemon does not
        // know yet: it must not release them (see `Holdings::unknown`).
        let claiming = context.registration.holdings.change();
        let claimed = match session.claim(held.len() as u32, false).await {
            Ok(claimed) => claimed,
            Err(TrackerError::TimedOut) => match context.registration.renew(generation).await {
                // Claim again at once under the new token.
                Ok(()) => continue,
                Err(error) => {
                    warn!(error = %error, "failed to register with the tracker again");
                    Vec::new()
                }
            },
            Err(error) => {
                warn!(error = %error, "claim failed");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            drop((held, claiming));
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(context.poll_interval) => continue,
            }
        }
        if stop.is_cancelled() || jobs.is_closed() {
            // The daemon began to stop (a write failed, say) while the claim was in flight:
            // give the jobs straight back rather than download bundles nobody will score.
            for job in &claimed {
                let _ = session.release(job.number).await;
            }
            info!(
                n_jobs = claimed.len(),
                "stopping; released the jobs just claimed"
            );
            break;
        }
        if context.backoff.pending() {
            // A fetch failed while the claim was in flight, and may have released one of these
            // very jobs: the pause it asked for starts before they are fetched.
            for job in &claimed {
                let _ = session.release(job.number).await;
            }
            info!(
                n_jobs = claimed.len(),
                "claims paused meanwhile; released the jobs just claimed"
            );
            continue;
        }
        info!(n_jobs = claimed.len(), "claimed gpu jobs");
        Metrics::add(&context.metrics.jobs_claimed, claimed.len() as u64);
        for job in claimed {
            if job.start_id >= job.end_id {
                // Every sample ID would be outside the range: reporting the bundle invalid
                // would blame the scraper for the tracker's data.
                warn!(
                    job = job.number,
                    start_id = job.start_id,
                    end_id = job.end_id,
                    "the tracker issued a job with an empty or inverted sample id range; releasing it (check the tracker's jobs table)"
                );
                context.backoff.start(context.poll_interval);
                if session.release(job.number).await.is_ok() {
                    Metrics::add(&context.metrics.jobs_released, 1);
                }
                continue;
            }
            let Some(permit) = held.pop() else {
                // The tracker gave more than asked: give the extra back.
                warn!(
                    job = job.number,
                    "tracker sent more jobs than asked; releasing"
                );
                let _ = session.release(job.number).await;
                continue;
            };
            let claim = context
                .registration
                .holdings
                .claimed(job.number, generation);
            let span = info_span!("job", job = job.number);
            fetches
                .spawn(fetch(context.clone(), job, claim, permit, jobs.clone()).instrument(span));
        }
        drop(claiming);
        while fetches.try_join_next().is_some() {}
    }
    while fetches.join_next().await.is_some() {}
}

/// Renews the leases of the held jobs until `stop`, and drops the jobs the tracker took back.
/// Nothing is sent while no job is held: the claims keep the registration alive then.
pub(super) async fn heartbeat(
    registration: Arc<Registration>,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        renew_leases(&registration).await;
    }
}

/// One heartbeat: renews the leases of the jobs held and learns which of them the tracker
/// took back (also called just before a shard closes, so that it holds no lost job's pairs).
pub(super) async fn renew_leases(registration: &Registration) {
    let asked = registration.holdings.claims();
    if asked.is_empty() {
        return;
    }
    let (session, generation) = registration.session();
    let mark = registration.holdings.quiet_mark();
    match session.heartbeat("scoring").await {
        Ok(response) => {
            let lost = registration.holdings.lose_missing(&asked, &response.jobs);
            if !lost.is_empty() {
                warn!(jobs = ?lost, "leases expired; dropping those jobs");
            }
            debug!(held = response.jobs.len(), "leases renewed");
            // Jobs of a claim whose answer never came (the client timed out and retried): the
            // tracker holds them for this daemon, which would renew them for ever.
            let unknown = mark.map_or_else(Vec::new, |mark| {
                registration.holdings.unknown(mark, &response.jobs)
            });
            for number in unknown {
                match session.release(number).await {
                    Ok(()) => {
                        Metrics::add(&registration.metrics.jobs_released, 1);
                        warn!(
                            job = number,
                            "released a job claimed by a claim whose answer was lost"
                        );
                    }
                    Err(error) => {
                        warn!(job = number, error = %error, "failed to release a job claimed by a lost claim answer");
                    }
                }
            }
        }
        Err(TrackerError::TimedOut) => {
            if let Err(error) = registration.renew(generation).await {
                warn!(error = %error, "failed to register with the tracker again");
            }
        }
        Err(error) => warn!(error = %error, "heartbeat failed"),
    }
}

async fn fetch(
    context: ClaimContext,
    job: Job,
    claim: Claim,
    permit: OwnedSemaphorePermit,
    jobs: mpsc::Sender<LoadedJob>,
) {
    let path = download_path(&context.work_dir, claim);
    let started = std::time::Instant::now();
    // Cancelled when the claim is lost: a slow download must not hold the permit meanwhile.
    let lost = context.registration.holdings.cancellation(claim);
    let result = tokio::select! {
        result = load(&context, &job, &path) => Some(result),
        () = lost.cancelled() => None,
    };
    context.metrics.observe(Stage::Download, started.elapsed());
    let _ = tokio::fs::remove_file(&path).await;
    let Some(result) = result.filter(|_| context.registration.holdings.is_held(claim)) else {
        info!("job lost to the tracker while its bundle was fetched; dropped");
        return;
    };
    match result {
        Ok(samples) => {
            context.fetch_failures.forget(job.number);
            debug!(n_samples = samples.len(), "bundle loaded");
            let loaded = LoadedJob {
                claim,
                samples,
                permit,
            };
            if jobs.send(loaded).await.is_err() {
                warn!("scorer stopped; the job's lease will expire");
            }
        }
        Err(error) => match error.verdict() {
            Verdict::Invalid => report_invalid(&context, &job, claim, &error).await,
            Verdict::Release => {
                let (count, span) = context.fetch_failures.record(job.number);
                if unreachable(count, span, context.unreachable_span) {
                    context.fetch_failures.forget(job.number);
                    let error = FetchError::Unreachable {
                        claims: count,
                        last: error.to_string(),
                    };
                    report_invalid(&context, &job, claim, &error).await;
                    return;
                }
                // A store that is down would otherwise be asked again at once, job after job;
                // one that said when to come back (429, 503 with Retry-After) is believed.
                let pause = error.retry_after().unwrap_or(context.poll_interval);
                warn!(
                    error = %error,
                    failures = count,
                    pause_s = pause.as_secs_f64(),
                    "bundle download failed; releasing the job for another try"
                );
                context.backoff.start(pause);
                release(&context, &job, claim).await;
            }
            Verdict::ReleaseAndBackOff => {
                error!(
                    error = %error,
                    dir = %context.work_dir.display(),
                    pause_s = LOCAL_ERROR_BACKOFF.as_secs(),
                    "cannot fetch bundles on this machine: make the download folder writable and free disk space; releasing the job and pausing claims"
                );
                context.backoff.start(LOCAL_ERROR_BACKOFF);
                release(&context, &job, claim).await;
            }
        },
    }
}

/// Where `claim`'s bundle is downloaded: one file per claim, so that two fetches of one job
/// (claimed again after the tracker forgot the daemon while the first still runs) never write,
/// read or delete each other's file.
fn download_path(work_dir: &Path, claim: Claim) -> PathBuf {
    work_dir.join(format!("job-{}-{}.tar", claim.number, claim.id()))
}

/// Reports the job invalid; counts it and stops holding it only once the tracker took the
/// report. A report that fails releases the job instead (or leaves it to its lease when that
/// fails too), so it is never orphaned: held by the tracker for a daemon that forgot it.
async fn report_invalid(context: &ClaimContext, job: &Job, claim: Claim, error: &FetchError) {
    let reason = invalid_reason(error);
    warn!(reason = %reason, "bundle rejected; reporting the job invalid");
    let finishing = context.registration.holdings.change();
    let (session, generation) = context.registration.session();
    match session.report_invalid(job.number, &reason).await {
        Ok(()) => {
            context.registration.holdings.finish(claim);
            Metrics::add(&context.metrics.jobs_invalid, 1);
        }
        // The tracker already took the job back.
        Err(TrackerError::TimedOut) => {
            context.registration.holdings.finish(claim);
            let _ = context.registration.renew(generation).await;
        }
        Err(error) => {
            warn!(error = %error, "failed to report the job invalid; releasing it");
            drop(finishing);
            release(context, job, claim).await;
        }
    }
}

/// Gives the job back untouched: its bundle stays, and the tracker hands it out again.
async fn release(context: &ClaimContext, job: &Job, claim: Claim) {
    let _finishing = context.registration.holdings.change();
    context.registration.holdings.finish(claim);
    let (session, generation) = context.registration.session();
    match session.release(job.number).await {
        Ok(()) => Metrics::add(&context.metrics.jobs_released, 1),
        // The tracker already took the job back.
        Err(TrackerError::TimedOut) => {
            let _ = context.registration.renew(generation).await;
        }
        Err(error) => {
            warn!(error = %error, "failed to release the job; its lease will expire instead");
        }
    }
}

async fn load(context: &ClaimContext, job: &Job, path: &Path) -> Result<Vec<Sample>, FetchError> {
    let location = job.bundle.as_ref().ok_or(FetchError::NoBundle)?;
    download(
        &context.http,
        location,
        path,
        context.max_bundle_bytes,
        context.download_limits,
    )
    .await?;
    let (path, start, end) = (path.to_owned(), job.start_id, job.end_id);
    let pixels_per_image = context.bundle_pixels_per_image;
    tokio::task::spawn_blocking(move || {
        crate::bundle::read_bundle(&path, start, end, pixels_per_image)
    })
    .await
    .map_err(|error| FetchError::Local(error.to_string()))?
    .map_err(FetchError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::holdings::Holdings;

    #[test]
    fn two_claims_of_one_job_download_to_different_files() {
        let holdings = Holdings::new(Metrics::new());
        let first = holdings.claimed(7, 0);
        // The tracker forgot the daemon; job 7 is claimed again while the first fetch runs.
        holdings.lose_generation(0);
        let again = holdings.claimed(7, 1);
        let dir = Path::new("/downloads");
        assert_ne!(download_path(dir, first), download_path(dir, again));
        assert!(download_path(dir, again).starts_with(dir));
    }
}
