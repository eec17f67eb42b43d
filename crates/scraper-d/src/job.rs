//! One job half from candidates to a bundle file: downloads shuffled across hosts, validated
//! and resized on a bounded pool of blocking threads, streamed into the tar.

mod host_tally;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cah_protocol::bundle::{BUNDLE_FORMAT_VERSION, BundleSample, BundleStats};
use futures_util::StreamExt;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use url::Url;

use host_tally::HostTally;
pub use host_tally::{Answer, FailedHosts, MAX_COUNTED_HOSTS, SameAnswer, Skipped};

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
        let mut results = futures_util::stream::iter(candidates)
            .map(|candidate| {
                let url = candidate.url.clone();
                async move { (url, self.attempt(candidate).await) }
            })
            .buffer_unordered(self.concurrency.max(1));
        while let Some((url, result)) = results.next().await {
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
        self.attempt(candidate)
            .await
            .map_err(|skipped| skipped.outcome)
    }

    /// [`Pipeline::process`], telling which refused body came back.
    async fn attempt(&self, candidate: Candidate) -> Result<Processed, Skipped> {
        let url = Url::parse(&candidate.url).map_err(|_| Outcome::BadUrl)?;
        let fetched = self.fetcher.fetch_answered(&url).await;
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
