//! What the tracker refuses, as the client's typed errors: unknown tokens (and registering
//! again), registration floods and bundles for a full store.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;
use cah_tracker_client::{BundleBody, JobOutput, RetryPolicy, Session, TrackerError};

use super::support::{Backend, RealTracker, wat_url};

on_both_databases!(
    unknown_token_times_out_until_registered_again,
    registration_flood_is_rate_limited,
    a_full_bundle_store_is_storage_full
);

/// Asserts that `call` failed with [`TrackerError::TimedOut`].
fn assert_timed_out<T: std::fmt::Debug>(call: &str, result: Result<T, TrackerError>) {
    assert!(
        matches!(result, Err(TrackerError::TimedOut)),
        "{call}: {result:?}"
    );
}

async fn unknown_token_times_out_until_registered_again(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    tracker.import(1).await;
    let mut ghost = Session::resume(
        tracker.client(),
        "ghost".to_owned(),
        ClientType::Cpu,
        "no-such-token".to_owned(),
        "nobody".to_owned(),
    );
    assert_timed_out("heartbeat", ghost.heartbeat("hello").await);
    assert_timed_out("claim", ghost.claim(1, false).await);
    assert_timed_out("complete", ghost.complete(1, JobOutput::Pairs(1)).await);
    assert_timed_out("release", ghost.release(1).await);
    assert_timed_out("invalid", ghost.report_invalid(1, "broken").await);
    assert_timed_out("uploadUrl", ghost.upload_url(1).await);
    assert_timed_out("dedup", ghost.dedup(DedupSet::Main, &[1], true).await);
    assert_timed_out("newJob", ghost.new_job().await);
    assert_timed_out("updateProgress", ghost.update_progress("x").await);
    assert_timed_out("markAsDone", ghost.mark_as_done(JobOutput::Pairs(1)).await);
    assert_timed_out("gpuInvalidDownload", ghost.gpu_invalid_download().await);
    assert_timed_out("lookup-wat", ghost.lookup_wat(&wat_url(0)).await);
    let handoffs = BTreeMap::from([(1, "rsync x".to_owned())]);
    assert_timed_out("markasdone-cpu", ghost.mark_as_done_cpu(&handoffs).await);
    assert!(!ghost.validate().await.expect("validate answers False"));
    ghost
        .bye()
        .await
        .expect("bye of a forgotten token counts as done");

    ghost.reregister().await.expect("register again");
    assert_ne!(ghost.token(), "no-such-token");
    assert_ne!(ghost.display_name(), "nobody");
    assert_eq!(ghost.nickname(), "ghost");
    assert_eq!(ghost.client_type(), ClientType::Cpu);
    assert_eq!(
        ghost.registered_upload_address(),
        tracker.url("/api/ext/uploadUrl")
    );
    assert!(ghost.validate().await.expect("validate"));
    let jobs = ghost.claim(1, false).await.expect("claim");
    assert_eq!(jobs.iter().map(|job| job.number).collect::<Vec<_>>(), [1]);
    assert_eq!(ghost.heartbeat("back").await.expect("heartbeat").jobs, [1]);
    tracker.stop().await;
}

async fn registration_flood_is_rate_limited(backend: Backend) {
    let tracker = RealTracker::start(
        backend,
        &["--register-per-minute", "1", "--register-burst", "2"],
    )
    .await;
    tracker.import(1).await;
    let client = tracker.client();
    let first = client
        .register("flood", ClientType::Cpu)
        .await
        .expect("first");
    client
        .register("flood", ClientType::Cpu)
        .await
        .expect("second");
    let refused = client.register("flood", ClientType::Cpu).await;
    let Err(error) = refused else {
        panic!("a third registration within the burst of 2 was accepted: {refused:?}");
    };
    // One token a minute: the next is due a minute after the first registration, less the
    // moments that passed since. The tracker rounds that down to whole seconds (59) today; a
    // tracker that rounds up, so a client waiting exactly that long is let in, says 60.
    let Some(retry_after) = error.retry_after() else {
        panic!("no Retry-After: {error:?}");
    };
    assert!(
        matches!(error, TrackerError::RateLimited { .. }),
        "{error:?}"
    );
    assert!(
        (Duration::from_secs(55)..=Duration::from_secs(60)).contains(&retry_after),
        "{retry_after:?}"
    );
    assert!(error.is_retryable());
    assert!(!error.may_have_applied());

    // A retry budget shorter than the server's Retry-After gives up at once instead of waiting.
    let patient = tracker.client_with(RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(5),
    });
    let started = Instant::now();
    let refused = patient.register("flood", ClientType::Cpu).await;
    assert!(
        matches!(refused, Err(TrackerError::RateLimited { .. })),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Only registration is limited: a registered client keeps working.
    assert_eq!(first.claim(1, false).await.expect("claim").len(), 1);
    tracker.stop().await;
}

// Says on stderr when it cannot mount the full disk it needs.
#[allow(clippy::print_stderr)]
async fn a_full_bundle_store_is_storage_full(backend: Backend) {
    let Some(tracker) = RealTracker::start_on_small_disk(backend, 256 * 1024).await else {
        // The scripted tests of `tracker_client::upload` cover the mapping of a 507 without one.
        eprintln!("cannot mount a tmpfs here (not root?): no full disk to upload to");
        return;
    };
    tracker.import(1).await;
    let cpu = tracker.register("scraper", ClientType::Cpu).await;
    let number = cpu.claim(1, false).await.expect("claim")[0].number;
    let target = cpu.upload_url(number).await.expect("upload url");
    let too_big = BundleBody::Bytes(vec![7_u8; 2 * 1024 * 1024].into());
    let error = cpu
        .upload_bundle(&target, too_big)
        .await
        .expect_err("the store is full");
    assert!(
        matches!(error, TrackerError::StorageFull { retry_after: Some(wait) } if wait == Duration::from_secs(300)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(!error.may_have_applied());
    // The failed upload left nothing behind: a bundle that fits is stored with the same URL.
    let fits = BundleBody::Bytes(vec![8_u8; 100 * 1024].into());
    let stored = cpu.upload_bundle(&target, fits).await.expect("stored");
    assert_eq!(stored.size, 100 * 1024);
    tracker.stop().await;
}
