//! A WAT download as a blocking `Read`: an async task streams the body into a bounded channel and
//! resumes a broken transfer with `Range: bytes=N-`.
//!
//! The task runs on a tokio runtime; the reader is read from a plain thread (or
//! `spawn_blocking`), so inflating and parsing never block the async workers.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::sync::mpsc;

/// Download behaviour.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Failed attempts in a row (no byte received in between) before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on each failure in a row, capped at 30 s.
    pub retry_delay: Duration,
    /// Chunks buffered between the download task and the reader (bounds memory).
    pub queue_chunks: usize,
    /// Longest wait for the response headers or the next body bytes: a server that keeps the
    /// connection open but sends nothing is treated as a broken transfer and resumed (TCP
    /// keepalive only notices a dead peer). Time the reader takes does not count.
    pub idle_timeout: Duration,
    /// Compressed bytes read from one file before the download fails (an endless body would
    /// otherwise be read for ever).
    pub max_bytes: u64,
}

/// Why a download gave up. The reader's IO error carries it: [`DownloadError::of`] finds it.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// 404 Not Found or 410 Gone: the file is not there, and asking again will not bring it.
    #[error("status {status}: the file does not exist")]
    Missing { status: StatusCode },
    /// The body went past [`HttpConfig::max_bytes`].
    #[error("the file is larger than {max_bytes} bytes (--max-wat-bytes)")]
    TooLarge { max_bytes: u64 },
    /// Refused in a way that asking again at once does not fix (403 and other 4xx, a URL that
    /// cannot be requested, a range the server got wrong); it may work later or elsewhere.
    #[error("{0}")]
    Refused(String),
    /// Failed attempts in a row (connection errors, silence, 5xx, 429) up to
    /// [`HttpConfig::max_attempts`].
    #[error("gave up after {attempts} failed attempts: {detail}")]
    GaveUp { attempts: u32, detail: String },
}

impl DownloadError {
    /// Whether every download of the URL would fail the same way: the file is missing, or
    /// larger than the cap.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Missing { .. } | Self::TooLarge { .. })
    }

    /// The download failure behind an error of an [`HttpReader`], if that is what it is.
    pub fn of(error: &std::io::Error) -> Option<&DownloadError> {
        error.get_ref()?.downcast_ref()
    }
}

/// The default of [`HttpConfig::max_bytes`]: 2 GiB, several times a Common Crawl WAT.
pub const DEFAULT_MAX_WAT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

impl HttpConfig {
    /// 8 attempts, 500 ms first delay, 64 chunks, 60 s without data, 2 GiB.
    pub fn standard() -> Self {
        Self {
            max_attempts: 8,
            retry_delay: Duration::from_millis(500),
            queue_chunks: 64,
            idle_timeout: Duration::from_secs(60),
            max_bytes: DEFAULT_MAX_WAT_BYTES,
        }
    }
}

/// The reading end of a download started by [`spawn_download`].
pub struct HttpReader {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    resumes: Arc<AtomicU64>,
    length: Arc<AtomicU64>,
}

impl HttpReader {
    /// How many times the download resumed with a Range request so far.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// A shared handle on the resume count, readable after the reader moved into an extractor.
    pub fn resume_counter(&self) -> Arc<AtomicU64> {
        self.resumes.clone()
    }

    /// A shared handle on the file's length in bytes, 0 until a response has told it.
    pub fn length_handle(&self) -> Arc<AtomicU64> {
        self.length.clone()
    }
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Starts downloading `url` on `runtime`; the returned reader yields the body's bytes exactly once
/// each, across resumptions, and fails with an IO error when the download gives up.
pub fn spawn_download(
    runtime: &tokio::runtime::Handle,
    client: reqwest::Client,
    url: url::Url,
    config: HttpConfig,
) -> HttpReader {
    let (sender, chunks) = mpsc::channel(config.queue_chunks.max(1));
    let resumes = Arc::new(AtomicU64::new(0));
    let length = Arc::new(AtomicU64::new(0));
    let counters = Counters {
        resumes: resumes.clone(),
        length: length.clone(),
    };
    runtime.spawn(async move {
        if let Err(error) = download(&client, &url, &config, &sender, &counters).await {
            tracing::warn!(%url, error = %error, "wat download failed");
            let _ = sender.send(Err(error)).await;
        }
    });
    HttpReader {
        chunks,
        current: Bytes::new(),
        resumes,
        length,
    }
}

/// What the download task reports to the reader's owner.
struct Counters {
    resumes: Arc<AtomicU64>,
    length: Arc<AtomicU64>,
}

async fn download(
    client: &reqwest::Client,
    url: &url::Url,
    config: &HttpConfig,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
    counters: &Counters,
) -> std::io::Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(std::io::Error::other(DownloadError::Refused(format!(
            "unsupported url scheme {:?}: only http and https",
            url.scheme()
        ))));
    }
    let mut offset = 0u64;
    let mut total: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let attempt = fetch_from(client, url, offset, &mut total, sender, counters, config).await;
        let (received, outcome) = match attempt {
            Ok(received) => (received, Ok(())),
            Err((received, error)) => (received, Err(error)),
        };
        offset += received;
        if received > 0 {
            failures = 0;
        }
        let error = match outcome {
            Ok(()) if total.is_none_or(|total| offset >= total) => return Ok(()),
            Ok(()) => Attempt::Retry(format!("body ended at {offset} of {total:?} bytes")),
            Err(error) => error,
        };
        let detail = match error {
            Attempt::Fatal(error) => return Err(std::io::Error::other(error)),
            Attempt::ReaderGone => return Ok(()),
            Attempt::Retry(detail) => detail,
        };
        failures += 1;
        if failures >= config.max_attempts {
            return Err(std::io::Error::other(DownloadError::GaveUp {
                attempts: failures,
                detail,
            }));
        }
        let delay = config
            .retry_delay
            .saturating_mul(1 << (failures - 1).min(6))
            .min(Duration::from_secs(30));
        tracing::warn!(%url, offset, attempt = failures, error = %detail, "wat download interrupted, resuming");
        tokio::time::sleep(delay).await;
        if offset > 0 {
            counters.resumes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Attempt {
    Retry(String),
    Fatal(DownloadError),
    ReaderGone,
}

/// One request from `offset`; returns the bytes forwarded, with the error that ended it, if any.
async fn fetch_from(
    client: &reqwest::Client,
    url: &url::Url,
    offset: u64,
    total: &mut Option<u64>,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
    counters: &Counters,
    config: &HttpConfig,
) -> Result<u64, (u64, Attempt)> {
    let length = &counters.length;
    let idle = config.idle_timeout;
    let silent = |received: u64| {
        (
            received,
            Attempt::Retry(format!("no data for {} ms", idle.as_millis())),
        )
    };
    let mut request = client.get(url.clone());
    if offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
    }
    let response = tokio::time::timeout(idle, request.send())
        .await
        .map_err(|_| silent(0))?
        .map_err(|error| {
            let detail = cah_tracker_client::with_causes(&error);
            // A request that cannot be built (a bad URL) fails the same way every time.
            if error.is_builder() {
                let refused = DownloadError::Refused(format!("request failed: {detail}"));
                (0, Attempt::Fatal(refused))
            } else {
                (0, Attempt::Retry(format!("request failed: {detail}")))
            }
        })?;
    let status = response.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE && *total == Some(offset) {
        return Ok(0);
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err((0, Attempt::Retry(format!("status {status}"))));
    }
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err((0, Attempt::Fatal(DownloadError::Missing { status })));
    }
    if !status.is_success() {
        let refused = DownloadError::Refused(format!("status {status}"));
        return Err((0, Attempt::Fatal(refused)));
    }
    // Bytes of this response that were already forwarded (a server that ignored the Range).
    let mut skip = if status == StatusCode::PARTIAL_CONTENT {
        let (start, full) = parse_content_range(&response).ok_or_else(|| {
            (
                0,
                Attempt::Retry("206 without a valid Content-Range".to_owned()),
            )
        })?;
        if start > offset {
            let refused = DownloadError::Refused(format!("range starts at {start}, not {offset}"));
            return Err((0, Attempt::Fatal(refused)));
        }
        if let Some(full) = full {
            *total = Some(full);
            length.store(full, Ordering::Relaxed);
        }
        offset - start
    } else {
        if let Some(content_length) = response.content_length() {
            *total = Some(content_length);
            length.store(content_length, Ordering::Relaxed);
        }
        offset
    };
    let mut received = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(idle, body.next())
        .await
        .map_err(|_| silent(received))?
    {
        let mut chunk = chunk.map_err(|error| {
            let detail = cah_tracker_client::with_causes(&error);
            (received, Attempt::Retry(format!("body broke: {detail}")))
        })?;
        if skip > 0 {
            let dropped = skip.min(chunk.len() as u64);
            let _ = chunk.split_to(dropped as usize);
            skip -= dropped;
        }
        if chunk.is_empty() {
            continue;
        }
        let len = chunk.len() as u64;
        if offset + received + len > config.max_bytes {
            let too_large = DownloadError::TooLarge {
                max_bytes: config.max_bytes,
            };
            return Err((received, Attempt::Fatal(too_large)));
        }
        if sender.send(Ok(chunk)).await.is_err() {
            return Err((received, Attempt::ReaderGone));
        }
        received += len;
    }
    Ok(received)
}

/// `Content-Range: bytes START-END/TOTAL` gives `(START, Some(TOTAL))` (`TOTAL` may be `*`).
fn parse_content_range(response: &reqwest::Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, full) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, full.trim().parse().ok()))
}
