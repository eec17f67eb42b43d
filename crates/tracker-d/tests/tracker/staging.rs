//! The staging blob store: signatures, expiry, size cap, atomic visibility and garbage collection.

use super::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{BACKENDS, Backend, TestTracker};

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

/// PUTs `bytes` to a signed URL and returns the status and body.
async fn put(tracker: &TestTracker, url: &str, bytes: Vec<u8>) -> (u16, String) {
    let response = tracker.http.put(url).body(bytes).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Asks for an upload URL of job `number`; returns `(put_url, key)`.
async fn upload_url(tracker: &TestTracker, token: &str, number: u64) -> (String, String) {
    let issued: Value = tracker
        .post_ok(
            "/api/ext/uploadUrl",
            &json!({"token": token, "number": number}),
        )
        .await;
    (
        issued["put_url"].as_str().unwrap().to_owned(),
        issued["key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_stored_bundle_cannot_be_replaced() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let gpu = tracker.register("scorer", "GPU").await;
        let number = tracker.claim(&cpu, 1, false).await[0]["number"]
            .as_u64()
            .unwrap();
        let (put_url, key) = upload_url(&tracker, &cpu, number).await;
        let (status, body) = put(&tracker, &put_url, vec![1_u8; 1_000]).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let stored: Value = serde_json::from_str(&body).unwrap();
        let (status, again) = put(&tracker, &put_url, vec![1_u8; 1_000]).await;
        assert_eq!(
            (status, serde_json::from_str::<Value>(&again).unwrap()),
            (200, stored.clone()),
            "{backend:?}: the same bytes again answer like the first PUT (a retry)"
        );
        let (status, body) = put(&tracker, &put_url, vec![2_u8; 1_000]).await;
        assert_eq!(status, 409, "{backend:?}: other bytes: {body}");

        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": number, "bundle": format!("blob:{key}")}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        for bytes in [vec![2_u8; 1_000], vec![1_u8; 1_000]] {
            let (status, body) = put(&tracker, &put_url, bytes).await;
            assert_eq!(status, 409, "{backend:?}: after the handoff: {body}");
        }
        let (status, body) = tracker
            .post(
                "/api/ext/uploadUrl",
                &json!({"token": cpu, "number": number}),
            )
            .await;
        assert_eq!(
            status, 409,
            "{backend:?}: the job is not held any more: {body}"
        );

        let job = &tracker.claim(&gpu, 1, false).await[0];
        assert_eq!(job["bundle"]["sha256"], stored["sha256"], "{backend:?}");
        let bytes = tracker
            .http
            .get(job["bundle"]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.to_vec(), vec![1_u8; 1_000], "{backend:?}");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn upload_urls_go_to_the_holding_scraper_and_each_supersedes_the_last() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let hybrid = tracker.register("hybrid", "HYBRID").await;
        let gpu = tracker.register("scorer", "GPU").await;
        let numbers: Vec<u64> = tracker
            .claim(&cpu, 2, false)
            .await
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        let held = tracker.claim(&hybrid, 1, false).await[0]["number"].clone();
        let (status, body) = tracker
            .post(
                "/api/ext/uploadUrl",
                &json!({"token": hybrid, "number": held}),
            )
            .await;
        assert_eq!(
            status, 400,
            "{backend:?}: hybrid clients close with a count: {body}"
        );

        // A scraper's normal flow, with a retry after a failed PUT.
        let number = numbers[0];
        let staging = tracker.dir.path().join("staging");
        let (first_url, first_key) = upload_url(&tracker, &cpu, number).await;
        assert_eq!(put(&tracker, &first_url, vec![1_u8; 500]).await.0, 200);
        assert!(staging.join(&first_key).exists());
        let (second_url, second_key) = upload_url(&tracker, &cpu, number).await;
        assert!(
            !staging.join(&first_key).exists(),
            "{backend:?}: the superseded bundle is deleted"
        );
        let (status, body) = put(&tracker, &first_url, vec![1_u8; 500]).await;
        assert_eq!(status, 409, "{backend:?}: a superseded url: {body}");
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": number, "bundle": format!("blob:{first_key}")}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: not the latest upload: {body}");
        let broken = tracker
            .http
            .put(&second_url)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter([
                Ok::<_, std::io::Error>(vec![3_u8; 100]),
                Err(std::io::Error::other("connection lost")),
            ])))
            .send()
            .await;
        assert!(
            broken.is_err() || broken.unwrap().status() != 200,
            "{backend:?}: the failed PUT stored nothing"
        );
        assert_eq!(put(&tracker, &second_url, vec![3_u8; 700]).await.0, 200);
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": number, "bundle": format!("blob:{second_key}")}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");

        // However many upload urls a held job is given, it keeps at most one bundle.
        for round in 0..5_u8 {
            let (url, _) = upload_url(&tracker, &cpu, numbers[1]).await;
            assert_eq!(put(&tracker, &url, vec![round; 300]).await.0, 200);
        }
        let blobs = std::fs::read_dir(&staging)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(&format!("job-{}-", numbers[1]))
            })
            .count();
        assert_eq!(blobs, 1, "{backend:?}");

        let gpu_job = tracker.claim(&gpu, 1, false).await[0]["number"].clone();
        let (status, body) = tracker
            .post(
                "/api/ext/uploadUrl",
                &json!({"token": gpu, "number": gpu_job}),
            )
            .await;
        assert_eq!(
            status, 400,
            "{backend:?}: GPU clients do not upload: {body}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_newer_put_to_a_job_stops_the_one_in_flight() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("scraper", "CPU").await;
    let number = tracker.claim(&cpu, 1, false).await[0]["number"]
        .as_u64()
        .unwrap();
    let (put_url, _) = upload_url(&tracker, &cpu, number).await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    sender.send(Ok(vec![9_u8; 1_000])).await.unwrap();
    let stalled = tokio::spawn(
        tracker
            .http
            .put(&put_url)
            .body(reqwest::Body::wrap_stream(stream_of(receiver)))
            .send(),
    );
    // The first body is being received once its part file exists.
    let parts = tracker.dir.path().join("staging").join("tmp");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&parts).unwrap().count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first PUT never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(put(&tracker, &put_url, vec![4_u8; 1_000]).await.0, 200);
    // The first PUT is answered 409 (or its connection dropped) without the rest of its body.
    if let Ok(first) = stalled.await.unwrap() {
        assert_eq!(first.status(), 409, "{}", first.text().await.unwrap());
    }
    drop(sender);
    assert_eq!(
        std::fs::read_dir(&parts).unwrap().count(),
        0,
        "the stopped upload's part file is gone"
    );
    tracker.stop().await;
}

/// A stream of what `receiver` yields, until its sender is dropped.
fn stream_of<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// The store's folder removed under the running server (an operator cleaning up): the next
/// upload makes it again and is stored, instead of every upload failing until a restart.
#[tokio::test]
async fn an_upload_after_the_store_folder_was_removed_is_stored() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("scraper", "CPU").await;
    let jobs = tracker.claim(&cpu, 2, false).await;
    let number = jobs[0]["number"].as_u64().expect("number");
    let staging = tracker.dir.path().join("staging");
    std::fs::remove_dir_all(&staging).expect("remove the store folder");
    let handoff = tracker.upload(&cpu, number, vec![3; 1000]).await;
    let key = handoff.strip_prefix("blob:").expect("blob handoff");
    assert_eq!(
        std::fs::read(staging.join(key)).expect("the blob is stored"),
        vec![3; 1000]
    );
    tracker.stop().await;
}
