//! A lease lost mid-download (the heartbeat no longer lists the job, or the tracker forgot the
//! client) stops the half's downloads instead of finishing them for nothing.

use std::time::{Duration, Instant, SystemTime};

use cah_testkit::commoncrawl::CommonCrawlServer;
use cah_testkit::wat::{HeaderStyle, Html, Link, Page, WatWriter};

use super::fake_tracker::{Reply, one_wat_tracker};
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
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        scraper_d::daemon::run(config, std::future::pending()),
    )
    .await
    .expect("the daemon exits when idle")
    .expect("daemon runs");
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
