//! A claimed WAT that can never be used, told apart from a failure that may pass, and its
//! report to the tracker.
//!
//! Released, a broken WAT went back to its old place in the tracker's claim order and was
//! handed out again at the very next claim, so some scraper was always downloading it (up to
//! 2 GiB each time). Reported (`/api/ext/invalid`), it goes behind every other open job, and
//! the tracker stops handing it out after a few reports. A transient failure (a connection
//! error, silence, 5xx after the retries, a stop) still releases: another try may work.

use std::sync::Mutex;

use cah_tracker_client::Session;

use super::claim::ClaimOutcome;
use super::heartbeat::Held;
use crate::error::ScraperError;
use crate::source::DownloadError;

/// Why the WAT of a claim could not be extracted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatError {
    /// Broken for good: its jobs are reported.
    #[error(transparent)]
    Broken(#[from] BrokenWat),
    /// Anything else (a transient download failure, a local fault): its jobs are released.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A WAT that every attempt would find unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokenWat {
    /// An HTML error page or garbage: completing its jobs with empty bundles would lose the
    /// WAT for good, as `scraper-d extract` refuses it (`NotAWat`).
    #[error("{url} holds no WARC record ({bytes} bytes read): not a .warc.wat.gz file")]
    NotAWat { url: String, bytes: u64 },
    /// The file ends inside a gzip member (a cut file whose Content-Length matched): the rest
    /// of the WAT is missing, so its jobs must not complete short.
    #[error("{url} ends inside a gzip member after {bytes} bytes: the file is truncated")]
    Truncated { url: String, bytes: u64 },
    /// The URL answers 404 or 410.
    #[error("{url} answers {status}: the file does not exist")]
    Missing { url: String, status: u16 },
    /// The body goes past `--max-wat-bytes`.
    #[error("{url} is larger than {max_bytes} bytes (--max-wat-bytes)")]
    TooLarge { url: String, max_bytes: u64 },
}

impl BrokenWat {
    /// What went wrong, short and without the URL (the tracker knows it), for the report.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::NotAWat { bytes, .. } => {
                format!("not a wat: no warc record in {bytes} bytes")
            }
            Self::Truncated { bytes, .. } => {
                format!("truncated: ends inside a gzip member after {bytes} bytes")
            }
            Self::Missing { status, .. } => format!("the wat url answers {status}"),
            Self::TooLarge { max_bytes, .. } => {
                format!("larger than {max_bytes} bytes (--max-wat-bytes)")
            }
        }
    }
}

impl WatError {
    /// Sorts an extraction's failure: a download that failed for good is a broken WAT, every
    /// other failure may pass.
    pub(crate) fn of_extraction(url: &str, error: ScraperError) -> WatError {
        if let ScraperError::Source(cause) = &error {
            let url = url.to_owned();
            match DownloadError::of(cause) {
                Some(DownloadError::Missing { status }) => {
                    let status = status.as_u16();
                    return BrokenWat::Missing { url, status }.into();
                }
                Some(DownloadError::TooLarge { max_bytes }) => {
                    let max_bytes = *max_bytes;
                    return BrokenWat::TooLarge { url, max_bytes }.into();
                }
                Some(DownloadError::Refused(_) | DownloadError::GaveUp { .. }) | None => {}
            }
        }
        WatError::Other(anyhow::Error::new(error).context("failed to extract the wat"))
    }
}

/// Reports the claim's jobs still open as unusable for `broken`. A job the tracker took is
/// no longer open; one it refused (a tracker without the CPU meaning of `invalid` answers
/// 409) stays open, and is released with the claim's other unfinished jobs.
pub(super) async fn report(
    session: &Session,
    broken: &BrokenWat,
    held: &Mutex<Held>,
    outcome: &mut ClaimOutcome,
) {
    let reason = broken.reason();
    let mut open: Vec<u64> = match held.lock() {
        Ok(held) => held.open.difference(&held.lost).copied().collect(),
        Err(_) => Vec::new(),
    };
    open.sort_unstable();
    for number in open {
        // A heartbeat answered after the report applied no longer lists the job: no lost lease.
        if let Ok(mut held) = held.lock() {
            held.completing.insert(number);
        }
        let reported = session.report_broken_wat(number, &reason).await;
        if let Ok(mut held) = held.lock() {
            held.completing.remove(&number);
            if reported.is_ok() {
                held.open.remove(&number);
            }
        }
        match reported {
            Ok(()) => {
                tracing::warn!(job = number, reason = %reason, "wat reported unusable to the tracker");
                outcome.reported.push(number);
            }
            Err(error) => {
                tracing::warn!(job = number, error = %error, "the tracker did not take the report of the unusable wat, releasing the job instead");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(error: std::io::Error) -> WatError {
        WatError::of_extraction("http://cc.test/a.wat.gz", ScraperError::Source(error))
    }

    #[test]
    fn only_a_missing_or_oversized_file_is_broken_for_good() {
        use reqwest::StatusCode;
        let broken = [
            DownloadError::Missing {
                status: StatusCode::NOT_FOUND,
            },
            DownloadError::Missing {
                status: StatusCode::GONE,
            },
            DownloadError::TooLarge { max_bytes: 10 },
        ];
        for error in broken {
            let text = error.to_string();
            let sorted = sorted(std::io::Error::other(error));
            assert!(matches!(sorted, WatError::Broken(_)), "{text}");
        }
        let transient = [
            DownloadError::Refused("status 403 Forbidden".into()),
            DownloadError::GaveUp {
                attempts: 8,
                detail: "status 503 Service Unavailable".into(),
            },
        ];
        for error in transient {
            let text = error.to_string();
            let sorted = sorted(std::io::Error::other(error));
            assert!(matches!(sorted, WatError::Other(_)), "{text}");
        }
        // A message that reads like a 404 is not one: only the type counts.
        let lookalike = sorted(std::io::Error::other("status 404 Not Found"));
        assert!(matches!(lookalike, WatError::Other(_)));
        let local = WatError::of_extraction("x", ScraperError::Config("no half".into()));
        assert!(matches!(local, WatError::Other(_)));
    }

    #[test]
    fn reasons_are_short_and_leave_the_url_out() {
        let url = "http://cc.test/crawl-data/segments/1/wat/a.warc.wat.gz".to_owned();
        let reasons = [
            BrokenWat::NotAWat {
                url: url.clone(),
                bytes: 52,
            },
            BrokenWat::Truncated {
                url: url.clone(),
                bytes: 123_456,
            },
            BrokenWat::Missing {
                url: url.clone(),
                status: 410,
            },
            BrokenWat::TooLarge {
                url: url.clone(),
                max_bytes: 2 << 30,
            },
        ]
        .map(|broken| (broken.to_string(), broken.reason()));
        for (message, reason) in reasons {
            assert!(message.contains(&url), "{message}");
            assert!(
                !reason.contains("cc.test") && reason.len() < 100,
                "{reason}"
            );
        }
    }
}
