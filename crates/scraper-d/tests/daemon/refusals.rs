//! A tracker that refuses one half's upload or completion: that job alone is released, the
//! other half (already extracted) is still downloaded, uploaded and completed.

use std::time::Duration;

use super::fake_tracker::{FakeTracker, Reply, claimed, one_wat_tracker};
use super::full_job::small_crawl;
use super::support;

async fn run_against(
    tracker: &FakeTracker,
    test_web: &support::TestWeb,
) -> scraper_d::daemon::RunSummary {
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.tracker_dedup = false;
    config.idle_wait = Duration::from_millis(100);
    support::run_until_idle(config).await
}

async fn first_half_refused(
    fault: impl Fn(&str, &str, u64) -> Option<Reply> + Send + Sync + 'static,
) {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 4).await;
    let tracker = one_wat_tracker(crawl.wat_url.clone(), fault).await;
    let summary = run_against(&tracker, &test_web).await;
    assert_eq!(summary.completed, vec![2], "{summary:?}");
    assert_eq!(summary.released, vec![1], "{summary:?}");
    let requests = tracker.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("PUT /put/job-2")),
        "{requests:?}"
    );
    assert_eq!(tracker.count("/api/ext/release"), 1, "{requests:?}");
    // The daemon's own loop alone decides how often a full store is tried (4 times).
    let puts = tracker.count("/put/job-1");
    assert!(puts <= 4, "{puts} uploads of job 1");
    assert_eq!(crawl.server.requests().len(), 1, "one download of the WAT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_one_completion_releases_that_job_only() {
    first_half_refused(|_, path, job| {
        (path.starts_with("/api/ext/complete") && job == 1)
            .then(|| Reply::status(409, "lease lost"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_releases_that_job_only() {
    first_half_refused(|method, _, job| {
        (method == "PUT" && job == 1).then(|| Reply::status(413, "too large"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stays_full_gets_four_uploads_then_the_job_is_released() {
    first_half_refused(|method, _, job| {
        (method == "PUT" && job == 1)
            .then(|| Reply::status(507, "bundle store is full").retry_after(1))
    })
    .await;
}

/// A tracker whose one claim hands out job 1 (half 0 of the test WAT) and `second`.
async fn odd_claim(second: fn(&str) -> (u64, String, u8)) {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 4).await;
    let wat = crawl.wat_url.clone();
    let handed = std::sync::atomic::AtomicBool::new(false);
    let tracker = one_wat_tracker(crawl.wat_url.clone(), move |_, path, _| {
        if !path.starts_with("/api/ext/claim") {
            return None;
        }
        if handed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Some(claimed(&[]));
        }
        let (number, wat_url, shard) = second(&wat);
        Some(claimed(&[(1, &wat, 0), (number, &wat_url, shard)]))
    })
    .await;
    let summary = run_against(&tracker, &test_web).await;
    assert_eq!(summary.completed, vec![1], "{summary:?}");
    assert_eq!(summary.released, vec![2], "{summary:?}");
    assert_eq!(tracker.count("/api/ext/release"), 1);
    assert_eq!(tracker.count("/put/job-2"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_another_wat_in_a_claim_is_released() {
    odd_claim(|_| (2, "http://127.0.0.1:9/other.warc.wat.gz".to_owned(), 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_of_the_same_half_in_a_claim_is_released() {
    odd_claim(|wat| (2, wat.to_owned(), 0)).await;
}
