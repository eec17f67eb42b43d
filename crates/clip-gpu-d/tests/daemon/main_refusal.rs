//! The tracker refuses a shard's hashes for `main` (its database fails that insert) while
//! everything else works: the jobs complete, the daemon does not write the same pairs again
//! for a later job, and the hashes reach `main` once the tracker takes them, without a restart.

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, daemon_config, daemon_with_metrics, eventually, good_bundle,
    hand_in, metric, scrape, with_metadata,
};

/// A trigger that makes every insert into the `main` set (set 3) fail, as a broken table would.
const REFUSE_MAIN: &str = "CREATE TRIGGER refuse_main BEFORE INSERT ON dedup WHEN NEW.set_id = 3 \
                           BEGIN SELECT RAISE(ABORT, 'injected failure'); END";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_main_refused_are_added_later_and_dedup_this_daemon_meanwhile() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    tracker.execute(REFUSE_MAIN).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    assert_eq!(jobs.len(), 2);
    let photos = parity_support::photos();
    // Both jobs found the same three images with the same captions (two pages of one site).
    let bundles: Vec<_> = jobs
        .iter()
        .map(|job| {
            good_bundle(job, &photos[..3], |i| {
                format!("http://img.test/same/{i}.jpg")
            })
        })
        .collect();
    let hashes: Vec<u64> = bundles[0]
        .1
        .iter()
        .map(|sample| clip_gpu_d::dedup::pair_hash(&sample.url, &sample.alt))
        .collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(&tracker.base_url, &output, &["--max-jobs", "1"]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let client = tracker.client();
    let driver = async {
        eventually("the daemon to start", || scrape(&metrics_url)).await;
        let mut blobs = Vec::new();
        for (job, (entries, samples)) in jobs.iter().zip(bundles) {
            let blob = hand_in(
                &cpu,
                job.number,
                with_metadata(entries, &samples, job.number),
            )
            .await;
            blobs.push(blob.clone());
            // One at a time: the first job's shard closes (flush interval) before the second.
            eventually("the job to complete", || async {
                let done = client
                    .is_completed(std::slice::from_ref(&blob))
                    .await
                    .expect("is completed");
                (done.len() == 1).then_some(())
            })
            .await;
        }
        let text = scrape(&metrics_url).await.expect("metrics");
        // The tracker is mended; the drain adds the waiting shard.
        tracker.execute("DROP TRIGGER refuse_main").await;
        let _ = stop.send(());
        text
    };
    let (result, metrics) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    assert_eq!(
        metric(&metrics, "clip_pairs_duplicate_total"),
        Some(3.0),
        "the second job's pairs were found in the shard waiting for main:\n{metrics}"
    );

    let summary = check_dataset(&output);
    assert_eq!(summary.rows, 3, "each pair written once: {summary:?}");
    let pending: Vec<_> = std::fs::read_dir(&output)
        .expect("output")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".pending"))
        .collect();
    assert!(pending.is_empty(), "committed at the drain: {pending:?}");
    let gpu = tracker.register("next-gpu", ClientType::Gpu).await;
    let new = gpu
        .dedup(DedupSet::Main, &hashes, false)
        .await
        .expect("dedup");
    assert_eq!(new, [false, false, false], "the shard's pairs reached main");
    tracker.stop().await;
}
