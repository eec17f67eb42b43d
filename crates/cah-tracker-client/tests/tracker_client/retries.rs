//! Retries: transient failures are retried within the policy's bounds, others surface at once.

use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;
use cah_tracker_client::{RetryPolicy, TrackerError};
use serde_json::json;
use tokio::time::Instant;

use super::scripted::{ScriptedTracker, Step, client_for, quick_retries};

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/jobCount",
        [
            Step::status(500, "database unavailable"),
            Step::status(503, "database unavailable"),
            Step::text("7"),
        ],
    );
    let count = tracker
        .client(quick_retries(5))
        .job_count(ClientType::Gpu)
        .await;
    assert_eq!(count.expect("third attempt succeeds"), 7);
    assert_eq!(tracker.received_at("/api/jobCount").len(), 3);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_error_surfaces() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/jobCount",
        (0..5).map(|attempt| Step::status(500, &format!("failure {attempt}"))),
    );
    let error = tracker
        .client(quick_retries(3))
        .job_count(ClientType::Cpu)
        .await
        .expect_err("gives up");
    match error {
        TrackerError::Server { status, body, .. } => {
            assert_eq!(status, 500);
            assert_eq!(body, "failure 2");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert_eq!(tracker.received_at("/api/jobCount").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_waits_at_least_retry_after() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/ext/info",
        [
            Step::status(429, "slow down").retry_after("3"),
            Step::json(json!({
                "api_version": 1,
                "server": "tracker-d 0.1.0",
                "lease_seconds": 600,
                "max_bundle_bytes": 1_000_000,
            })),
        ],
    );
    let started = Instant::now();
    let info = tracker
        .client(quick_retries(3))
        .info()
        .await
        .expect("second attempt succeeds");
    assert_eq!(info.lease_seconds, 600);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(tracker.received_at("/api/ext/info").len(), 2);
}

#[tokio::test]
async fn a_rate_limit_beyond_the_budget_surfaces_with_its_retry_after() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/ext/info",
        [Step::status(429, "slow down").retry_after("3600")],
    );
    let error = tracker
        .client(quick_retries(5))
        .info()
        .await
        .expect_err("does not wait an hour");
    assert!(
        matches!(error, TrackerError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(3600)),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/api/ext/info").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hang_past_the_timeout_is_retried() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/jobCount",
        [
            Step::text("1").delay(Duration::from_secs(60)),
            Step::text("2"),
        ],
    );
    let started = Instant::now();
    let count = tracker
        .client(quick_retries(3))
        .job_count(ClientType::Cpu)
        .await;
    assert_eq!(count.expect("the retry is answered"), 2);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(60),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hang_without_retries_is_a_timeout() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/jobCount",
        [Step::text("1").delay(Duration::from_secs(60))],
    );
    let error = tracker
        .client(RetryPolicy::none())
        .job_count(ClientType::Cpu)
        .await
        .expect_err("times out");
    assert_eq!(error.kind(), "transport_timeout", "{error:?}");
    assert!(error.is_retryable());
    assert!(error.may_have_applied());
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_surfaces() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let url = url::Url::parse(&format!("http://{addr}/")).expect("valid url");
    let error = client_for(url, quick_retries(3))
        .data()
        .await
        .expect_err("nothing listens");
    assert_eq!(error.kind(), "transport_connect", "{error:?}");
    assert!(!error.may_have_applied());
}

#[tokio::test]
async fn dedup_with_add_is_not_repeated_after_a_server_error() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/dedup",
        [
            Step::status(500, "oops"),
            Step::json(json!({"new": [true]})),
        ],
    );
    let error = session
        .dedup(DedupSet::Parsed, &[42], true)
        .await
        .expect_err("a repeat could report the hash as seen");
    assert_eq!(error.kind(), "server");
    assert_eq!(tracker.received_at("/api/ext/dedup").len(), 1);
}

#[tokio::test]
async fn dedup_with_add_is_repeated_after_a_rate_limit() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/dedup",
        [
            Step::status(429, "slow down").retry_after("0"),
            Step::json(json!({"new": [true, false]})),
        ],
    );
    let new = session.dedup(DedupSet::Clipped, &[1, 2], true).await;
    assert_eq!(new.expect("a 429 was not applied"), [true, false]);
    assert_eq!(tracker.received_at("/api/ext/dedup").len(), 2);
}

#[tokio::test]
async fn dedup_without_add_is_repeated_after_a_server_error() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/dedup",
        [
            Step::status(502, "bad gateway"),
            Step::json(json!({"new": [false]})),
        ],
    );
    let new = session.dedup(DedupSet::Main, &[7], false).await;
    assert_eq!(new.expect("a check is safe to repeat"), [false]);
    assert_eq!(tracker.received_at("/api/ext/dedup").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_database_is_retried_after_its_retry_after() {
    let tracker = ScriptedTracker::start().await;
    tracker.script(
        "/api/jobCount",
        [
            Step::status(503, "database unavailable").retry_after("2"),
            Step::text("3"),
        ],
    );
    let started = Instant::now();
    let count = tracker
        .client(quick_retries(3))
        .job_count(ClientType::Cpu)
        .await;
    assert_eq!(count.expect("the retry is answered"), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
