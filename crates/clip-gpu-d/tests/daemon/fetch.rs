//! A bundle download that fails for a reason other than the bundle releases the job instead of
//! reporting it invalid: the bundle stays, and the job is not sent back to be scraped again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cah_protocol::ClientType;
use cah_tracker_client::JobOutput;

use crate::parity_support;
use crate::support::{
    RealTracker, daemon_config, daemon_with_metrics, eventually, hand_in_photos, metric,
    released_none_invalid, run_until_released_none_invalid, scrape,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_download_folder_releases_the_jobs() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    let photos = parity_support::photos();
    hand_in_photos(&cpu, &jobs, &photos, 2, "").await;
    let numbers: BTreeSet<u64> = jobs.iter().map(|job| job.number).collect();

    // A file where the download folder should be: no bundle can be written (as with a full
    // disk or a read-only folder), whatever user runs the test.
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    std::fs::create_dir_all(&output).expect("output");
    std::fs::write(output.join(".downloads"), b"in the way").expect("blocker");
    let config = daemon_config(&tracker.base_url, &output, &["--max-jobs", "2"]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        let text = released_none_invalid(&metrics_url, 2.0).await;
        assert_eq!(
            metric(&text, "clip_jobs_claimed_total"),
            Some(2.0),
            "{text}"
        );
        // The daemon pauses its claims after a local failure: another GPU client gets the jobs,
        // bundles and all, and none went back to the CPU queue.
        let gpu = tracker.register("gpu-2", ClientType::Gpu).await;
        let again = gpu.claim(8, false).await.expect("claim");
        let again_numbers: BTreeSet<u64> = again.iter().map(|job| job.number).collect();
        assert_eq!(again_numbers, numbers);
        assert!(again.iter().all(|job| job.bundle.is_some()), "{again:?}");
        assert!(cpu.claim(8, false).await.expect("cpu claim").is_empty());
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_jobs_claimed_total"),
            Some(2.0),
            "{text}"
        );
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    tracker.stop().await;
}

/// A bundle store that answers every request with `status`; its bundle URL and a count of the
/// requests it got.
async fn failing_store(
    status: axum::http::StatusCode,
    body: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let store = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        async move { (status, body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind store");
    let store_url = format!("http://{}/bundle.tar", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, store).await });
    (store_url, requests)
}

/// A tracker with one job a CPU client scraped and handed off as `bundle_url`: a GPU job. The
/// CPU client's session and the jobs it claimed come with it.
async fn gpu_job_at(
    bundle_url: &str,
) -> (
    RealTracker,
    cah_tracker_client::Session,
    Vec<cah_protocol::ext::Job>,
) {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    cpu.complete(jobs[0].number, JobOutput::Bundle(bundle_url.to_owned()))
        .await
        .expect("complete cpu job");
    (tracker, cpu, jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_store_answering_503_releases_the_job() {
    // A staging store that is down.
    let (store_url, requests) = failing_store(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "down for maintenance",
    )
    .await;
    let (tracker, cpu, jobs) = gpu_job_at(&store_url).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        released_none_invalid(&metrics_url, 1.0).await;
        assert!(
            requests.load(Ordering::Relaxed) >= 3,
            "three tries before the release"
        );
        // Not sent back to be scraped again: the job stays a GPU job (the CPU gets only the
        // WAT's other half).
        let cpu_jobs = cpu.claim(8, false).await.expect("cpu claim");
        assert!(
            cpu_jobs.iter().all(|job| job.number != jobs[0].number),
            "{cpu_jobs:?}"
        );
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    // The daemon said bye, so the tracker holds the job for the next GPU client.
    let gpu = tracker.register("gpu-2", ClientType::Gpu).await;
    let again = eventually("the job to be claimable", || async {
        let again = gpu.claim(1, false).await.expect("claim");
        (!again.is_empty()).then_some(again)
    })
    .await;
    assert_eq!(again[0].number, jobs[0].number);
    let bundle = again[0].bundle.as_ref().expect("bundle location");
    assert_eq!(bundle.url, store_url);
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_stays_unreachable_is_reported_invalid_after_three_claims() {
    // A store that refuses this bundle for good (an expired or wrong signature).
    let (store_url, _) =
        failing_store(axum::http::StatusCode::FORBIDDEN, "signature mismatch").await;
    let (tracker, cpu, jobs) = gpu_job_at(&store_url).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    // Three failed claims are enough here, however close together.
    config.unreachable_span = std::time::Duration::ZERO;
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        let text = eventually("the job to be reported invalid", || async {
            let text = scrape(&metrics_url).await?;
            (metric(&text, "clip_jobs_invalid_total")? >= 1.0).then_some(text)
        })
        .await;
        // Released after the first two claims, then given up on.
        assert_eq!(
            metric(&text, "clip_jobs_released_total"),
            Some(2.0),
            "{text}"
        );
        // Sent back to be scraped again: the CPU queue has the job once more.
        let cpu_jobs = cpu.claim(8, false).await.expect("cpu claim");
        assert!(
            cpu_jobs.iter().any(|job| job.number == jobs[0].number),
            "{cpu_jobs:?}"
        );
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    tracker.stop().await;
}

/// A bundle store that answers 200 and then drips one byte every 300 ms, for ever.
async fn dripping_store() -> String {
    let store = axum::Router::new().fallback(|| async {
        let drip = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x")),
                (),
            ))
        });
        axum::body::Body::from_stream(drip)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind store");
    let store_url = format!("http://{}/bundle.tar", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, store).await });
    store_url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_bundle_store_fails_the_download_and_releases_the_job() {
    let store_url = dripping_store().await;
    let (tracker, _cpu, _jobs) = gpu_job_at(&store_url).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    // A byte every 300 ms never trips the read timeout; the minimum rate applies after 1 s.
    config.download_rate_grace = std::time::Duration::from_secs(1);
    run_until_released_none_invalid(config, 1.0).await;
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_is_waited_out_as_the_store_asks_and_blames_no_bundle() {
    // A store down for a while, asking for 1 s between requests.
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&times);
    let store = axum::Router::new().fallback(move || {
        seen.lock().expect("times").push(std::time::Instant::now());
        async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "slow down",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind store");
    let store_url = format!("http://{}/bundle.tar", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, store).await });
    let (tracker, _cpu, _jobs) = gpu_job_at(&store_url).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        // Four failed claims within seconds: not enough to call the bundle unreachable.
        released_none_invalid(&metrics_url, 4.0).await;
        // One request per claim, each after the store's Retry-After (not the 100 ms poll).
        let times = times.lock().expect("times").clone();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= std::time::Duration::from_millis(900),
                "{gap:?} in {times:?}"
            );
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    tracker.stop().await;
}
