//! Trackers that answer what tracker-d never does (scripted by `fake_tracker.rs`): no
//! extension API, registrations or claims that hang.

use std::time::{Duration, Instant};

use super::fake_tracker::{FakeTracker, Reply, claimed, registered};
use super::support;

/// A run config against `tracker` that stays up when idle.
fn config(tracker: &FakeTracker, work: &std::path::Path) -> scraper_d::config::RunConfig {
    let dns = "127.0.0.1:9".parse().expect("addr");
    let mut config = support::run_config(&tracker.base, dns, work);
    config.exit_when_idle = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_without_the_extension_api_is_not_hammered_with_registrations() {
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let tracker = FakeTracker::start(move |_, path, _| {
        if path.starts_with("/api/new") {
            registered(counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        } else if path.starts_with("/api/ext/") {
            Reply::status(404, "not found")
        } else {
            Reply::json(serde_json::json!({}))
        }
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = config(&tracker, work.path());
    config.idle_wait = Duration::from_millis(500);
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = signalled.await;
    }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal.send(()).expect("daemon listens");
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("stops")
        .expect("task")
        .expect("daemon runs");
    let registrations = tracker.count("/api/new");
    // One at start, then one per idle wait (500 ms) at most.
    assert!(
        (2..=7).contains(&registrations),
        "{registrations} registrations in 2 s"
    );
}

/// Starts a daemon on `tracker`, signals a stop after `after`, and returns the run's summary
/// with the time it took to exit after the signal.
async fn stopped_after(
    tracker: &FakeTracker,
    grace: Duration,
    after: Duration,
) -> (scraper_d::daemon::RunSummary, Duration) {
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = config(tracker, work.path());
    config.shutdown_grace = grace;
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = signalled.await;
    }));
    tokio::time::sleep(after).await;
    let sent = Instant::now();
    signal.send(()).expect("daemon listens");
    let summary = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("stops within 30 s")
        .expect("task")
        .expect("daemon runs");
    (summary, sent.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_interrupts_a_registration_that_hangs() {
    let tracker = FakeTracker::start(|_, path, _| {
        if path.starts_with("/api/new") {
            registered(0).after(Duration::from_secs(120))
        } else {
            Reply::json(serde_json::json!({}))
        }
    })
    .await;
    let (_, took) =
        stopped_after(&tracker, Duration::from_secs(1), Duration::from_millis(500)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_interrupts_a_claim_that_hangs() {
    let tracker = FakeTracker::start(|_, path, _| {
        if path.starts_with("/api/new") {
            registered(0)
        } else if path.starts_with("/api/ext/claim") {
            Reply::status(503, "busy").after(Duration::from_secs(120))
        } else {
            Reply::json(serde_json::json!({}))
        }
    })
    .await;
    let (_, took) =
        stopped_after(&tracker, Duration::from_secs(1), Duration::from_millis(500)).await;
    // The claim in flight gets 2 s to answer, the goodbye a moment.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(tracker.count("/api/ext/claim"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_after_a_stop_are_released_at_once() {
    let handed = std::sync::atomic::AtomicBool::new(false);
    let tracker = FakeTracker::start(move |_, path, _| {
        if path.starts_with("/api/new") {
            registered(0)
        } else if path.starts_with("/api/ext/claim") {
            if handed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                claimed(&[])
            } else {
                let wat = "http://127.0.0.1:9/crawl.warc.wat.gz";
                claimed(&[(1, wat, 0), (2, wat, 1)]).after(Duration::from_millis(1000))
            }
        } else {
            Reply::json(
                serde_json::json!({ "jobs": [1, 2], "lease_until_ms": 4_000_000_000_000i64 }),
            )
        }
    })
    .await;
    // A grace period of 30 s: a claim worked as usual would take it all (the WAT never comes).
    let (summary, took) = stopped_after(
        &tracker,
        Duration::from_secs(30),
        Duration::from_millis(300),
    )
    .await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(summary.released, vec![1, 2], "{summary:?}");
    assert!(summary.completed.is_empty());
    assert_eq!(
        tracker.count("/api/ext/release"),
        2,
        "{:?}",
        tracker.requests()
    );
}
