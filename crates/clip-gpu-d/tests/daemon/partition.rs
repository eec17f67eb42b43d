//! A daemon cut off from the tracker past its leases loses its jobs to another daemon: their
//! pairs, already in its open shard, are taken back out, so the dataset never shows them twice.

use std::collections::BTreeSet;

use cah_protocol::ClientType;
use cah_tracker_client::JobOutput;
use url::Url;

use crate::parity_support;
use crate::relay::Relay;
use crate::support::{
    RealTracker, check_dataset, daemon_config, daemon_with_metrics, eventually, hand_in_photos,
    metric, scrape,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_of_jobs_lost_in_a_partition_leave_the_open_shard() {
    let tracker = RealTracker::start(&["--lease", "2s", "--reap-interval", "100ms"]).await;
    tracker.import(2).await;
    let photos = parity_support::photos();
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let first = cpu.claim(2, false).await.expect("claim");
    hand_in_photos(&cpu, &first, &photos, 2, "lost/").await;

    let relay = Relay::start(tracker.addr()).await;
    let through_relay = Url::parse(&format!("http://{}/", relay.addr)).expect("relay url");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    // One long shard: scored jobs wait in it, held, until the daemon stops.
    let config = daemon_config(
        &through_relay,
        &output,
        &[
            "--shard-size",
            "100",
            "--flush-interval",
            "1h",
            "--max-jobs",
            "4",
        ],
    );
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        let kept = |n: f64| {
            let metrics_url = metrics_url.clone();
            async move {
                let text = scrape(&metrics_url).await?;
                (metric(&text, "clip_pairs_kept_total")? == n).then_some(())
            }
        };
        eventually("the first jobs scored into the open shard", || kept(4.0)).await;

        // The partition outlasts the leases: another GPU client gets both jobs.
        relay.cut();
        let other = tracker.register("other-gpu", ClientType::Gpu).await;
        let taken = eventually("the jobs handed out again", || async {
            let jobs = other.claim(2, false).await.ok()?;
            (!jobs.is_empty()).then_some(jobs)
        })
        .await;
        let mut taken: BTreeSet<u64> = taken.iter().map(|job| job.number).collect();
        if taken.len() < 2 {
            let more = eventually("the second job handed out again", || async {
                let jobs = other.claim(1, false).await.ok()?;
                (!jobs.is_empty()).then_some(jobs)
            })
            .await;
            taken.extend(more.iter().map(|job| job.number));
        }
        let expected: BTreeSet<u64> = first.iter().map(|job| job.number).collect();
        assert_eq!(taken, expected, "the other client holds the first jobs");
        // It writes their pairs and completes them (else its own leases would expire and the
        // daemon would rightly claim the jobs again once healed).
        for number in &taken {
            other
                .complete(*number, JobOutput::Pairs(2))
                .await
                .expect("the other client completes");
        }

        // Healed: the next heartbeat tells the daemon; the next job it adds takes the lost
        // pairs out of the open shard.
        relay.heal();
        eventually("the daemon learns it lost both jobs", || async {
            let text = scrape(&metrics_url).await?;
            (metric(&text, "clip_jobs_lost_total")? == 2.0).then_some(())
        })
        .await;
        let second = cpu.claim(2, false).await.expect("claim");
        let (blobs, samples) = hand_in_photos(&cpu, &second, &photos[4..], 2, "kept/").await;
        eventually("the second jobs scored", || kept(8.0)).await;
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_pairs_taken_out_total"),
            Some(4.0),
            "{text}"
        );
        let _ = stop.send(());
        (blobs, samples)
    };
    let (result, (blobs, samples)) = tokio::join!(daemon, driver);
    result.expect("daemon ran");

    let done = tracker
        .client()
        .is_completed(&blobs)
        .await
        .expect("is completed");
    assert_eq!(done.len(), blobs.len(), "the second jobs are completed");
    let summary = check_dataset(&output);
    let expected: BTreeSet<String> = samples.iter().map(|sample| sample.url.clone()).collect();
    let urls: BTreeSet<String> = summary.urls.iter().cloned().collect();
    assert_eq!(urls, expected, "only the jobs the daemon still held");
    assert_eq!(summary.rows, 4, "{summary:?}");
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    tracker.stop().await;
}
