//! Downloading a bundle: size, SHA-256 and rate checked as the bytes arrive.

use std::path::Path;
use std::time::Duration;

use cah_protocol::ext::BundleLocation;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::fetch_failure::FetchError;
use super::forbidden_address::{self, GuardedResolver};

/// Slowest average rate of a bundle download, in bytes per second, once
/// [`MIN_RATE_GRACE`] has passed: a server that drips a byte every few seconds never trips
/// the read timeout, and would hold a job, a permit and the drain for ever.
pub(super) const MIN_BUNDLE_RATE: u64 = 64 * 1024;

/// How long a download may take before [`MIN_BUNDLE_RATE`] applies (a slow start, a TCP
/// window still opening).
pub(super) const MIN_RATE_GRACE: Duration = Duration::from_secs(60);

/// The rate a download must keep up.
#[derive(Debug, Clone, Copy)]
pub(super) struct DownloadLimits {
    /// Average bytes per second required once `grace` passed.
    pub(super) min_rate: u64,
    pub(super) grace: Duration,
}

impl DownloadLimits {
    /// [`MIN_BUNDLE_RATE`] after [`MIN_RATE_GRACE`].
    #[cfg(test)]
    fn standard() -> Self {
        Self {
            min_rate: MIN_BUNDLE_RATE,
            grace: MIN_RATE_GRACE,
        }
    }

    /// Fails an attempt that has run past the grace period at a lower average rate.
    fn check_rate(self, got: u64, elapsed: Duration) -> Result<(), FetchError> {
        if elapsed < self.grace {
            return Ok(());
        }
        let rate = got as f64 / elapsed.as_secs_f64();
        if rate < self.min_rate as f64 {
            return Err(FetchError::Http(format!(
                "too slow: {got} bytes in {:.0} s, under {} bytes/s",
                elapsed.as_secs_f64(),
                self.min_rate
            )));
        }
        Ok(())
    }
}

/// The HTTP client for bundle downloads: a stalled origin fails the attempt after
/// [`BUNDLE_READ_TIMEOUT`] without a byte instead of holding the job until the drain deadline,
/// and no name resolves to a link-local or metadata address ([`GuardedResolver`]).
pub(super) fn bundle_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(BUNDLE_READ_TIMEOUT)
        .redirect(super::redirect::policy())
        .dns_resolver(std::sync::Arc::new(GuardedResolver))
        .build()
        .map_err(|error| anyhow::anyhow!("cannot build the bundle download client: {error}"))
}

/// Longest wait for the next bytes of a bundle download.
pub(super) const BUNDLE_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams the bundle to `path`, checking its size and SHA-256 against the tracker's.
pub(super) async fn download(
    http: &reqwest::Client,
    location: &BundleLocation,
    path: &Path,
    max_bytes: u64,
    limits: DownloadLimits,
) -> Result<(), FetchError> {
    let url = url::Url::parse(&location.url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| FetchError::NotHttp(location.url.clone()))?;
    if forbidden_address::is_forbidden_literal(&url) {
        return Err(FetchError::ForbiddenAddress(location.url.clone()));
    }
    let limit = location.size.map_or(max_bytes, |size| size.min(max_bytes));
    if location.size.is_some_and(|size| size > max_bytes) {
        return Err(FetchError::TooLarge { limit: max_bytes });
    }
    let mut last_error = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        }
        match download_once(http, &url, path, limit, limits).await {
            Ok((got, digest)) => {
                if let Some(expected) = location.size
                    && got != expected
                {
                    return Err(FetchError::Size { got, expected });
                }
                if let Some(expected) = &location.sha256
                    && !digest.eq_ignore_ascii_case(expected)
                {
                    return Err(FetchError::Digest {
                        got: digest,
                        expected: expected.clone(),
                    });
                }
                return Ok(());
            }
            Err(FetchError::Http(error)) => {
                warn!(attempt, error = %error, "bundle download failed");
                last_error = error;
            }
            Err(other) => return Err(other),
        }
    }
    Err(FetchError::Http(last_error))
}

async fn download_once(
    http: &reqwest::Client,
    url: &url::Url,
    path: &Path,
    limit: u64,
    limits: DownloadLimits,
) -> Result<(u64, String), FetchError> {
    let local = |error: std::io::Error| FetchError::Local(format!("{}: {error}", path.display()));
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|error| FetchError::Http(cah_tracker_client::with_causes(&error)))?;
    // Not there (any more): no retry or release brings it back, only scraping the job again.
    if let status @ (404 | 410) = response.status().as_u16() {
        return Err(FetchError::Gone(status));
    }
    if let status @ (429 | 503) = response.status().as_u16()
        && let Some(retry_after) = retry_after(response.headers())
    {
        return Err(FetchError::Busy {
            status,
            retry_after,
        });
    }
    let mut response = response
        .error_for_status()
        .map_err(|error| FetchError::Http(cah_tracker_client::with_causes(&error)))?;
    // Body chunks are a few kilobytes; each write to a `tokio::fs::File` is a trip through the
    // blocking pool, so they are gathered first (1 MiB per write).
    let mut file = tokio::io::BufWriter::with_capacity(
        1024 * 1024,
        tokio::fs::File::create(path).await.map_err(local)?,
    );
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let started = tokio::time::Instant::now();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| FetchError::Http(cah_tracker_client::with_causes(&error)))?
    {
        got += chunk.len() as u64;
        if got > limit {
            return Err(FetchError::TooLarge { limit });
        }
        limits.check_rate(got, started.elapsed())?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok((got, hex::encode(hasher.finalize())))
}

/// A `Retry-After` given in seconds (the HTTP-date form is ignored: the poll interval applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_cut_short_is_logged_with_its_cause() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = url::Url::parse(&format!(
            "http://{}/bundle.tar",
            listener.local_addr().expect("addr")
        ))
        .expect("url");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc";
            stream.write_all(head.as_bytes()).await.expect("write");
            // Closed after 3 of the 100 bytes promised.
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = DownloadLimits::standard();
        let http = bundle_client().expect("client");
        let error = download_once(&http, &url, &dir.path().join("b.tar"), 1000, limits)
            .await
            .expect_err("cut short");
        let text = error.to_string();
        assert!(text.contains("error decoding response body: "), "{text}");
    }

    #[tokio::test]
    async fn a_redirect_loop_is_followed_five_times_only() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let store = axum::Router::new().fallback(move || {
            let hop = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", format!("/hop/{hop}"))],
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = url::Url::parse(&format!(
            "http://{}/b.tar",
            listener.local_addr().expect("addr")
        ))
        .expect("url");
        tokio::spawn(async move { axum::serve(listener, store).await });
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = DownloadLimits::standard();
        let http = bundle_client().expect("client");
        let error = download_once(&http, &url, &dir.path().join("b.tar"), 1000, limits)
            .await
            .expect_err("a redirect loop");
        assert!(error.to_string().contains("too many redirects"), "{error}");
        // The first request and five redirects.
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1 + super::super::redirect::MAX_REDIRECTS
        );
    }

    #[tokio::test]
    async fn a_bundle_url_naming_the_metadata_service_is_refused_unsent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let http = bundle_client().expect("client");
        for url in [
            "http://169.254.169.254/latest/meta-data/iam/",
            "http://[fd00:ec2::254]/latest/",
        ] {
            let location = BundleLocation {
                url: url.to_owned(),
                sha256: None,
                size: None,
            };
            let error = download(
                &http,
                &location,
                &dir.path().join("b.tar"),
                1000,
                DownloadLimits::standard(),
            )
            .await
            .expect_err("refused");
            assert!(
                matches!(error, FetchError::ForbiddenAddress(_)),
                "{url}: {error}"
            );
            assert_eq!(
                error.verdict(),
                super::super::fetch_failure::Verdict::Invalid
            );
        }
    }

    #[test]
    fn a_dripping_download_fails_after_the_grace() {
        let limits = DownloadLimits::standard();
        assert!(limits.check_rate(10, Duration::from_secs(59)).is_ok());
        assert!(
            limits
                .check_rate(100 << 20, Duration::from_secs(61))
                .is_ok()
        );
        let error = limits
            .check_rate(12, Duration::from_secs(61))
            .expect_err("12 bytes in a minute");
        assert!(error.to_string().contains("too slow"), "{error}");
    }
}
