//! Streaming over HTTP from cah-testkit's Common Crawl server, through a 503 and a cut or stalled
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::{FaultMix, WatConfig};
use scraper_d::source::{HttpConfig, spawn_download};
use scraper_d::{Candidate, Counts, Extractor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::support;

/// What the proxy does to the first response that passes its byte count.
#[derive(Clone, Copy)]
enum Break {
    /// Closes the connection.
    Cut,
    /// Keeps the connection open and sends nothing more.
    Stall,
}

/// A TCP proxy that breaks the first connection whose response passes `cut_after` bytes.
async fn cutting_proxy(upstream: SocketAddr, cut_after: u64, how: Break) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let cut_done = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut sent = 0u64;
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if !cut_done.load(Ordering::SeqCst) && sent + n as u64 > cut_after {
                        let keep = (cut_after - sent) as usize;
                        let _ = client_write.write_all(&buffer[..keep]).await;
                        cut_done.store(true, Ordering::SeqCst);
                        if let Break::Stall = how {
                            std::future::pending::<()>().await;
                        }
                        break;
                    }
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                }
                requests.abort();
            });
        }
    });
    addr
}

/// The candidates, the counts and the file length the download reported (0: never told).
fn extract_url(url: String) -> (Vec<Result<Candidate, String>>, Counts, u64) {
    let handle = tokio::runtime::Handle::current();
    let mut http = HttpConfig::standard();
    http.retry_delay = Duration::from_millis(20);
    http.max_attempts = 3;
    http.idle_timeout = Duration::from_millis(500);
    let reader = spawn_download(
        &handle,
        reqwest::Client::new(),
        url::Url::parse(&url).expect("url"),
        http,
    );
    let resumes = reader.resume_counter();
    let length = reader.length_handle();
    let mut extractor = Extractor::new(reader, support::both_halves()).expect("config");
    let candidates = extractor
        .by_ref()
        .map(|candidate| candidate.map_err(|error| error.to_string()))
        .collect();
    let mut counts = extractor.into_counts();
    counts.resumes = resumes.load(Ordering::Relaxed);
    (candidates, counts, length.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_resumes_with_a_range_request() {
    broken_download_resumes(Break::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_resumes_after_the_idle_timeout() {
    broken_download_resumes(Break::Stall).await;
}

async fn broken_download_resumes(how: Break) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 300,
        faults: FaultMix::Fast,
        ..WatConfig::small(8080, 41)
    };
    let fixture = write_crawl(dir.path(), &[config]).expect("crawl");
    let relative = fixture.files[0].summary.relative_path.clone();
    let size = fixture.files[0].summary.n_bytes;
    assert!(size > 100_000, "file of {size} bytes is too small to cut");
    let local = std::fs::read(dir.path().join(&relative)).expect("read wat");
    let (expected, expected_counts) = support::extract(local.as_slice(), support::both_halves());

    let server = CommonCrawlServer::start_local(dir.path())
        .await
        .expect("server");
    let proxy = cutting_proxy(server.addr(), 60_000, how).await;
    server.inject_failures(1, 503);
    let url = format!("http://{proxy}/{relative}");
    let (candidates, counts, length) = tokio::task::spawn_blocking(move || extract_url(url))
        .await
        .expect("extraction thread");
    // What extract's progress bar shows as the total, learnt across the resumption too.
    assert_eq!(length, size);
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .map(|candidate| candidate.expect("no source error"))
        .collect();
    assert_eq!(candidates, expected);
    assert_eq!(counts.skipped, expected_counts.skipped);
    assert_eq!(counts.bytes_compressed, size);
    assert_eq!(counts.resumes, 1, "{counts:?}");
    let requests = server.requests();
    assert_eq!(requests[0].status, 503, "{requests:?}");
    let resumed = requests
        .iter()
        .find(|request| request.status == 206)
        .expect("a range request");
    let range = resumed.range.as_deref().expect("range header");
    let start: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .expect("bytes=N-");
    assert!(start > 0 && start < size, "{range}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_an_error_not_an_empty_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = CommonCrawlServer::start_local(dir.path())
        .await
        .expect("server");
    let url = format!("{}crawl-data/missing.warc.wat.gz", server.base_url());
    let (candidates, _, length) = tokio::task::spawn_blocking(move || extract_url(url))
        .await
        .expect("extraction thread");
    assert_eq!(candidates.len(), 1);
    let error = candidates[0].as_ref().expect_err("an error");
    assert!(error.contains("404"), "{error}");
    assert_eq!(length, 0, "a 404 tells no file length");
    server.shutdown().await;
}
