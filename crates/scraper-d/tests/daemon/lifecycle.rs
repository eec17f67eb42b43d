//! SIGTERM and crash behaviour: jobs are finished within the grace period or released, a
//! killed run loses nothing (leases expire) and a rerun uploads each bundle once.

use std::time::{Duration, Instant};

use super::full_job::{Crawl, small_crawl};
use super::support::{self, TestTracker};

/// Resolves once the Common Crawl server saw a request, i.e. once the daemon claimed a job.
async fn wat_requested(crawl: &Crawl) {
    let started = Instant::now();
    while crawl.server.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wat request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A daemon that claimed both halves of a WAT whose download fails three times first (about
/// 3.5 s of retries), with a 300 ms grace period; the test web, crawl and work folder live as
/// long as it.
struct Stuck {
    tracker: TestTracker,
    signal: tokio::sync::oneshot::Sender<()>,
    daemon: tokio::task::JoinHandle<anyhow::Result<scraper_d::daemon::RunSummary>>,
    _web: support::TestWeb,
    _crawl: Crawl,
    _work: tempfile::TempDir,
}

async fn stuck_daemon() -> Stuck {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 2).await;
    crawl.server.inject_failures(3, 503);
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.shutdown_grace = Duration::from_millis(300);
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = signalled.await;
    }));
    wat_requested(&crawl).await;
    Stuck {
        tracker,
        signal,
        daemon,
        _web: test_web,
        _crawl: crawl,
        _work: work,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_jobs_that_cannot_finish_within_the_grace_period() {
    let Stuck {
        tracker,
        signal,
        daemon,
        ..
    } = stuck_daemon().await;
    assert_eq!(
        support::open_cpu_jobs(&tracker).await,
        0,
        "both halves are claimed"
    );
    let sent = Instant::now();
    signal.send(()).expect("daemon listens");
    let summary = daemon.await.expect("task").expect("daemon runs");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(summary.completed.is_empty());
    assert_eq!(summary.released.len(), 2, "{summary:?}");
    // Released, not waiting for a lease (30 minutes) to expire.
    assert_eq!(support::open_cpu_jobs(&tracker).await, 2);
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_in_time_when_the_tracker_is_gone() {
    let Stuck {
        tracker,
        signal,
        daemon,
        ..
    } = stuck_daemon().await;
    // The tracker goes away with both jobs held: releases and goodbye fail and are retried by
    // the client (for minutes), but systemd kills the unit 30 s after SIGTERM.
    tracker.stop().await;
    let sent = Instant::now();
    signal.send(()).expect("daemon listens");
    let summary = daemon.await.expect("task").expect("daemon runs");
    assert!(
        sent.elapsed() < Duration::from_secs(12),
        "{:?}",
        sent.elapsed()
    );
    assert!(summary.completed.is_empty());
    assert_eq!(summary.released.len(), 2, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_current_jobs_finish_within_the_grace_period() {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 2).await;
    crawl.server.inject_failures(1, 503);
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.shutdown_grace = Duration::from_secs(20);
    config.exit_when_idle = false;
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = signalled.await;
    }));
    wat_requested(&crawl).await;
    signal.send(()).expect("daemon listens");
    let summary = tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("exits within the grace period")
        .expect("task")
        .expect("daemon runs");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");
    assert!(summary.released.is_empty());
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_loses_no_job_and_the_rerun_uploads_each_bundle_once() {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 2).await;
    crawl.server.inject_failures(3, 503);
    let tracker = TestTracker::start(&["--lease", "1s", "--reap-interval", "100ms"]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());

    let crashed = tokio::spawn(scraper_d::daemon::run(
        config.clone(),
        std::future::pending(),
    ));
    wat_requested(&crawl).await;
    crashed.abort();
    assert!(crashed.await.expect_err("aborted").is_cancelled());

    // Nothing renews the leases any more: the reaper puts both halves back.
    let started = Instant::now();
    while support::open_cpu_jobs(&tracker).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "leases never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = scraper_d::daemon::run(config, std::future::pending())
        .await
        .expect("rerun");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");
    let blobs = support::count_files(&tracker.dir.path().join("staging"));
    assert_eq!(blobs, 2, "one upload per job");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_folder_that_cannot_take_bundles_pauses_the_claims() {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 2).await;
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    // The bundles cannot be created: their temporary names are taken by folders (a full disk
    // fails at the same place).
    for number in [1, 2] {
        std::fs::create_dir(work.path().join(format!("job-{number}.tar.tmp"))).expect("plant");
    }
    let mut config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    config.idle_wait = Duration::from_secs(3600);
    config.exit_when_idle = false;
    let daemon = tokio::spawn(scraper_d::daemon::run(config, std::future::pending()));
    wat_requested(&crawl).await;
    let started = Instant::now();
    while support::open_cpu_jobs(&tracker).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the failed jobs were never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Released, and not claimed again at once: a new claim would fail the same way, after
    // downloading and extracting the whole WAT again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(support::open_cpu_jobs(&tracker).await, 2);
    assert_eq!(crawl.server.requests().len(), 1, "one download of the WAT");
    daemon.abort();
    tracker.stop().await;
}
