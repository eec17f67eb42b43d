//! A Common Crawl look-alike: crawl folders with WAT files and `wat.paths.gz`, served over HTTP
//! with Range support like `https://data.commoncrawl.org/`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use crate::error::TestkitError;
use crate::serving::Serving;
use crate::wat::{self, ExpectedCandidate, WatConfig, WatSummary};

/// One WAT file written into a crawl folder.
#[derive(Debug, Clone)]
pub struct WatFixture {
    pub summary: WatSummary,
    pub candidates: Vec<ExpectedCandidate>,
}

/// A crawl folder: `crawl-data/{crawl}/wat.paths.gz` and the files it lists.
#[derive(Debug, Clone)]
pub struct CrawlFixture {
    pub root: PathBuf,
    pub crawl: String,
    pub files: Vec<WatFixture>,
}

impl CrawlFixture {
    /// `crawl-data/{crawl}/wat.paths.gz`, relative to the root.
    pub fn listing_path(&self) -> String {
        format!("crawl-data/{}/wat.paths.gz", self.crawl)
    }

    /// Every expected candidate of every file, in file order.
    pub fn candidates(&self) -> impl Iterator<Item = &ExpectedCandidate> {
        self.files.iter().flat_map(|file| file.candidates.iter())
    }
}

/// Writes one WAT file per config under `root` (all configs must name the same crawl) and the
/// crawl's `wat.paths.gz`. Candidates are kept in memory: use [`write_wat_file`] for big files.
pub fn write_crawl(root: &Path, configs: &[WatConfig]) -> Result<CrawlFixture, TestkitError> {
    let crawl = configs
        .first()
        .map(|config| config.crawl.clone())
        .unwrap_or_else(|| "CC-MAIN-2024-51".into());
    if configs.iter().any(|config| config.crawl != crawl) {
        return Err(TestkitError::Config(
            "all WAT configs of one crawl must name the same crawl".into(),
        ));
    }
    let mut files = Vec::with_capacity(configs.len());
    for config in configs {
        let mut candidates = Vec::new();
        let summary = write_wat_file(root, config, |candidate| candidates.push(candidate))?;
        files.push(WatFixture {
            summary,
            candidates,
        });
    }
    let paths: Vec<&str> = files
        .iter()
        .map(|file| file.summary.relative_path.as_str())
        .collect();
    let fixture = CrawlFixture {
        root: root.to_path_buf(),
        crawl,
        files: Vec::new(),
    };
    write_atomically(&root.join(fixture.listing_path()), &wat_paths_gz(&paths))?;
    Ok(CrawlFixture { files, ..fixture })
}

/// Streams one WAT file to `root/{relative_path}` (through a `.tmp` file, renamed when complete).
pub fn write_wat_file(
    root: &Path,
    config: &WatConfig,
    on_candidate: impl FnMut(ExpectedCandidate),
) -> Result<WatSummary, TestkitError> {
    let path = root.join(config.relative_path());
    let tmp = path.with_extension("gz.tmp");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(TestkitError::file(parent))?;
    }
    let file = std::fs::File::create(&tmp).map_err(TestkitError::file(&tmp))?;
    let (summary, writer) = wat::generate(
        config,
        std::io::BufWriter::with_capacity(1 << 20, file),
        on_candidate,
    )?;
    let file = writer
        .into_inner()
        .map_err(|error| TestkitError::file(&tmp)(error.into_error()))?;
    file.sync_all().map_err(TestkitError::file(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(TestkitError::file(&path))?;
    Ok(summary)
}

/// A WAT file cached under `cache_dir`, generated only when missing (for benchmarks: a ~400 MB file
/// takes a while). The summary is stored next to it as `{file}.summary.json`.
pub fn cached_wat_file(
    cache_dir: &Path,
    config: &WatConfig,
) -> Result<(PathBuf, WatSummary), TestkitError> {
    let path = cache_dir.join(config.relative_path());
    let summary_path = path.with_extension("gz.summary.json");
    if let Ok(text) = std::fs::read(&summary_path)
        && let Ok(summary) = serde_json::from_slice::<WatSummary>(&text)
        && path.is_file()
    {
        return Ok((path, summary));
    }
    let summary = write_wat_file(cache_dir, config, |_| {})?;
    let text = serde_json::to_vec_pretty(&summary).expect("a summary always serializes");
    write_atomically(&summary_path, &text)?;
    Ok((path, summary))
}

/// A gzip of newline-separated relative paths, like `wat.paths.gz`.
pub fn wat_paths_gz(paths: &[&str]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for path in paths {
        encoder
            .write_all(path.as_bytes())
            .expect("writing to a Vec cannot fail");
        encoder
            .write_all(b"\n")
            .expect("writing to a Vec cannot fail");
    }
    encoder.finish().expect("writing to a Vec cannot fail")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TestkitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(TestkitError::file(parent))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(TestkitError::file(&tmp))?;
    std::fs::rename(&tmp, path).map_err(TestkitError::file(path))
}

/// One request seen by the file server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

struct FileState {
    root: PathBuf,
    requests: Mutex<Vec<FileRequest>>,
    failures: Mutex<VecDeque<u16>>,
}

/// A running file server over a crawl folder; dropping it stops it.
pub struct CommonCrawlServer {
    addr: SocketAddr,
    state: Arc<FileState>,
    serving: Serving,
}

impl CommonCrawlServer {
    /// Serves `root` on an already bound listener.
    pub fn start(listener: TcpListener, root: &Path) -> Result<Self, TestkitError> {
        let addr = listener.local_addr().map_err(TestkitError::Socket)?;
        let state = Arc::new(FileState {
            root: root.to_path_buf(),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
        });
        let router = Router::new().fallback(serve_file).with_state(state.clone());
        let serving = Serving::spawn("common crawl file server", |shutdown| {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .into_future()
        });
        tracing::info!(%addr, root = %root.display(), "common crawl file server listening");
        Ok(Self {
            addr,
            state,
            serving,
        })
    }

    pub async fn start_local(root: &Path) -> Result<Self, TestkitError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestkitError::Socket)?;
        Self::start(listener, root)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}/`, the counterpart of `https://data.commoncrawl.org/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<FileRequest> {
        self.state
            .requests
            .lock()
            .expect("request log lock poisoned")
            .clone()
    }

    /// The next `count` requests fail with `status` (e.g. 503, as S3 does under load).
    pub fn inject_failures(&self, count: usize, status: u16) {
        let mut failures = self
            .state
            .failures
            .lock()
            .expect("failure queue lock poisoned");
        failures.extend(std::iter::repeat_n(status, count));
    }

    pub async fn shutdown(mut self) {
        self.serving.shutdown().await;
    }
}

async fn serve_file(State(state): State<Arc<FileState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let method = request.method().clone();
    let injected = state
        .failures
        .lock()
        .expect("failure queue lock poisoned")
        .pop_front();
    let response = match injected {
        Some(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            .into_response(),
        None if method != Method::GET && method != Method::HEAD => {
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
        None => file_response(&state.root, &path, range.as_deref(), method == Method::HEAD).await,
    };
    tracing::debug!(%path, range = ?range, status = response.status().as_u16(), "common crawl request");
    state
        .requests
        .lock()
        .expect("request log lock poisoned")
        .push(FileRequest {
            method: method.to_string(),
            path,
            range,
            status: response.status().as_u16(),
        });
    response
}

async fn file_response(root: &Path, path: &str, range: Option<&str>, head_only: bool) -> Response {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|component| !matches!(component, Component::Normal(_)))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let full = root.join(relative);
    let Ok(mut file) = tokio::fs::File::open(&full).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(metadata) = file.metadata().await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !metadata.is_file() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let length = metadata.len();
    let (status, start, end) = match range.map(|range| parse_range(range, length)) {
        None | Some(RangeSpec::Ignored) => (StatusCode::OK, 0, length),
        Some(RangeSpec::Unsatisfiable) => {
            let content_range = format!("bytes */{length}");
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, content_range)],
            )
                .into_response();
        }
        Some(RangeSpec::Bytes { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end),
    };
    let body = if head_only || start == end {
        Body::empty()
    } else {
        if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file.take(end - start),
            64 * 1024,
        ))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{length}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Half-open `start..end`.
    Bytes {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
    /// Malformed or multi-range: serve the whole file, as RFC 9110 allows.
    Ignored,
}

fn parse_range(header_value: &str, length: u64) -> RangeSpec {
    let Some(spec) = header_value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => {
            if start >= length {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes {
                    start,
                    end: (end + 1).min(length),
                }
            }
        }
        (Ok(start), Err(_)) if last.is_empty() => {
            if start >= length {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes { start, end: length }
            }
        }
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 || length == 0 {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes {
                    start: length.saturating_sub(suffix),
                    end: length,
                }
            }
        }
        _ => RangeSpec::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table() {
        let cases = [
            ("bytes=0-9", RangeSpec::Bytes { start: 0, end: 10 }),
            (
                "bytes=90-200",
                RangeSpec::Bytes {
                    start: 90,
                    end: 100,
                },
            ),
            (
                "bytes=50-",
                RangeSpec::Bytes {
                    start: 50,
                    end: 100,
                },
            ),
            (
                "bytes=-10",
                RangeSpec::Bytes {
                    start: 90,
                    end: 100,
                },
            ),
            ("bytes=-500", RangeSpec::Bytes { start: 0, end: 100 }),
            ("bytes=100-", RangeSpec::Unsatisfiable),
            ("bytes=-0", RangeSpec::Unsatisfiable),
            ("bytes=5-1", RangeSpec::Ignored),
            ("bytes=0-1,5-6", RangeSpec::Ignored),
            ("items=0-1", RangeSpec::Ignored),
        ];
        for (header_value, expected) in cases {
            assert_eq!(parse_range(header_value, 100), expected, "{header_value}");
        }
    }
}
