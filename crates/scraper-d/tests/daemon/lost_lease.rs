//! A lease lost mid-download (the heartbeat no longer lists the job, or the tracker forgot the
//! client) stops the half's downloads instead of finishing them for nothing.

use std::time::{Duration, Instant, SystemTime};

use cah_testkit::commoncrawl::CommonCrawlServer;
use cah_testkit::wat::{HeaderStyle, Html, Link, Page, WatWriter};

use super::fake_tracker::{Reply, one_wat_tracker};
use super::full_job::small_crawl;
use super::support;

/// A WAT of `n_pages` pages, each with one picture that takes 1.4 s to download.
fn slow_wat(web_port: u16, n_pages: usize) -> Vec<u8> {
    let mut writer = WatWriter::new(
        Vec::new(),
        "CC-MAIN-20241209000000-20241209030000-00000.warc.wat.gz",
        HeaderStyle::Arrays,
        SystemTime::UNIX_EPOCH,
        7,
    )
    .expect("writer");
    for index in 0..n_pages {
        let page = Page {
            url: format!("http://site-0001.blog.test/page-{index}.html"),
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            html: Some(Html {
                links: vec![Link::image(
                    format!(
                        "http://img-{index:04}.photos.test:{web_port}/slow/1400/ok/p{index}.jpg"
                    ),
                    Some("a good picture of a lighthouse"),
                )],
                ..Html::default()
            }),
        };
        writer.write_page(&page).expect("page");
    }
    writer.finish().expect("finish")
}

/// Runs a daemon on a slow WAT whose heartbeat answers `lost` once 1.5 s passed; returns the
/// summary and how long the run took.
async fn lost_after_a_while(lost: fn() -> Reply) -> (scraper_d::daemon::RunSummary, Duration) {
    let test_web = support::start_web().await;
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        root.path().join("slow.warc.wat.gz"),
        slow_wat(test_web.web.port(), 16),
    )
    .expect("write wat");
    let crawl = CommonCrawlServer::start_local(root.path())
        .await
        .expect("common crawl server");
    let wat_url = format!("{}slow.warc.wat.gz", crawl.base_url());
    let started = Instant::now();
    let tracker = one_wat_tracker(wat_url, move |_, path, _| {
        (path.starts_with("/api/ext/heartbeat") && started.elapsed() > Duration::from_millis(1500))
            .then(lost)
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.tracker_dedup = false;
    config.concurrency = 1;
    let summary = support::run_until_idle(config).await;
    (summary, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_mid_download_stops_the_downloads() {
    let (summary, took) = lost_after_a_while(|| {
        Reply::json(serde_json::json!({ "jobs": [], "lease_until_ms": 4_000_000_000_000i64 }))
    })
    .await;
    assert_eq!(summary.lost, vec![1, 2], "{summary:?}");
    assert!(summary.completed.is_empty());
    // Eight pictures of 1.4 s each per half, one at a time: 11 s each if not stopped.
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_client_stops_the_downloads() {
    let (summary, took) = lost_after_a_while(|| Reply::status(404, "unknown token")).await;
    assert_eq!(summary.lost, vec![1, 2], "{summary:?}");
    assert!(summary.completed.is_empty());
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// Collects what the daemon logs on this thread.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so that the thread's log subscriber sees the heartbeat task too.
#[tokio::test(flavor = "current_thread")]
async fn a_job_being_completed_is_not_reported_lost() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 4).await;
    // The tracker drops a job from heartbeats as soon as its completion arrives, and answers
    // that completion 800 ms later (heartbeats go every 200 ms).
    let completing = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let tracker = one_wat_tracker(crawl.wat_url.clone(), move |_, path, job| {
        let mut completing = completing.lock().expect("completing");
        if path.starts_with("/api/ext/complete") {
            completing.push(job);
            return Some(Reply::json(serde_json::json!({})).after(Duration::from_millis(800)));
        }
        path.starts_with("/api/ext/heartbeat").then(|| {
            let held: Vec<u64> = [1, 2]
                .into_iter()
                .filter(|job| !completing.contains(job))
                .collect();
            Reply::json(serde_json::json!({ "jobs": held, "lease_until_ms": 4_000_000_000_000i64 }))
        })
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.tracker_dedup = false;
    let summary = support::run_until_idle(config).await;
    assert_eq!(summary.completed, vec![1, 2], "{summary:?}");
    assert!(summary.lost.is_empty(), "{summary:?}");
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    assert!(logs.contains("job completed"), "{logs}");
    assert!(!logs.contains("lease was lost"), "{logs}");
}
