//! A job whose sample ID range is empty or inverted is the tracker's fault, not the scraper's:
//! it is released with a warning, never reported invalid.

use cah_protocol::ClientType;

use crate::parity_support;
use crate::support::{RealTracker, daemon_config, hand_in_photos, run_until_released_none_invalid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_an_inverted_range_is_released_not_reported_invalid() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    hand_in_photos(&cpu, &jobs, &parity_support::photos(), 2, "").await;
    // The tracker's row goes wrong after the bundle was made.
    tracker
        .execute(&format!(
            "UPDATE jobs SET end_id = start_id WHERE number = {}",
            jobs[0].number
        ))
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    run_until_released_none_invalid(config, 1.0).await;
    tracker.stop().await;
}
