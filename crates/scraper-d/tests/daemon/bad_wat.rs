//! WATs that are not whole: an HTML page or garbage instead of a WAT, a file cut inside a gzip
//! member; their jobs are released, never completed with empty bundles.

use std::path::Path;
use std::time::{Duration, Instant};

use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::WatConfig;

use super::support::{self, TestTracker};

/// A crawl of one WAT whose file `damage` rewrites before the server starts.
struct DamagedCrawl {
    server: CommonCrawlServer,
    wat_url: String,
    _root: tempfile::TempDir,
}

async fn damaged_crawl(web_port: u16, damage: impl FnOnce(&Path)) -> DamagedCrawl {
    let root = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 4,
        ..WatConfig::small(web_port, 17)
    };
    write_crawl(root.path(), std::slice::from_ref(&config)).expect("crawl written");
    damage(&root.path().join(config.relative_path()));
    let server = CommonCrawlServer::start_local(root.path())
        .await
        .expect("common crawl server");
    let wat_url = format!("{}{}", server.base_url(), config.relative_path());
    DamagedCrawl {
        server,
        wat_url,
        _root: root,
    }
}

/// Runs a daemon on `crawl`'s WAT until both jobs are open again (released), and checks that
/// nothing was completed or uploaded.
async fn both_jobs_come_back(crawl: &DamagedCrawl) {
    let test_web = support::start_web().await;
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.idle_wait = Duration::from_secs(3600);
    config.exit_when_idle = false;
    let daemon = tokio::spawn(scraper_d::daemon::run(config, std::future::pending()));
    let started = Instant::now();
    while crawl.server.requests().is_empty() || support::open_cpu_jobs(&tracker).await < 2 {
        assert!(
            !daemon.is_finished(),
            "the daemon stopped: {:?}",
            daemon.await
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the jobs were never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        support::count_files(&tracker.dir.path().join("staging")),
        0,
        "no bundle uploaded"
    );
    daemon.abort();
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_instead_of_a_wat_releases_both_jobs() {
    let crawl = damaged_crawl(1, |path| {
        std::fs::write(path, b"<html><body>503 Service Unavailable</body></html>").expect("write")
    })
    .await;
    both_jobs_come_back(&crawl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_wat_releases_both_jobs() {
    let crawl = damaged_crawl(1, |path| {
        let garbage: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(path, garbage).expect("write")
    })
    .await;
    both_jobs_come_back(&crawl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wat_cut_inside_a_gzip_member_releases_both_jobs() {
    let crawl = damaged_crawl(1, |path| {
        // Served whole with a matching Content-Length: only the gzip framing tells.
        let bytes = std::fs::read(path).expect("read");
        std::fs::write(path, &bytes[..bytes.len() - 40]).expect("write")
    })
    .await;
    both_jobs_come_back(&crawl).await;
}
