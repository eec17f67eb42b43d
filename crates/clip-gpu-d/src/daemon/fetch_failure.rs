//! Why a bundle could not be fetched, and what that means for its job: reported invalid (the
//! bundle is proven bad, gone, or stayed unreachable), or released for another try.

use std::time::Duration;

/// Claims of one job whose bundle download failed on the way before the job may be reported
/// invalid: a bundle that stays unreachable (a permanent 403, a store that lost it behind a
/// 5xx) would otherwise be released and handed out again forever.
pub(super) const MAX_FETCH_FAILURES: u32 = 3;

/// Shortest time between a job's first and latest failed download before its bundle counts
/// as unreachable (with at least [`MAX_FETCH_FAILURES`] failures): a store that is down for a
/// few minutes must not get good jobs sent back to be scraped again.
pub(super) const UNREACHABLE_SPAN: Duration = Duration::from_secs(10 * 60);

/// Longest `Retry-After` of a 429 or 503 honoured as the pause before the next claim.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Failed downloads per job number, as this daemon saw them, with the time of the first;
/// bounded (cleared past 10,000 jobs, when a store is down for everything anyway).
#[derive(Default)]
pub(super) struct FetchFailures {
    counts: std::sync::Mutex<std::collections::HashMap<u64, (u32, std::time::Instant)>>,
}

impl FetchFailures {
    /// Counts one failure of `number`; its count so far and the time since its first failure.
    pub(super) fn record(&self, number: u64) -> (u32, Duration) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if counts.len() >= 10_000 && !counts.contains_key(&number) {
            counts.clear();
        }
        let (count, first) = counts
            .entry(number)
            .or_insert((0, std::time::Instant::now()));
        *count += 1;
        (*count, first.elapsed())
    }

    /// Forgets the failures of `number` (its bundle was fetched, or it was given up on).
    pub(super) fn forget(&self, number: u64) {
        self.counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&number);
    }
}

/// Whether a bundle that failed `count` times over `span` counts as unreachable.
pub(super) fn unreachable(count: u32, span: Duration, min_span: Duration) -> bool {
    count >= MAX_FETCH_FAILURES && span >= min_span
}

/// How long the claimer waits after a local failure (disk full, unwritable download folder)
/// before it claims again: claiming at once would only fail the next job the same way.
pub(super) const LOCAL_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// Longest invalid reason sent to the tracker, in bytes: a reason echoing a hostile entry name
/// or a server's message would otherwise make the report itself too large to be accepted.
pub(super) const MAX_REASON_BYTES: usize = 512;

/// `error`'s text cut to at most [`MAX_REASON_BYTES`] on a character boundary, for the report.
pub(super) fn invalid_reason(error: &FetchError) -> String {
    crate::bundle::truncate_utf8(&error.to_string(), MAX_REASON_BYTES)
}

/// Why a bundle could not be fetched; [`FetchError::verdict`] says what that means for the job.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("bundle url {0:?} is not an http(s) url")]
    NotHttp(String),
    #[error("bundle url {0:?} names a link-local or cloud metadata address")]
    ForbiddenAddress(String),
    #[error("bundle download failed: {0}")]
    Http(String),
    #[error("the bundle is gone (HTTP {0})")]
    Gone(u16),
    #[error("the bundle store is busy (HTTP {status}); retry after {} s", .retry_after.as_secs())]
    Busy { status: u16, retry_after: Duration },
    #[error("the bundle could not be fetched in {claims} claims, the last time: {last}")]
    Unreachable { claims: u32, last: String },
    #[error("bundle is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bundle has {got} bytes, the tracker said {expected}")]
    Size { got: u64, expected: u64 },
    #[error("bundle sha256 {got} differs from the tracker's {expected}")]
    Digest { got: String, expected: String },
    #[error("job has no bundle location")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error("local io failed: {0}")]
    Local(String),
}

/// What a failed fetch does with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The bundle is proven bad (its bytes or content fail the checks) or the job has none:
    /// report it invalid, so that the job is scraped again.
    Invalid,
    /// The download failed on the way (HTTP status, connection, stall): release the job, whose
    /// bundle may be fine, for another try, and stop claiming for the poll interval.
    Release,
    /// This machine failed (disk, permissions, a panicked task): release the job and stop
    /// claiming for [`LOCAL_ERROR_BACKOFF`].
    ReleaseAndBackOff,
}

impl FetchError {
    /// The store's `Retry-After` (capped at [`MAX_RETRY_AFTER`]), when it sent one.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Busy { retry_after, .. } => Some((*retry_after).min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    pub(super) fn verdict(&self) -> Verdict {
        match self {
            FetchError::Http(_) | FetchError::Busy { .. } => Verdict::Release,
            FetchError::Local(_) | FetchError::Bundle(crate::bundle::BundleError::Open(_)) => {
                Verdict::ReleaseAndBackOff
            }
            FetchError::NotHttp(_)
            | FetchError::ForbiddenAddress(_)
            | FetchError::TooLarge { .. }
            | FetchError::Size { .. }
            | FetchError::Digest { .. }
            | FetchError::NoBundle
            | FetchError::Gone(_)
            | FetchError::Unreachable { .. }
            | FetchError::Bundle(_) => Verdict::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleError;

    #[test]
    fn invalid_reasons_are_capped_on_a_char_boundary() {
        let error = FetchError::Http("é".repeat(10_000));
        let reason = invalid_reason(&error);
        assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
        assert!(reason.starts_with("bundle download failed: éé"), "{reason}");
        assert!(reason.ends_with('…'), "{reason}");
        let short = FetchError::Gone(404);
        assert_eq!(invalid_reason(&short), short.to_string());
    }

    #[test]
    fn a_bundle_is_unreachable_only_after_failures_spanning_the_minimum() {
        let ten_minutes = UNREACHABLE_SPAN;
        assert!(!unreachable(3, Duration::from_secs(5), ten_minutes));
        assert!(!unreachable(2, Duration::from_secs(3600), ten_minutes));
        assert!(unreachable(3, ten_minutes, ten_minutes));
        let failures = FetchFailures::default();
        assert_eq!(failures.record(7).0, 1);
        assert_eq!(failures.record(7).0, 2);
        failures.forget(7);
        assert_eq!(failures.record(7).0, 1);
        let busy = FetchError::Busy {
            status: 503,
            retry_after: Duration::from_secs(86_400),
        };
        assert_eq!(busy.retry_after(), Some(MAX_RETRY_AFTER));
        assert_eq!(busy.verdict(), Verdict::Release);
    }

    #[test]
    fn only_a_bad_bundle_is_reported_invalid() {
        let cases = [
            (
                FetchError::Digest {
                    got: "00".to_owned(),
                    expected: "11".to_owned(),
                },
                Verdict::Invalid,
            ),
            (
                FetchError::Size {
                    got: 1,
                    expected: 2,
                },
                Verdict::Invalid,
            ),
            (FetchError::TooLarge { limit: 1 }, Verdict::Invalid),
            (FetchError::Bundle(BundleError::NoSamples), Verdict::Invalid),
            (
                FetchError::Bundle(BundleError::PixelBudget {
                    pixels: 2,
                    budget: 1,
                    per_image: 1,
                }),
                Verdict::Invalid,
            ),
            (
                FetchError::Bundle(BundleError::Io(std::io::Error::other("bad tar header"))),
                Verdict::Invalid,
            ),
            (FetchError::NoBundle, Verdict::Invalid),
            (FetchError::Gone(404), Verdict::Invalid),
            (FetchError::Gone(410), Verdict::Invalid),
            (
                FetchError::Unreachable {
                    claims: MAX_FETCH_FAILURES,
                    last: "HTTP status client error (403 Forbidden)".to_owned(),
                },
                Verdict::Invalid,
            ),
            (
                FetchError::Http("HTTP status server error (503 Service Unavailable)".to_owned()),
                Verdict::Release,
            ),
            (
                FetchError::Local("No space left on device".to_owned()),
                Verdict::ReleaseAndBackOff,
            ),
            (
                FetchError::Bundle(BundleError::Open(std::io::Error::other("gone"))),
                Verdict::ReleaseAndBackOff,
            ),
        ];
        for (error, verdict) in cases {
            assert_eq!(error.verdict(), verdict, "{error}");
        }
    }
}
