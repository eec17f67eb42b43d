//! Trackers that answer what tracker-d never does (scripted by `fake_tracker.rs`): no
//! extension API, registrations or claims that hang.

use std::time::Duration;

use super::fake_tracker::{FakeTracker, Reply, registered};
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
