//! The staging blob store: signatures, expiry, size cap, atomic visibility and garbage collection.

use super::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, TestTracker};

#[tokio::test]
async fn signed_urls_are_capabilities() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--max-bundle-bytes", "100000"]).await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("uploader", "CPU").await;
    let other = tracker.register("stranger", "CPU").await;
    let job = &tracker.claim(&cpu, 1, false).await[0];
    let number = job["number"].as_u64().unwrap();

    let (status, _) = tracker
        .post(
            "/api/ext/uploadUrl",
            &json!({"token": other, "number": number}),
        )
        .await;
    assert_eq!(status, 409, "only the holder gets an upload url");
    let issued: Value = tracker
        .post_ok(
            "/api/ext/uploadUrl",
            &json!({"token": cpu, "number": number}),
        )
        .await;
    let put_url = issued["put_url"].as_str().unwrap().to_owned();

    let tampered = put_url.replace("signature=", "signature=00");
    let response = tracker
        .http
        .put(&tampered)
        .body(vec![1_u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let other_key = put_url.replace(&format!("job-{number}-"), &format!("job-{}-", number + 1));
    let response = tracker
        .http
        .put(&other_key)
        .body(vec![1_u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "the signature covers the key");
    let as_get = tracker.http.get(&put_url).send().await.unwrap();
    assert_eq!(as_get.status(), 403, "the signature covers the method");

    let response = tracker
        .http
        .put(&put_url)
        .body(vec![7_u8; 100_001])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let staging = tracker.dir.path().join("staging");
    let key = issued["key"].as_str().unwrap();
    assert!(!staging.join(key).exists(), "no partial blob is visible");
    assert_eq!(
        std::fs::read_dir(staging.join("tmp")).unwrap().count(),
        0,
        "no part file left"
    );
    let (status, body) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": number, "bundle": format!("blob:{key}")}),
        )
        .await;
    assert_eq!(
        status, 400,
        "a bundle that was never stored cannot be handed off: {body}"
    );

    let response = tracker
        .http
        .put(&put_url)
        .body(vec![7_u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["size"], 100_000);
    assert_eq!(std::fs::metadata(staging.join(key)).unwrap().len(), 100_000);
    tracker.stop().await;
}

#[tokio::test]
async fn urls_expire_and_bundles_of_closed_jobs_are_collected() {
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &[
            "--url-ttl",
            "300ms",
            "--blob-grace",
            "0s",
            "--reap-interval",
            "50ms",
        ],
    )
    .await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("scraper", "CPU").await;
    let gpu = tracker.register("scorer", "GPU").await;
    let number = tracker.claim(&cpu, 1, false).await[0]["number"]
        .as_u64()
        .unwrap();
    let late: Value = tracker
        .post_ok(
            "/api/ext/uploadUrl",
            &json!({"token": cpu, "number": number}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = tracker
        .http
        .put(late["put_url"].as_str().unwrap())
        .body(vec![1_u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410, "expired");

    let handoff = tracker.upload(&cpu, number, vec![3_u8; 5_000]).await;
    let key = handoff.trim_start_matches("blob:").to_owned();
    let (status, _) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": number, "bundle": handoff}),
        )
        .await;
    assert_eq!(status, 200);
    let gpu_job = &tracker.claim(&gpu, 4, false).await[0];
    assert_eq!(gpu_job["bundle"]["size"], 5_000);
    assert_eq!(gpu_job["bundle"]["sha256"].as_str().unwrap().len(), 64);
    let bytes = tracker
        .http
        .get(gpu_job["bundle"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.bytes().await.unwrap().len(), 5_000);
    let path = tracker.dir.path().join("staging").join(&key);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(path.exists(), "kept while the GPU job is open");
    let (status, _) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": gpu, "number": number, "count": 3}),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !path.exists(),
        "collected once the job closed and the grace passed"
    );
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(
        metrics.contains("tracker_blobs_collected_total 1"),
        "{metrics}"
    );
    tracker.stop().await;
}
