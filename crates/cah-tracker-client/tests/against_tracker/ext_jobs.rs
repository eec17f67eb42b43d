//! Leased jobs through `/api/ext/`: whole-WAT claims, heartbeats, bundle uploads and GPU
//! downloads, and the conflict a worker gets once its lease was lost to another worker.

use cah_protocol::ClientType;
use cah_protocol::ext::{BundleLocation, Job, StoredBlob};
use cah_protocol::legacy::DataResponse;
use cah_tracker_client::{BundleBody, Completion, JobOutput, TrackerError};
use sha2::{Digest, Sha256};

use super::support::{Backend, RealTracker, eventually, now_ms, wat_url};

on_both_databases!(cpu_then_gpu_through_leases, lost_lease_conflicts);

/// The tracker's default lease (`--lease 30m`).
const LEASE_MS: i64 = 30 * 60 * 1000;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

async fn cpu_then_gpu_through_leases(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    tracker.import(1).await;
    let client = tracker.client();
    let cpu = tracker.register("carol", ClientType::Cpu).await;
    let gpu = tracker.register("dave", ClientType::Gpu).await;
    let idle = tracker.register("erin", ClientType::Cpu).await;
    assert_eq!(
        gpu.claim(4, false).await.expect("claim"),
        [],
        "no GPU work yet"
    );

    let before = now_ms();
    let jobs = cpu.claim(1, true).await.expect("whole-WAT claim");
    let after = now_ms();
    assert_eq!(
        jobs.len(),
        2,
        "whole_wat takes both halves whatever max_jobs says"
    );
    let lease_until_ms = jobs[0].lease_until_ms;
    assert!(
        (before + LEASE_MS..=after + LEASE_MS).contains(&lease_until_ms),
        "lease until {lease_until_ms}, claimed between {before} and {after}"
    );
    let half = |number: u64, shard: u8| Job {
        number,
        wat_url: wat_url(0),
        shard,
        start_id: u64::from(shard) * 500_000,
        end_id: u64::from(shard + 1) * 500_000,
        lease_until_ms,
        bundle: None,
        scraped_before: false,
    };
    assert_eq!(jobs, [half(1, 0), half(2, 1)]);

    // The queue is empty now, and every way of asking says so.
    assert_eq!(idle.claim(1, false).await.expect("claim"), []);
    let no_job = idle.new_job().await;
    assert!(matches!(no_job, Err(TrackerError::NoJobs)), "{no_job:?}");
    let no_wat = client.get_cpu_wat().await;
    assert!(matches!(no_wat, Err(TrackerError::NoJobs)), "{no_wat:?}");
    assert_eq!(client.job_count(ClientType::Cpu).await.expect("count"), 0);

    let heartbeat = cpu.heartbeat("scraping").await.expect("heartbeat");
    assert_eq!(heartbeat.jobs, [1, 2]);
    assert!(heartbeat.lease_until_ms >= lease_until_ms);

    let bundle: Vec<u8> = (0..300_000_u32).map(|i| (i * 7 % 251) as u8).collect();
    let folder = tempfile::tempdir().expect("tempdir");
    let path = folder.path().join("job-1.tar");
    std::fs::write(&path, &bundle).expect("write bundle");
    let target = cpu.upload_url(1).await.expect("upload url");
    assert!(target.key.starts_with("job-1-"), "{}", target.key);
    assert!(
        target
            .put_url
            .starts_with(&tracker.url(&format!("/blobs/{}?", target.key))),
        "{}",
        target.put_url
    );
    assert_eq!(target.max_bytes, 4 << 30);
    let mut forged = target.clone();
    forged.put_url = forged.put_url.replace("signature=", "signature=0");
    let refused = cpu
        .upload_bundle(&forged, BundleBody::Bytes(bundle.clone().into()))
        .await;
    assert!(
        matches!(refused, Err(TrackerError::Forbidden(_))),
        "a bad signature: {refused:?}"
    );
    let stored = cpu
        .upload_bundle(&target, BundleBody::File(path))
        .await
        .expect("upload");
    assert_eq!(
        stored,
        StoredBlob {
            key: target.key.clone(),
            size: 300_000,
            sha256: sha256_hex(&bundle),
        }
    );
    let blob = format!("blob:{}", target.key);
    let misplaced = cpu.complete(2, JobOutput::Bundle(blob.clone())).await;
    assert!(
        matches!(&misplaced, Err(TrackerError::Invalid(detail)) if *detail == format!("{blob} is not a bundle of job 2")),
        "{misplaced:?}"
    );
    let done = cpu.complete(1, JobOutput::Bundle(blob.clone())).await;
    assert_eq!(done.expect("complete job 1"), Completion::Accepted);
    let handoff = "rsync 2222222222222222222222222222222a".to_owned();
    let done = cpu.complete(2, JobOutput::Bundle(handoff.clone())).await;
    assert_eq!(done.expect("complete job 2"), Completion::Accepted);
    assert_eq!(
        cpu.heartbeat("idle").await.expect("heartbeat").jobs,
        Vec::<u64>::new()
    );
    let pending = client
        .is_completed(&[blob.clone(), handoff.clone(), "rsync never-seen".to_owned()])
        .await
        .expect("is completed");
    assert_eq!(
        pending,
        ["rsync never-seen"],
        "handed-off jobs are not closed yet"
    );

    let gpu_jobs = gpu.claim(10, false).await.expect("gpu claim");
    assert_eq!(
        gpu_jobs.iter().map(|job| job.number).collect::<Vec<_>>(),
        [1, 2]
    );
    let location = gpu_jobs[0].bundle.clone().expect("bundle of job 1");
    assert_eq!(location.sha256.as_deref(), Some(stored.sha256.as_str()));
    assert_eq!(location.size, Some(300_000));
    let response = reqwest::get(&location.url).await.expect("download bundle");
    assert_eq!(response.status(), 200, "{}", location.url);
    let downloaded = response.bytes().await.expect("bundle bytes");
    assert!(downloaded[..] == bundle[..], "downloaded bytes differ");
    assert_eq!(
        gpu_jobs[1].bundle,
        Some(BundleLocation {
            url: handoff.clone(),
            sha256: None,
            size: None,
        }),
        "a legacy handoff has no digest"
    );

    let closed = gpu.complete(1, JobOutput::Pairs(0)).await;
    assert_eq!(closed.expect("close job 1"), Completion::Accepted);
    let closed = gpu.complete(2, JobOutput::Pairs(9)).await;
    assert_eq!(closed.expect("close job 2"), Completion::Accepted);
    let again = gpu.complete(1, JobOutput::Pairs(0)).await;
    assert!(
        matches!(&again, Err(TrackerError::Conflict(detail)) if detail == "job 1 is not held by you: its lease expired or it was already completed"),
        "{again:?}"
    );
    let completed = client
        .is_completed(&[blob.clone(), handoff.clone()])
        .await
        .expect("is completed");
    assert_eq!(completed, [blob, handoff]);
    assert_eq!(gpu.claim(10, false).await.expect("claim"), []);
    assert_eq!(
        client.data().await.expect("data"),
        DataResponse {
            completion_str: "2 / 2".to_owned(),
            completion_float: 100.0,
            total_connected_workers: 3,
            total_pairs_scraped: 9,
            eta: "Finished".to_owned(),
            failed_jobs: Some(0),
        }
    );
    tracker.stop().await;
}

async fn lost_lease_conflicts(backend: Backend) {
    let tracker =
        RealTracker::start(backend, &["--lease", "300ms", "--reap-interval", "50ms"]).await;
    tracker.import(1).await;
    let slow = tracker.register("slow", ClientType::Hybrid).await;
    let fast = tracker.register("fast", ClientType::Hybrid).await;
    let held = slow.claim(2, false).await.expect("claim");
    assert_eq!(
        held.iter().map(|job| job.number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(fast.claim(2, false).await.expect("claim"), [], "all held");

    // The slow worker goes silent; the reaper hands its jobs to the next claim.
    let taken = eventually("lease expiry", || async {
        let jobs = fast.claim(2, false).await.expect("claim");
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(
        taken.iter().map(|job| job.number).collect::<Vec<_>>(),
        [1, 2]
    );
    let lost = slow.complete(1, JobOutput::Pairs(3)).await;
    assert!(
        matches!(&lost, Err(TrackerError::Conflict(detail)) if detail == "job 1 is not held by you: its lease expired or it was already completed"),
        "{lost:?}"
    );
    let done = fast.complete(1, JobOutput::Pairs(3)).await;
    assert_eq!(
        done.expect("the new holder completes"),
        Completion::Accepted
    );
    fast.release(2).await.expect("release");
    let heartbeat = slow.heartbeat("still here").await.expect("heartbeat");
    assert_eq!(
        heartbeat.jobs,
        Vec::<u64>::new(),
        "the slow worker learns it holds nothing"
    );
    let no_upload = slow.upload_url(2).await;
    assert!(
        matches!(&no_upload, Err(TrackerError::Conflict(detail)) if detail == "you do not hold job 2"),
        "{no_upload:?}"
    );
    let not_held = slow.release(2).await;
    assert!(
        matches!(&not_held, Err(TrackerError::Conflict(detail)) if detail == "you do not hold job 2"),
        "{not_held:?}"
    );
    tracker.stop().await;
}
