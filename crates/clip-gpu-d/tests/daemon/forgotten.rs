//! A daemon the tracker forgot (idle past the client timeout, or a tracker that lost its
//! database) registers again and carries on; jobs it held under the old token are never
//! completed under the new one.

use std::collections::BTreeSet;

use cah_protocol::ClientType;
use cah_protocol::bundle::BundleSample;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, daemon_config, daemon_with_metrics, eventually, hand_in_photos,
    metric, scrape,
};

/// The image URLs of `samples`.
fn urls(samples: &[BundleSample]) -> BTreeSet<String> {
    samples.iter().map(|sample| sample.url.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_the_tracker_forgot_registers_again_and_takes_new_work() {
    // Clients silent for 3 s are forgotten. The daemon heartbeats every second while it holds
    // jobs; idle, it calls only to claim, every 6 s.
    let tracker = RealTracker::start(&[
        "--lease",
        "3s",
        "--client-timeout",
        "3s",
        "--reap-interval",
        "100ms",
    ])
    .await;
    tracker.import(2).await;
    let photos = parity_support::photos();
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    let (first_blobs, samples) = hand_in_photos(&cpu, &jobs, &photos, 2, "first/").await;
    let mut expected_urls = urls(&samples);

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(&tracker.base_url, &output, &["--poll-interval", "6s"]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let client = tracker.client();
    let driver = async {
        eventually("the first jobs to complete", || async {
            let done = client
                .is_completed(&first_blobs)
                .await
                .expect("is completed");
            (done.len() == first_blobs.len()).then_some(())
        })
        .await;
        // Idle, the daemon is forgotten; its next claim answers 404 and it registers again.
        eventually("the daemon to register again", || async {
            let text = scrape(&metrics_url).await?;
            (metric(&text, "clip_tracker_reregistrations_total")? >= 1.0).then_some(())
        })
        .await;
        // New work after that: the CPU client was forgotten too, so a new one hands it in.
        let cpu = tracker.register("cpu-2", ClientType::Cpu).await;
        let jobs = cpu.claim(2, false).await.expect("claim");
        assert_eq!(jobs.len(), 2);
        let (second_blobs, samples) = hand_in_photos(&cpu, &jobs, &photos[4..], 3, "second/").await;
        expected_urls.extend(urls(&samples));
        eventually("the new jobs to complete", || async {
            let done = client
                .is_completed(&second_blobs)
                .await
                .expect("is completed");
            (done.len() == second_blobs.len()).then_some(())
        })
        .await;
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_jobs_completed_total"),
            Some(4.0),
            "{text}"
        );
        assert_eq!(metric(&text, "clip_jobs_lost_total"), Some(0.0), "{text}");
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");

    let summary = check_dataset(&output);
    let urls: BTreeSet<String> = summary.urls.iter().cloned().collect();
    assert_eq!(urls, expected_urls, "every pair of both rounds");
    assert_eq!(summary.urls.len(), urls.len(), "no pair twice: {summary:?}");
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_held_when_the_tracker_lost_its_database_are_never_completed() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let photos = parity_support::photos();
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let old_jobs = cpu.claim(2, false).await.expect("claim");
    hand_in_photos(&cpu, &old_jobs, &photos, 2, "old/").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    // One long shard: scored jobs wait in it, held, until the daemon stops.
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &["--shard-size", "100", "--flush-interval", "1h"],
    );
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        eventually("the old jobs scored into the open shard", || async {
            let text = scrape(&metrics_url).await?;
            (metric(&text, "clip_pairs_kept_total")? == 4.0).then_some(())
        })
        .await;
        // The tracker comes back on the same address without its database. Its jobs 1 and 2
        // are new jobs with the numbers the daemon still holds.
        let tracker = tracker.replace_with_fresh(&[]).await;
        tracker.import(2).await;
        let cpu = tracker.register("cpu", ClientType::Cpu).await;
        let new_jobs = cpu.claim(4, false).await.expect("claim");
        let old_numbers: BTreeSet<u64> = old_jobs.iter().map(|job| job.number).collect();
        assert!(
            new_jobs.iter().any(|job| old_numbers.contains(&job.number)),
            "the test needs reused job numbers"
        );
        let (new_blobs, samples) = hand_in_photos(&cpu, &new_jobs, &photos, 3, "new/").await;
        let new_urls = urls(&samples);
        eventually("the new jobs scored into the open shard", || async {
            let text = scrape(&metrics_url).await?;
            (metric(&text, "clip_pairs_kept_total")? == 16.0).then_some(())
        })
        .await;
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_tracker_reregistrations_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(metric(&text, "clip_jobs_lost_total"), Some(2.0), "{text}");
        assert_eq!(
            metric(&text, "clip_pairs_taken_out_total"),
            Some(4.0),
            "{text}"
        );
        let _ = stop.send(());
        (tracker, new_blobs, new_urls)
    };
    let (result, (tracker, new_blobs, new_urls)) = tokio::join!(daemon, driver);
    result.expect("daemon ran");

    // The drain closed the shard and completed the new jobs, and only them: a completion of
    // an old claim would have closed a new job with the old job's pair count.
    let client = tracker.client();
    let done = client.is_completed(&new_blobs).await.expect("is completed");
    assert_eq!(done.len(), new_blobs.len());
    let data = client.data().await.expect("data");
    assert_eq!(data.total_pairs_scraped, 12, "{data:?}");
    let summary = check_dataset(&output);
    let urls: BTreeSet<String> = summary.urls.iter().cloned().collect();
    assert!(
        new_urls.is_subset(&urls),
        "every new pair is in the dataset"
    );
    assert_eq!(summary.urls.len(), urls.len(), "no pair twice: {summary:?}");
    // The old jobs' pairs were in the open shard when the tracker lost them: they were taken
    // back out (the tracker hands lost jobs out again, so another daemon may write them).
    assert_eq!(summary.rows, 12, "only the new jobs' pairs: {summary:?}");
    assert!(urls.iter().all(|url| url.contains("/new/")), "{urls:?}");
    tracker.stop().await;
}
