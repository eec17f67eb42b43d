//! WATs that are not whole: an HTML page or garbage instead of a WAT, a file cut inside a gzip
//! member, a 404, a file over `--max-wat-bytes`. Their jobs are reported to the tracker as
//! unusable, so another WAT is handed out before them, and never completed with empty
//! bundles; a WAT behind server errors is released, keeping its place.

use std::path::Path;
use std::time::{Duration, Instant};

use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::WatConfig;
use scraper_d::config::RunConfig;
use scraper_d::daemon::RunSummary;
use tracker_d::testing::job_state;

use super::fake_tracker::{Reply, one_wat_tracker};
use super::support::{self, TestTracker};

/// Another WAT, imported after the crawl's: its jobs are 3 and 4, claimed after jobs 1 and 2
/// while those keep their place. Nobody downloads it.
const OTHER_WAT: &str = "http://127.0.0.1:9/crawl-data/other.warc.wat.gz";

/// A crawl of one WAT whose file `damage` rewrites before the server starts.
struct DamagedCrawl {
    server: CommonCrawlServer,
    wat_url: String,
    _root: tempfile::TempDir,
}

async fn damaged_crawl(damage: impl FnOnce(&Path)) -> DamagedCrawl {
    let root = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 4,
        ..WatConfig::small(1, 17)
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

/// What became of a daemon's claim of `wat_url` (jobs 1 and 2).
struct Claimed {
    /// The jobs a second scraper's whole-WAT claim got next.
    next_claim: Vec<u64>,
    summary: RunSummary,
    tracker: TestTracker,
}

/// Runs a daemon (with `adjust` applied to its config) until it fetched `server`'s WAT and
/// jobs 1 and 2 are open again, reported or released, and checks that nothing was uploaded;
/// then lets a second scraper claim a whole WAT, and stops the daemon (which waits after its
/// failed claim).
async fn claim_once(
    server: &CommonCrawlServer,
    wat_url: &str,
    adjust: impl FnOnce(&mut RunConfig),
) -> Claimed {
    let test_web = support::start_web().await;
    let tracker = TestTracker::start(&[]).await;
    tracker
        .import(&[wat_url.to_owned(), OTHER_WAT.to_owned()])
        .await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.idle_wait = Duration::from_secs(3600);
    config.exit_when_idle = false;
    adjust(&mut config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while server.requests().is_empty() || support::open_cpu_jobs(&tracker).await < 4 {
        assert!(
            !daemon.is_finished(),
            "the daemon stopped: {:?}",
            daemon.await
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the jobs never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        support::count_files(&tracker.dir.path().join("staging")),
        0,
        "no bundle uploaded"
    );
    let other = cah_tracker_client::TrackerClient::with_defaults(
        url::Url::parse(&tracker.base).expect("base"),
    )
    .expect("client")
    .register("other-scraper", cah_protocol::ClientType::Cpu)
    .await
    .expect("register");
    let next_claim = other.claim(2, true).await.expect("claim");
    let _ = stop.send(());
    let summary = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops")
        .expect("daemon task")
        .expect("daemon runs");
    Claimed {
        next_claim: next_claim.iter().map(|job| job.number).collect(),
        summary,
        tracker,
    }
}

/// Both jobs were reported once, with a reason that says `what`, and the other WAT was handed
/// out first.
async fn assert_reported(claimed: Claimed, what: &str) {
    assert_eq!(
        claimed.next_claim,
        [3, 4],
        "the other WAT comes first: {:?}",
        claimed.summary
    );
    assert_eq!(claimed.summary.reported, [1, 2], "{:?}", claimed.summary);
    assert!(claimed.summary.released.is_empty(), "{:?}", claimed.summary);
    for number in [1, 2] {
        let job = job_state(&claimed.tracker.database_url, number).await;
        assert_eq!((job.status.as_str(), job.failures), ("open", 1), "{job:?}");
        let reason = job.failure_reason.unwrap_or_default();
        assert!(reason.contains(what), "job {number}: {reason}");
    }
    claimed.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_instead_of_a_wat_is_reported() {
    let crawl = damaged_crawl(|path| {
        std::fs::write(path, b"<html><body>503 Service Unavailable</body></html>").expect("write")
    })
    .await;
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |_| {}).await;
    assert_eq!(crawl.server.requests().len(), 1, "one download");
    assert_reported(claimed, "not a wat: no warc record in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_wat_is_reported() {
    let crawl = damaged_crawl(|path| {
        let garbage: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(path, garbage).expect("write")
    })
    .await;
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |_| {}).await;
    assert_reported(claimed, "not a wat").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wat_cut_inside_a_gzip_member_is_reported() {
    let crawl = damaged_crawl(|path| {
        // Served whole with a matching Content-Length: only the gzip framing tells.
        let bytes = std::fs::read(path).expect("read");
        std::fs::write(path, &bytes[..bytes.len() - 40]).expect("write")
    })
    .await;
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |_| {}).await;
    assert_reported(claimed, "truncated: ends inside a gzip member").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wat_that_answers_404_is_reported() {
    let crawl = damaged_crawl(|path| std::fs::remove_file(path).expect("remove")).await;
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |_| {}).await;
    assert_eq!(crawl.server.requests().len(), 1, "a 404 is not retried");
    assert_reported(claimed, "the wat url answers 404").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wat_over_max_wat_bytes_is_reported() {
    let crawl = damaged_crawl(|_| {}).await;
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |config| {
        config.wat_http.max_bytes = 100
    })
    .await;
    assert_reported(claimed, "larger than 100 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wat_behind_server_errors_is_released_and_keeps_its_place() {
    let crawl = damaged_crawl(|_| {}).await;
    crawl.server.inject_failures(2, 503);
    let claimed = claim_once(&crawl.server, &crawl.wat_url, |config| {
        config.wat_http.max_attempts = 2;
        config.wat_http.retry_delay = Duration::from_millis(10);
    })
    .await;
    assert_eq!(crawl.server.requests().len(), 2, "both attempts failed");
    assert_eq!(claimed.summary.released, [1, 2], "{:?}", claimed.summary);
    assert!(claimed.summary.reported.is_empty(), "{:?}", claimed.summary);
    assert_eq!(
        claimed.next_claim,
        [1, 2],
        "a released WAT is handed out again first"
    );
    let job = job_state(&claimed.tracker.database_url, 1).await;
    assert_eq!(job.failures, 0, "{job:?}");
    claimed.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_refuses_the_report_gets_the_jobs_released() {
    let crawl =
        damaged_crawl(|path| std::fs::write(path, b"<html>gone</html>").expect("write")).await;
    // A tracker from before the CPU meaning of `invalid`: it answers as for a GPU job.
    let tracker = one_wat_tracker(crawl.wat_url.clone(), |_, path, job| {
        path.starts_with("/api/ext/invalid")
            .then(|| Reply::status(409, &format!("you do not hold GPU job {job}")))
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let dns = "127.0.0.1:9".parse().expect("addr");
    let config = support::run_config(&tracker.base, dns, work.path());
    let summary = support::run_until_idle(config).await;
    assert_eq!(summary.released, [1, 2], "{summary:?}");
    assert!(summary.reported.is_empty(), "{summary:?}");
    assert_eq!(tracker.count("/api/ext/invalid"), 2);
    assert_eq!(tracker.count("/api/ext/release"), 2);
}
