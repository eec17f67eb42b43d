//! Why a bundle could not be fetched, and what that means for its job: reported invalid (the
//! bundle is proven bad, gone, or stayed unreachable), or released for another try.

use std::time::Duration;

/// Claims of one job whose bundle download failed on the way before the job is reported
/// invalid: a bundle that stays unreachable (a permanent 403, a store that lost it behind a
/// 5xx) would otherwise be released and handed out again forever.
pub(super) const MAX_FETCH_FAILURES: u32 = 3;

/// Failed downloads per job number, as this daemon saw them; bounded (cleared past 10,000
/// jobs, when a store is down for everything anyway).
#[derive(Default)]
pub(super) struct FetchFailures {
    counts: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
}

impl FetchFailures {
    /// Counts one failure of `number`; its count so far.
    pub(super) fn record(&self, number: u64) -> u32 {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if counts.len() >= 10_000 && !counts.contains_key(&number) {
            counts.clear();
        }
        let count = counts.entry(number).or_default();
        *count += 1;
        *count
    }

    /// Forgets the failures of `number` (its bundle was fetched, or it was given up on).
    pub(super) fn forget(&self, number: u64) {
        self.counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&number);
    }
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
    #[error("bundle download failed: {0}")]
    Http(String),
    #[error("the bundle is gone (HTTP {0})")]
    Gone(u16),
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
    pub(super) fn verdict(&self) -> Verdict {
        match self {
            FetchError::Http(_) => Verdict::Release,
            FetchError::Local(_) | FetchError::Bundle(crate::bundle::BundleError::Open(_)) => {
                Verdict::ReleaseAndBackOff
            }
            FetchError::NotHttp(_)
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
