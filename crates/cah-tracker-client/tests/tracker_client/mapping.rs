//! Status mapping: each status of the protocol becomes the typed error the callers match on.

use cah_protocol::ClientType;
use cah_tracker_client::{ClientConfig, Completion, JobOutput, TrackerClient, TrackerError};
use serde_json::json;

use super::scripted::{ScriptedTracker, Step, quick_retries};

#[tokio::test]
async fn an_unknown_token_is_timed_out_and_not_retried() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script("/api/ext/heartbeat", [Step::status(404, "unknown token")]);
    let error = session
        .heartbeat("working")
        .await
        .expect_err("token is gone");
    assert!(matches!(error, TrackerError::TimedOut), "{error:?}");
    assert_eq!(tracker.received_at("/api/ext/heartbeat").len(), 1);
}

#[tokio::test]
async fn reregister_takes_a_new_token_with_the_same_nickname() {
    let tracker = ScriptedTracker::start().await;
    let mut session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/new",
        [Step::json(json!({
            "token": "tok2",
            "display_name": "brave-heron-7",
            "upload_address": "",
        }))],
    );
    tracker.script(
        "/api/ext/heartbeat",
        [Step::json(json!({"jobs": [], "lease_until_ms": 1}))],
    );
    session.reregister().await.expect("registers again");
    assert_eq!(session.token(), "tok2");
    assert_eq!(session.display_name(), "brave-heron-7");
    session.heartbeat("restarted").await.expect("heartbeat");
    let registrations = tracker.received_at("/api/new");
    assert_eq!(registrations.len(), 2);
    assert_eq!(
        registrations[1].query.as_deref(),
        Some("nickname=alice&type=CPU")
    );
    assert_eq!(
        tracker.received_at("/api/ext/heartbeat")[0].json()["token"],
        "tok2"
    );
}

#[tokio::test]
async fn a_conflict_on_a_first_completion_is_an_error() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script("/api/ext/complete", [Step::status(409, "lease lost")]);
    let error = session
        .complete(3, JobOutput::Pairs(10))
        .await
        .expect_err("not held");
    assert!(
        matches!(&error, TrackerError::Conflict(detail) if detail == "lease lost"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_conflict_after_a_lost_completion_is_accepted_or_lost() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/complete",
        [
            Step::status(500, "commit failed"),
            Step::status(409, "already completed"),
        ],
    );
    let completion = session
        .complete(3, JobOutput::Bundle("blob:abc".to_owned()))
        .await
        .expect("a conflict after an uncertain attempt is not an error");
    assert_eq!(
        completion,
        Completion::AcceptedOrLost {
            detail: "already completed".to_owned()
        }
    );
    assert!(!completion.is_certain());
    assert_eq!(tracker.received_at("/api/ext/complete").len(), 2);
}

#[tokio::test]
async fn a_conflict_after_a_rate_limit_is_still_an_error() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/complete",
        [
            Step::status(429, "").retry_after("0"),
            Step::status(409, "lease lost"),
        ],
    );
    let error = session
        .complete(3, JobOutput::Pairs(0))
        .await
        .expect_err("429 applied nothing");
    assert_eq!(error.kind(), "conflict");
}

#[tokio::test]
async fn a_completion_retried_to_success_is_accepted() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/complete",
        [Step::status(503, ""), Step::text("success")],
    );
    let completion = session
        .complete(3, JobOutput::Pairs(5))
        .await
        .expect("completes");
    assert_eq!(completion, Completion::Accepted);
}

#[tokio::test]
async fn legacy_403_is_no_jobs_for_new_job_and_conflict_for_mark_as_done() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script("/api/newJob", [Step::status(403, "no jobs available")]);
    tracker.script("/api/markAsDone", [Step::status(403, "you have no job")]);
    let error = session.new_job().await.expect_err("no jobs");
    assert!(matches!(error, TrackerError::NoJobs), "{error:?}");
    let error = session
        .mark_as_done(JobOutput::Pairs(3))
        .await
        .expect_err("no job held");
    assert!(
        matches!(&error, TrackerError::Conflict(detail) if detail == "you have no job"),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/api/newJob").len(), 1);
}

#[tokio::test]
async fn a_legacy_completion_retried_into_403_is_accepted_or_lost() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/markAsDone",
        [
            Step::status(502, ""),
            Step::status(403, "job already closed"),
        ],
    );
    let completion = session
        .mark_as_done(JobOutput::Pairs(3))
        .await
        .expect("ambiguous, not an error");
    assert!(
        matches!(completion, Completion::AcceptedOrLost { .. }),
        "{completion:?}"
    );
}

#[tokio::test]
async fn a_bad_request_is_invalid_with_the_detail() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/complete",
        [Step::status(400, "count or bundle is required")],
    );
    let error = session
        .complete(3, JobOutput::Pairs(1))
        .await
        .expect_err("invalid");
    assert!(
        matches!(&error, TrackerError::Invalid(detail) if detail == "count or bundle is required"),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/api/ext/complete").len(), 1);
}

#[tokio::test]
async fn release_is_done_when_a_retry_finds_the_job_gone() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/release",
        [Step::status(500, ""), Step::status(409, "not held")],
    );
    session
        .release(9)
        .await
        .expect("the job is not held any more");
    tracker.script("/api/ext/release", [Step::status(409, "not held")]);
    let error = session
        .release(9)
        .await
        .expect_err("a first-attempt conflict is reported");
    assert_eq!(error.kind(), "conflict");
}

#[tokio::test]
async fn bye_of_a_forgotten_token_succeeds() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script("/api/bye", [Step::status(404, "unknown token")]);
    session.bye().await.expect("the token is already forgotten");
}

#[tokio::test]
async fn a_404_without_a_token_is_rejected_not_timed_out() {
    let tracker = ScriptedTracker::start().await;
    tracker.script("/api/ext/info", [Step::status(404, "not found")]);
    let error = tracker
        .client(quick_retries(5))
        .info()
        .await
        .expect_err("an old server");
    assert!(
        matches!(error, TrackerError::Rejected { status: 404, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_413_is_too_large_and_a_429_without_retry_after_still_retries() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/api/ext/dedup",
        [
            Step::status(429, "slow down"),
            Step::status(413, "too many hashes"),
        ],
    );
    let error = session
        .dedup(cah_protocol::ext::DedupSet::Main, &[1], false)
        .await
        .expect_err("too large");
    assert!(
        matches!(&error, TrackerError::TooLarge(detail) if detail == "too many hashes"),
        "{error:?}"
    );
}

#[tokio::test]
async fn malformed_answers_are_decode_errors() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script("/api/ext/claim", [Step::json(json!({"work": []}))]);
    tracker.script(
        "/api/validateWorker",
        [
            Step::text("True"),
            Step::text("\"False\""),
            Step::text("maybe"),
        ],
    );
    tracker.script("/api/jobCount", [Step::text("many")]);
    tracker.script("/api/ext/dedup", [Step::json(json!({"new": [true]}))]);
    let error = session.claim(1, false).await.expect_err("no jobs field");
    assert!(
        matches!(error, TrackerError::Decode { call: "claim", .. }),
        "{error:?}"
    );
    assert!(session.validate().await.expect("True"));
    assert!(!session.validate().await.expect("quoted False"));
    let error = session.validate().await.expect_err("neither");
    assert_eq!(error.kind(), "decode");
    let error = session
        .client()
        .job_count(ClientType::Cpu)
        .await
        .expect_err("not a number");
    assert_eq!(error.kind(), "decode");
    let error = session
        .dedup(cah_protocol::ext::DedupSet::Main, &[1, 2], false)
        .await
        .expect_err("one flag for two hashes");
    assert_eq!(error.kind(), "decode");
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let tracker = ScriptedTracker::start().await;
    tracker.script("/api/getUploadAddress", [Step::text(&"x".repeat(100))]);
    let mut config = ClientConfig::new(tracker.url.clone());
    config.max_response_bytes = 16;
    let client = TrackerClient::new(config).expect("client builds");
    let error = client
        .upload_address(ClientType::Cpu)
        .await
        .expect_err("too long");
    assert_eq!(error.kind(), "decode");
}

#[test]
fn a_base_url_that_is_not_http_is_refused() {
    let url = url::Url::parse("ftp://127.0.0.1/").expect("valid url");
    let error = TrackerClient::with_defaults(url).expect_err("not http");
    assert_eq!(error.kind(), "config");
}
