//! A shard write that fails in the middle of a job stops the daemon, but the shards the job
//! filled before the failure are committed first: the job's next daemon finds their pairs in
//! `main` instead of writing them a second time.

use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, daemon_config, eventually, hand_in_photos, metrics_listener, scrape,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_commits_the_shards_already_visible() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    let photos = parity_support::photos();

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &["--shard-size", "2", "--max-jobs", "2"],
    );
    let (listener, metrics_url) = metrics_listener().await;
    let daemon =
        clip_gpu_d::daemon::run_with_listener(config, Some(listener), std::future::pending());
    let driver = async {
        // Metrics answer once the output folder is recovered; then shard 1 is made impossible
        // to open (its temporary tar's name taken by a folder), and a job of 3 pairs arrives.
        eventually("the daemon to start", || scrape(&metrics_url)).await;
        std::fs::create_dir(output.join("00001.tar.tmp")).expect("plant a folder");
        hand_in_photos(&cpu, &jobs, &photos, 3, "").await
    };
    let (result, (_, samples)) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(120), daemon)
                .await
                .expect("the daemon stops on the failed write")
        },
        driver
    );
    let error = format!("{:#}", result.expect_err("the write failed"));
    assert!(error.contains("00001.tar.tmp"), "{error}");

    // Shard 0 is whole and committed: no marker left, its two pairs in `main`.
    assert!(output.join("00000_stats.json").is_file());
    assert!(!output.join("00000.pending").exists(), "committed");
    let summary = check_dataset(&output);
    assert_eq!(summary.rows, 2, "{summary:?}");
    let hashes: Vec<u64> = samples
        .iter()
        .filter(|sample| summary.urls.contains(&sample.url))
        .map(|sample| clip_gpu_d::dedup::pair_hash(&sample.url, &sample.alt))
        .collect();
    assert_eq!(hashes.len(), 2);
    let gpu = tracker.register("next-gpu", ClientType::Gpu).await;
    let new = gpu
        .dedup(DedupSet::Main, &hashes, false)
        .await
        .expect("dedup");
    assert_eq!(new, [false, false], "shard 0's pairs are in main");
    // No shard was left uncommitted, so the daemon said bye: the job is open again at once.
    let again = gpu.claim(1, false).await.expect("claim");
    assert_eq!(
        again.iter().map(|job| job.number).collect::<Vec<_>>(),
        [jobs[0].number]
    );
    tracker.stop().await;
}
