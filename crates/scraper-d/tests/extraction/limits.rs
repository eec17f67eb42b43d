//! Bounds on what one WAT may cost: reading stops once every half's sample IDs are used up,
//! and an HTTP download stops at `max_bytes`.

use std::io::Read;
use std::time::SystemTime;

use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::{HeaderStyle, Html, Link, Page, WatConfig, WatWriter};
use scraper_d::filters::FilterConfig;
use scraper_d::source::{DownloadError, HttpConfig, spawn_download};
use scraper_d::{ExtractConfig, Extractor, HalfJob, IdRange, SkipReason};

fn page(index: usize) -> Page {
    Page {
        url: format!("http://site-0001.blog.test/page-{index}.html"),
        status: 200,
        headers: vec![("Content-Type".into(), "text/html".into())],
        html: Some(Html {
            links: vec![Link::image(
                format!("/ok/picture-{index}.jpg"),
                Some("a good picture of a lighthouse"),
            )],
            ..Html::default()
        }),
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn halves(ids: u64) -> ExtractConfig {
    ExtractConfig {
        halves: vec![
            HalfJob::new(0, IdRange { start: 0, end: ids }).expect("half 0"),
            HalfJob::new(
                1,
                IdRange {
                    start: 10_000_000,
                    end: 10_000_000 + ids,
                },
            )
            .expect("half 1"),
        ],
        filters: FilterConfig::standard(),
        max_record_bytes: 1024 * 1024,
    }
}

#[test]
fn reading_stops_once_both_halves_used_up_their_ids() {
    let mut writer = WatWriter::new(
        Vec::new(),
        "CC-MAIN-20241209000000-20241209030000-00000.warc.wat.gz",
        HeaderStyle::Arrays,
        SystemTime::UNIX_EPOCH,
        7,
    )
    .expect("writer");
    for index in 0..2000 {
        writer.write_page(&page(index)).expect("page");
    }
    let wat = writer.finish().expect("finish");
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let source = Counting {
        inner: wat.as_slice(),
        read: read.clone(),
    };
    let mut extractor = Extractor::new(source, halves(3))
        .expect("config")
        .stop_when_ids_exhausted();
    let candidates: Vec<_> = extractor
        .by_ref()
        .map(|candidate| candidate.expect("no source error"))
        .collect();
    assert_eq!(candidates.len(), 6);
    let read = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read < wat.len() as u64 / 10,
        "{read} of {} bytes read",
        wat.len()
    );
    assert_eq!(extractor.counts().skipped(SkipReason::IdsExhausted), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_past_max_bytes_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 300,
        ..WatConfig::small(8080, 41)
    };
    let fixture = write_crawl(dir.path(), &[config]).expect("crawl");
    let relative = fixture.files[0].summary.relative_path.clone();
    let size = fixture.files[0].summary.n_bytes;
    let server = CommonCrawlServer::start_local(dir.path())
        .await
        .expect("server");
    let url = url::Url::parse(&format!("{}{relative}", server.base_url())).expect("url");
    let handle = tokio::runtime::Handle::current();
    let http = HttpConfig {
        max_bytes: size / 2,
        ..HttpConfig::standard()
    };
    let error = tokio::task::spawn_blocking(move || {
        let reader = spawn_download(&handle, reqwest::Client::new(), url, http);
        let mut extractor = Extractor::new(reader, halves(1_000_000)).expect("config");
        extractor.by_ref().find_map(Result::err).map(|error| {
            // Typed, so the daemon can tell a WAT it must report from one it may retry.
            let too_large = matches!(
                &error,
                scraper_d::ScraperError::Source(cause)
                    if matches!(DownloadError::of(cause), Some(DownloadError::TooLarge { .. }))
            );
            (error.to_string(), too_large)
        })
    })
    .await
    .expect("extraction thread")
    .expect("the download fails");
    let (error, too_large) = error;
    assert!(error.contains("larger than") && too_large, "{error}");
    assert_eq!(server.requests().len(), 1, "not retried");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_can_never_be_fetched_fails_at_once() {
    for url in ["file:///etc/hostname", "ftp://127.0.0.1:9/a.warc.wat.gz"] {
        let url = url::Url::parse(url).expect("url");
        let handle = tokio::runtime::Handle::current();
        let started = std::time::Instant::now();
        let error = tokio::task::spawn_blocking(move || {
            let mut reader =
                spawn_download(&handle, reqwest::Client::new(), url, HttpConfig::standard());
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).expect_err("no body")
        })
        .await
        .expect("reading thread");
        // Retried as if transient, 8 attempts would take about a minute.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}: {error}",
            started.elapsed()
        );
    }
}
