//! Bundle uploads: a file is streamed as `application/octet-stream`, retried from its start.

use std::io::Write;

use bytes::Bytes;
use cah_protocol::ext::UploadUrlResponse;
use cah_tracker_client::{BundleBody, RetryPolicy, TrackerError};
use serde_json::json;
use tokio::time::{Duration, Instant};

use super::scripted::{ScriptedTracker, Step, quick_retries};

fn target(tracker: &ScriptedTracker, max_bytes: u64) -> UploadUrlResponse {
    UploadUrlResponse {
        put_url: format!("{}blobs/k1?expires=9&sig=abc", tracker.url),
        key: "k1".to_owned(),
        expires_at_ms: 9,
        max_bytes,
    }
}

fn stored(size: usize) -> Step {
    Step::json(json!({"key": "k1", "size": size, "sha256": "00"}))
}

/// A temporary bundle file of `size` pseudo-random bytes.
fn bundle_file(size: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let bytes: Vec<u8> = (0..size).map(|index| (index * 7 % 251) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&bytes).expect("write bundle");
    file.flush().expect("flush bundle");
    (file, bytes)
}

#[tokio::test]
async fn a_file_is_streamed_as_octet_stream_with_its_length() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    let (file, bytes) = bundle_file(1_500_000);
    tracker.script("/blobs/k1", [stored(bytes.len())]);
    let blob = session
        .upload_bundle(
            &target(&tracker, 2_000_000),
            BundleBody::File(file.path().to_owned()),
        )
        .await
        .expect("uploads");
    assert_eq!((blob.key.as_str(), blob.size), ("k1", 1_500_000));
    let put = &tracker.received_at("/blobs/k1")[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.query.as_deref(), Some("expires=9&sig=abc"));
    assert_eq!(put.headers["content-type"], "application/octet-stream");
    assert_eq!(put.headers["content-length"], "1500000");
    assert_eq!(put.body.as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn a_failed_upload_is_retried_from_the_start_of_the_file() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(3)).await;
    let (file, bytes) = bundle_file(300_000);
    tracker.script(
        "/blobs/k1",
        [Step::status(503, "disk busy"), stored(bytes.len())],
    );
    session
        .upload_bundle(
            &target(&tracker, 0),
            BundleBody::File(file.path().to_owned()),
        )
        .await
        .expect("second attempt uploads");
    let puts = tracker.received_at("/blobs/k1");
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|put| put.body.as_ref() == bytes.as_slice()));
}

#[tokio::test]
async fn a_bundle_over_the_limit_is_refused_before_sending() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(3)).await;
    let body = BundleBody::Bytes(Bytes::from(vec![0_u8; 1001]));
    let error = session
        .upload_bundle(&target(&tracker, 1000), body)
        .await
        .expect_err("too large");
    assert!(matches!(error, TrackerError::TooLarge(_)), "{error:?}");
    assert!(tracker.received_at("/blobs/k1").is_empty());
}

#[tokio::test]
async fn store_refusals_map_to_too_large_and_forbidden() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(3)).await;
    tracker.script(
        "/blobs/k1",
        [
            Step::status(413, "bundle too large"),
            Step::status(403, "signature expired"),
        ],
    );
    let body = BundleBody::Bytes(Bytes::from_static(b"tar bytes"));
    let error = session
        .upload_bundle(&target(&tracker, 0), body.clone())
        .await
        .expect_err("413");
    assert!(matches!(error, TrackerError::TooLarge(_)), "{error:?}");
    let error = session
        .upload_bundle(&target(&tracker, 0), body)
        .await
        .expect_err("403");
    assert!(
        matches!(&error, TrackerError::Forbidden(detail) if detail == "signature expired"),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/blobs/k1").len(), 2);
}

#[tokio::test]
async fn a_full_store_comes_back_at_once_when_its_delay_is_beyond_the_budget() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(5)).await;
    tracker.script(
        "/blobs/k1",
        [Step::status(507, "bundle store is full").retry_after("300")],
    );
    let body = BundleBody::Bytes(Bytes::from_static(b"tar bytes"));
    let error = session
        .upload_bundle(&target(&tracker, 0), body)
        .await
        .expect_err("507");
    assert!(
        matches!(error, TrackerError::StorageFull { retry_after: Some(wait) } if wait == Duration::from_secs(300)),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/blobs/k1").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_store_is_uploaded_to_again_after_its_retry_after() {
    let tracker = ScriptedTracker::start().await;
    let patient = RetryPolicy {
        max_elapsed: Duration::from_secs(900),
        ..quick_retries(5)
    };
    let session = tracker.session(patient).await;
    let (file, bytes) = bundle_file(50_000);
    tracker.script(
        "/blobs/k1",
        [
            Step::status(507, "bundle store is full").retry_after("300"),
            stored(bytes.len()),
        ],
    );
    let started = Instant::now();
    session
        .upload_bundle(
            &target(&tracker, 0),
            BundleBody::File(file.path().to_owned()),
        )
        .await
        .expect("the second upload is stored");
    assert!(
        started.elapsed() >= Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
    let puts = tracker.received_at("/blobs/k1");
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|put| put.body.as_ref() == bytes.as_slice()));

    // Without a Retry-After, a 507 is not retried.
    tracker.script("/blobs/k1", [Step::status(507, "full")]);
    let body = BundleBody::Bytes(Bytes::from_static(b"tar bytes"));
    let error = session
        .upload_bundle(&target(&tracker, 0), body)
        .await
        .expect_err("507");
    assert!(
        matches!(error, TrackerError::StorageFull { retry_after: None }),
        "{error:?}"
    );
    assert_eq!(tracker.received_at("/blobs/k1").len(), 3);
}

#[tokio::test]
async fn a_short_store_is_a_decode_error_and_a_missing_file_an_io_error() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(quick_retries(3)).await;
    tracker.script("/blobs/k1", [stored(3)]);
    let body = BundleBody::Bytes(Bytes::from_static(b"tar bytes"));
    let error = session
        .upload_bundle(&target(&tracker, 0), body)
        .await
        .expect_err("short");
    assert_eq!(error.kind(), "decode");
    let missing = BundleBody::File("/nonexistent/bundle.tar".into());
    let error = session
        .upload_bundle(&target(&tracker, 0), missing)
        .await
        .expect_err("missing");
    assert!(matches!(error, TrackerError::Io { .. }), "{error:?}");
}

#[tokio::test]
async fn an_upload_url_is_requested_for_a_job() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    tracker.script(
        "/api/ext/uploadUrl",
        [Step::json(json!({
            "put_url": "/blobs/k1?sig=abc", "key": "k1", "expires_at_ms": 9, "max_bytes": 10,
        }))],
    );
    let target = session.upload_url(12).await.expect("upload url");
    assert_eq!(target.key, "k1");
    assert_eq!(
        tracker.received_at("/api/ext/uploadUrl")[0].json(),
        json!({"token": "tok", "number": 12})
    );
    tracker.script("/blobs/k1", [stored(2)]);
    let blob = session
        .upload_bundle(&target, BundleBody::Bytes(Bytes::from_static(b"ok")))
        .await
        .expect("a relative put url resolves against the base url");
    assert_eq!(blob.size, 2);
}
