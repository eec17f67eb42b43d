//! The 2021 calls against the real tracker: `newJob` → `updateProgress` → `markAsDone` for a
//! CPU then a GPU client, and the full-WAT flow of `/custom/*`.

use std::collections::BTreeMap;

use cah_protocol::legacy::{DataResponse, JobResponse, ShardInfo};
use cah_protocol::{ClientType, IdString};
use cah_tracker_client::{Completion, JobOutput, TrackerError};

use super::support::{Backend, RealTracker, wat_url};

on_both_databases!(cpu_then_gpu_through_legacy_calls, full_wat_flow);

async fn cpu_then_gpu_through_legacy_calls(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    tracker.import(2).await;
    let client = tracker.client();
    let cpu = tracker.register("alice", ClientType::Cpu).await;
    let gpu = tracker.register("bob", ClientType::Gpu).await;
    let upload_address = tracker.url("/api/ext/uploadUrl");
    assert_eq!(cpu.registered_upload_address(), upload_address);
    assert_eq!(
        cpu.upload_address().await.expect("upload address"),
        upload_address
    );
    assert_ne!(cpu.display_name(), gpu.display_name());

    assert_eq!(client.job_count(ClientType::Cpu).await.expect("count"), 4);
    assert_eq!(
        client.job_count(ClientType::Hybrid).await.expect("count"),
        4
    );
    assert_eq!(client.job_count(ClientType::Gpu).await.expect("count"), 0);
    let no_gpu_work = gpu.new_job().await;
    assert!(
        matches!(no_gpu_work, Err(TrackerError::NoJobs)),
        "{no_gpu_work:?}"
    );
    assert!(cpu.validate().await.expect("validate"));

    let job = cpu.new_job().await.expect("cpu job");
    assert_eq!(
        job,
        JobResponse {
            url: wat_url(0),
            start_id: IdString(0),
            end_id: IdString(500_000),
            shard: 0,
            number: 1,
        }
    );
    cpu.update_progress("Downloading images")
        .await
        .expect("progress");
    let handoff = "rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6".to_owned();
    let done = cpu.mark_as_done(JobOutput::Bundle(handoff.clone())).await;
    assert_eq!(done.expect("handoff"), Completion::Accepted);
    let again = cpu.mark_as_done(JobOutput::Bundle(handoff.clone())).await;
    assert!(
        matches!(&again, Err(TrackerError::Conflict(detail)) if detail == "you do not hold a job (it may have timed out)"),
        "{again:?}"
    );
    assert_eq!(client.job_count(ClientType::Cpu).await.expect("count"), 3);
    assert_eq!(client.job_count(ClientType::Gpu).await.expect("count"), 1);

    let gpu_job = gpu.new_job().await.expect("gpu job");
    assert_eq!(
        gpu_job,
        JobResponse {
            url: handoff.clone(),
            start_id: IdString(0),
            end_id: IdString(500_000),
            shard: 0,
            number: 1,
        },
        "a legacy handoff string reaches the GPU client unchanged"
    );
    gpu.update_progress("Scoring").await.expect("progress");
    let closed = gpu.mark_as_done(JobOutput::Pairs(7)).await;
    assert_eq!(closed.expect("close"), Completion::Accepted);
    let again = gpu.mark_as_done(JobOutput::Pairs(7)).await;
    assert!(matches!(again, Err(TrackerError::Conflict(_))), "{again:?}");
    let completed = client
        .is_completed(&[handoff.clone(), "rsync never-seen".to_owned()])
        .await
        .expect("is completed");
    assert_eq!(completed, [handoff.as_str(), "rsync never-seen"]);

    // An unusable bundle sends the job back to be scraped again.
    let second = cpu.new_job().await.expect("second cpu job");
    assert_eq!((second.number, second.shard), (2, 1));
    let broken = "rsync 11111111111111111111111111111111".to_owned();
    cpu.mark_as_done(JobOutput::Bundle(broken.clone()))
        .await
        .expect("second handoff");
    assert_eq!(gpu.new_job().await.expect("gpu job").url, broken);
    gpu.gpu_invalid_download().await.expect("invalid download");
    assert_eq!(client.job_count(ClientType::Gpu).await.expect("count"), 0);
    assert_eq!(client.job_count(ClientType::Cpu).await.expect("count"), 3);

    assert_eq!(
        client.data().await.expect("data"),
        DataResponse {
            completion_str: "1 / 4".to_owned(),
            completion_float: 25.0,
            total_connected_workers: 2,
            total_pairs_scraped: 7,
            eta: "3 hours, 0 minutes".to_owned(),
            failed_jobs: Some(0),
        }
    );

    cpu.bye().await.expect("bye");
    assert!(!cpu.validate().await.expect("validate"));
    cpu.bye().await.expect("a second bye is harmless");
    let gone = cpu.update_progress("still here?").await;
    assert!(matches!(gone, Err(TrackerError::TimedOut)), "{gone:?}");
    assert!(gpu.validate().await.expect("validate"));
    tracker.stop().await;
}

async fn full_wat_flow(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    tracker.import(2).await;
    let client = tracker.client();
    let full_wat = tracker.register("fullwat", ClientType::Cpu).await;
    let other = tracker.register("classic", ClientType::Cpu).await;
    let hybrid = tracker.register("mixed", ClientType::Hybrid).await;

    let wat = client.get_cpu_wat().await.expect("open wat");
    assert_eq!(wat, wat_url(0));
    let refused = hybrid.lookup_wat(&wat).await;
    assert!(
        matches!(&refused, Err(TrackerError::Conflict(detail)) if detail == "full-WAT jobs are for CPU clients"),
        "{refused:?}"
    );
    let shards = full_wat.lookup_wat(&wat).await.expect("lookup");
    let half = |shard: u8| ShardInfo {
        url: wat.clone(),
        start_id: IdString(u64::from(shard) * 500_000),
        end_id: IdString(u64::from(shard + 1) * 500_000),
        shard,
    };
    assert_eq!(shards, [(1, half(0)), (2, half(1))]);

    // The reservation holds: nobody else gets these halves.
    let taken: Vec<u64> = other
        .claim(10, false)
        .await
        .expect("claim")
        .iter()
        .map(|job| job.number)
        .collect();
    assert_eq!(taken, [3, 4]);
    let second_lookup = other.lookup_wat(&wat).await;
    assert!(
        matches!(&second_lookup, Err(TrackerError::Conflict(detail)) if detail == "Could not find WAT/WARC."),
        "{second_lookup:?}"
    );
    let none_open = client.get_cpu_wat().await;
    assert!(
        matches!(none_open, Err(TrackerError::NoJobs)),
        "{none_open:?}"
    );

    let handoffs: BTreeMap<u64, String> = [1, 2]
        .into_iter()
        .map(|number| (number, format!("rsync {number:032x}")))
        .collect();
    assert_eq!(full_wat.mark_as_done_cpu(&handoffs).await.expect("done"), 2);
    assert_eq!(client.job_count(ClientType::Gpu).await.expect("count"), 2);
    assert_eq!(
        full_wat.mark_as_done_cpu(&handoffs).await.expect("repeat"),
        0,
        "a repeat completes nothing twice"
    );
    let gpu = tracker.register("scorer", ClientType::Gpu).await;
    let gpu_urls: Vec<String> = gpu
        .claim(10, false)
        .await
        .expect("gpu claim")
        .into_iter()
        .map(|job| job.bundle.expect("gpu jobs carry a bundle").url)
        .collect();
    assert_eq!(gpu_urls, [handoffs[&1].clone(), handoffs[&2].clone()]);
    tracker.stop().await;
}
