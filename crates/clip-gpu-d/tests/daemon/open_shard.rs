//! Jobs waiting in a short open shard must not stall claiming until `--flush-interval`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use cah_protocol::ClientType;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, daemon_config, good_bundle, hand_in, with_metadata,
};

/// With `--max-jobs 2` and 10 pairs a job, every permit soon belongs to a job waiting in a
/// shard of 20 rows out of 100; the hour-long flush interval must not be what frees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_waiting_in_a_short_open_shard_do_not_stall_claiming() {
    const N_JOBS: usize = 20;
    const PER_JOB: usize = 10;
    let tracker = RealTracker::start(&[]).await;
    tracker.import(N_JOBS / 2).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(N_JOBS as u32, false).await.expect("claim");
    assert_eq!(jobs.len(), N_JOBS);
    let photos = parity_support::photos();
    let mut blobs = Vec::new();
    let mut expected = BTreeSet::new();
    for (index, job) in jobs.iter().enumerate() {
        // Photos repeat across jobs; each job's URLs are its own, so no pair is a duplicate.
        let chosen: Vec<PathBuf> = (0..PER_JOB)
            .map(|offset| photos[(index * PER_JOB + offset) % photos.len()].clone())
            .collect();
        let number = job.number;
        let (entries, samples) = good_bundle(job, &chosen, move |i| {
            format!("http://img.test/{number}/{i}.jpg")
        });
        expected.extend(samples.iter().map(|sample| sample.sample_id));
        blobs.push(hand_in(&cpu, number, with_metadata(entries, &samples, number)).await);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &[
            "--max-jobs",
            "2",
            "--shard-size",
            "100",
            "--flush-interval",
            "1h",
        ],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = clip_gpu_d::daemon::run(config, async move {
        let _ = stopped.await;
    });
    let client = tracker.client();
    let driver = async {
        // Minutes on a busy CPU at most; the flush interval would free the permits in an hour.
        let all_completed = async {
            loop {
                let done = client.is_completed(&blobs).await.expect("is completed");
                if done.len() == blobs.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(240), all_completed)
            .await
            .expect("every job completes well before the flush interval");
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");

    let summary = check_dataset(&output);
    let ids: BTreeSet<u64> = summary.sample_ids.iter().copied().collect();
    assert_eq!(summary.rows, N_JOBS * PER_JOB, "{summary:?}");
    assert_eq!(summary.sample_ids.len(), ids.len(), "no pair twice");
    assert_eq!(ids, expected, "no pair lost");
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    tracker.stop().await;
}
