//! One job half from candidates to a bundle file: downloads shuffled across hosts, validated
//! and resized on a bounded pool of blocking threads, streamed into the tar.

mod dispatch;
mod host_tally;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cah_protocol::bundle::{BUNDLE_FORMAT_VERSION, BundleSample, BundleStats};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use url::Url;

use dispatch::{Dispatch, Start};
use host_tally::HostTally;
pub use host_tally::{Answer, FailedHosts, MAX_COUNTED_HOSTS, SameAnswer, Skipped};
use tail::TailClock;
pub use tail::{TAIL_STARTS_AT_PERMILLE, TailPolicy};

use crate::Candidate;
use crate::bundle::{BundleError, BundleWriter};
use crate::fetch::Fetcher;
use crate::resize::{ResizeConfig, resize_and_encode};
use crate::stats::{Outcome, OutcomeCounts};
use crate::validate::{ValidateConfig, decode};

/// Everything a download needs, shared by all jobs of a process.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub fetcher: Fetcher,
    pub validate: Arc<ValidateConfig>,
    pub resize: Arc<ResizeConfig>,
    /// Images decoded and resized at once (default: the number of CPUs).
    pub cpu: Arc<Semaphore>,
    /// Images downloaded at once by one job half (default 64).
    pub concurrency: usize,
    /// How long the last candidates of a half may take ([`TailPolicy`]).
    pub tail: TailPolicy,
}

/// A stored image and what the bundle says about it.
#[derive(Debug)]
pub struct Processed {
    pub jpeg: Vec<u8>,
    pub sample: BundleSample,
}

/// The result of one half: the bundle file and its counts.
#[derive(Debug)]
pub struct HalfOutput {
    pub bundle: PathBuf,
    pub stats: BundleStats,
    pub outcomes: OutcomeCounts,
    /// How the failures spread over hosts, counted up to [`MAX_COUNTED_HOSTS`]: failures on a
    /// few hosts are the hosts', not the node's.
    pub failed_hosts: FailedHosts,
}

impl Pipeline {
    /// Downloads `candidates` and writes the bundle of job `job` to `bundle_path`; `done`
    /// counts finished candidates for progress reports.
    pub async fn run_half(
        &self,
        job: u64,
        mut candidates: Vec<Candidate>,
        bundle_path: &Path,
        done: Arc<AtomicU64>,
    ) -> Result<HalfOutput, BundleError> {
        candidates.shuffle(&mut rand::rng());
        let total = candidates.len() as u64;
        let mut writer = BundleWriter::create(bundle_path)?;
        let mut outcomes = OutcomeCounts::default();
        let mut tally = HostTally::default();
        let dispatch = Mutex::new(Dispatch::new(candidates, self.fetcher.per_host()));
        let start = |(candidate, host): Start| {
            let url = candidate.url.clone();
            let fetching = Fetching {
                dispatch: &dispatch,
                host,
            };
            async move { (url, self.attempt(candidate, Some(fetching)).await) }
        };
        let mut running = FuturesUnordered::new();
        let mut tail = TailClock::start(self.tail);
        let mut finished = 0;
        loop {
            while running.len() < self.concurrency.max(1) {
                let Some(next) = lock(&dispatch).next() else {
                    break;
                };
                running.push(start(next));
            }
            let next = match tail.ends() {
                None => running.next().await,
                Some(at) => match tokio::time::timeout_at(at, running.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // Dropping `running` below cancels what is still waiting.
                        let abandoned = total - finished;
                        outcomes.add_many(Outcome::Abandoned, abandoned);
                        done.fetch_add(abandoned, Ordering::Relaxed);
                        tail.log_abandoned(job, abandoned);
                        break;
                    }
                },
            };
            let Some((url, result)) = next else {
                // Nothing running: every candidate has started (held ones start once their
                // host has room, and a host with none has some of them running).
                debug_assert_eq!(lock(&dispatch).left(), 0);
                break;
            };
            finished += 1;
            tail.finished(finished, total);
            done.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(processed) => {
                    writer.add(processed.sample, &processed.jpeg)?;
                    outcomes.add(Outcome::Ok);
                }
                Err(skipped) => {
                    tally.record(&url, &skipped);
                    outcomes.add(skipped.outcome);
                }
            }
        }
        drop(running);
        let stats = BundleStats {
            format_version: BUNDLE_FORMAT_VERSION,
            job,
            candidates: total,
            stored: 0,
            outcomes: outcomes.by_name(),
        };
        let finish_stats = stats.clone();
        let bundle = tokio::task::spawn_blocking(move || writer.finish(finish_stats))
            .await
            .map_err(|error| BundleError::Io {
                path: bundle_path.to_path_buf(),
                cause: std::io::Error::other(error),
            })??;
        let stats = BundleStats {
            stored: outcomes.get(Outcome::Ok),
            ..stats
        };
        Ok(HalfOutput {
            bundle,
            stats,
            outcomes,
            failed_hosts: tally.finish(),
        })
    }

    /// Downloads, validates and resizes one candidate.
    pub async fn process(&self, candidate: Candidate) -> Result<Processed, Outcome> {
        self.attempt(candidate, None)
            .await
            .map_err(|skipped| skipped.outcome)
    }

    /// [`Pipeline::process`], telling which refused body came back.
    /// `fetching`, if any, is let go of once the download is done (before decoding), so its
    /// host may start another.
    async fn attempt(
        &self,
        candidate: Candidate,
        fetching: Option<Fetching<'_>>,
    ) -> Result<Processed, Skipped> {
        let url = Url::parse(&candidate.url).map_err(|_| Outcome::BadUrl)?;
        let fetched = self.fetcher.fetch_answered(&url).await;
        drop(fetching);
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(skipped) => {
                tracing::debug!(url = %candidate.url, outcome = skipped.outcome.as_str(), "image skipped");
                return Err(skipped);
            }
        };
        // A large body waits here with its bytes and its large-body permit; decode permits are
        // held only by the closure below, which waits for nothing (see `crate::body`).
        let permit = self.cpu.acquire().await.map_err(|_| Outcome::DecodeError)?;
        let validate = self.validate.clone();
        let resize = self.resize.clone();
        let bytes = fetched.bytes;
        let large = fetched.large;
        let stored = tokio::task::spawn_blocking(move || {
            let decoded = decode(&bytes, &validate, Some(resize.shorter_side))
                .map_err(|outcome| Skipped::refused(outcome, &bytes));
            // The body is not needed past decoding: free it, then let the next large one in.
            drop(bytes);
            drop(large);
            let decoded = decoded?;
            let (width, height) = (decoded.original_width, decoded.original_height);
            let stored = resize_and_encode(decoded, &resize).ok_or(Outcome::DecodeError)?;
            let sha256 = hex(&Sha256::digest(&stored.jpeg));
            Ok::<_, Skipped>((stored, width, height, sha256))
        })
        .await
        .map_err(|_| Skipped::from(Outcome::DecodeError));
        drop(permit);
        let (stored, original_width, original_height, sha256) = match stored.and_then(|r| r) {
            Ok(stored) => stored,
            Err(skipped) => {
                tracing::debug!(url = %candidate.url, outcome = skipped.outcome.as_str(), "image skipped");
                return Err(skipped);
            }
        };
        let sample = BundleSample {
            sample_id: candidate.sample_id,
            file: format!("{}.jpg", candidate.sample_id),
            url: candidate.url,
            final_url: fetched.final_url.to_string(),
            alt: candidate.alt,
            page_url: candidate.page_url,
            license: candidate.license,
            language: candidate.language,
            original_width,
            original_height,
            width: stored.width,
            height: stored.height,
            bytes: stored.jpeg.len() as u64,
            sha256,
        };
        Ok(Processed {
            jpeg: stored.jpeg,
            sample,
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// A started download of a half, counted against its host until it is dropped (done,
/// failed or cancelled).
struct Fetching<'a> {
    dispatch: &'a Mutex<Dispatch>,
    host: Option<String>,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        lock(self.dispatch).finished(self.host.as_deref());
    }
}

fn lock(dispatch: &Mutex<Dispatch>) -> std::sync::MutexGuard<'_, Dispatch> {
    dispatch
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
