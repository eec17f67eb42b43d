//! A daemon killed mid-run and restarted leaves no duplicate and no lost shard, and the restart
//! hands the killed run's jobs back at once instead of at the end of their leases.

use std::collections::BTreeSet;

use cah_protocol::ClientType;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, daemon_config, hand_in_photos, run_until_completed, run_until_file,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_keep_every_pair_once() {
    // Leases far longer than the test: only the restart's bye for the killed run's registration
    // can bring its jobs back.
    let tracker = RealTracker::start(&["--lease", "1h", "--reap-interval", "100ms"]).await;
    tracker.import(3).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(6, false).await.expect("claim");
    assert_eq!(jobs.len(), 6);
    let photos = parity_support::photos();
    let (blobs, samples) = hand_in_photos(&cpu, &jobs, &photos, 3, "").await;
    let expected: BTreeSet<u64> = samples.iter().map(|sample| sample.sample_id).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    // First run: killed (its future dropped) as soon as the first shard is visible.
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &["--shard-size", "4", "--max-jobs", "6"],
    );
    run_until_file(config, &output.join("00000_stats.json")).await;
    let tokens = output.join(".clip-gpu-d.tokens");
    let killed_token = std::fs::read_to_string(&tokens).expect("the running registration's token");
    assert_eq!(killed_token.lines().count(), 1, "{killed_token:?}");
    // A crash in the middle of a shard: leftovers of a half-written shard 00090.
    std::fs::write(output.join("00090.tar.tmp"), b"partial").expect("plant");
    std::fs::write(
        output.join("00090.pending"),
        br#"{"hashes":[1],"jobs":[1]}"#,
    )
    .expect("plant");

    // Second run: it says bye for the first run's registration once the shards are committed,
    // and the tracker hands those jobs out again.
    let config = daemon_config(&tracker.base_url, &output, &["--shard-size", "4"]);
    run_until_completed(&tracker, config, &blobs).await;
    assert!(
        !tokens.exists(),
        "both registrations said bye: no token is left in the output folder"
    );

    let summary = check_dataset(&output);
    let ids: BTreeSet<u64> = summary.sample_ids.iter().copied().collect();
    assert_eq!(
        summary.sample_ids.len(),
        ids.len(),
        "no pair twice: {summary:?}"
    );
    assert_eq!(ids, expected, "no pair lost");
    assert_eq!(summary.unique_keys, summary.rows);
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    assert_eq!(summary.tfrecord_shards, 0, "TFRecord is opt-in");
    assert!(
        !output.join("00090.pending").is_file(),
        "the half shard's marker is gone"
    );
    tracker.stop().await;
}
