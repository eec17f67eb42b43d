//! The 2021 full-WAT client flow (`/custom/*`), now with the reservation 2021 lacked.

use super::support;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

#[tokio::test]
async fn full_wat_flow_reserves_both_halves() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        // The 2021 FullWATClient registers a CPU client, then calls lookup-wat without a token.
        let token = tracker.register("fullwat", "CPU").await;
        let (status, wat) = tracker.get("/custom/get-cpu-wat").await;
        assert_eq!(status, 200);
        assert!(wat.contains("http"), "{wat}");
        let lookup: Value = tracker
            .post_ok("/custom/lookup-wat", &json!({"url": wat}))
            .await;
        assert_eq!(lookup["status"], "success", "{backend:?}: {lookup}");
        let shards = lookup["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0][1]["url"], wat.as_str());

        // Nobody else can take these halves now (2021 would have handed them out again).
        let other = tracker.register("classic", "CPU").await;
        let taken = tracker.claim(&other, 10, false).await;
        let numbers: Vec<u64> = shards
            .iter()
            .map(|shard| shard[0].as_u64().unwrap())
            .collect();
        assert_eq!(taken.len(), 2, "{backend:?}: only the other WAT is left");
        assert!(
            taken
                .iter()
                .all(|job| !numbers.contains(&job["number"].as_u64().unwrap()))
        );
        let again: Value = tracker
            .post_ok("/custom/lookup-wat", &json!({"url": wat, "token": other}))
            .await;
        assert_eq!(again["status"], "failed");
        assert_eq!(
            tracker.get("/custom/get-cpu-wat").await.0,
            403,
            "no fully open WAT left"
        );

        let urls: serde_json::Map<String, Value> = numbers
            .iter()
            .map(|number| (number.to_string(), json!(format!("rsync {number:032x}"))))
            .collect();
        let done: Value = tracker
            .post_ok(
                "/custom/markasdone-cpu",
                &json!({"shards": numbers, "urls": urls, "nickname": "fullwat", "token": token}),
            )
            .await;
        assert_eq!(
            done,
            json!({"status": "success", "completed": 2}),
            "{backend:?}"
        );
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "2");
        let repeat: Value = tracker
            .post_ok(
                "/custom/markasdone-cpu",
                &json!({"shards": numbers, "urls": urls, "nickname": "fullwat", "token": token}),
            )
            .await;
        assert_eq!(repeat["completed"], 0, "completing twice credits nothing");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn lookup_without_a_registered_client_fails_cleanly() {
    let tracker = TestTracker::start(support::Backend::Sqlite, &[]).await;
    tracker.import(1, 0).await;
    let lookup: Value = tracker
        .post_ok(
            "/custom/lookup-wat",
            &json!({"url": "http://cc.test/wat/0.warc.wat.gz"}),
        )
        .await;
    assert_eq!(lookup["status"], "failed");
    assert!(
        lookup["detail"].as_str().unwrap().contains("register"),
        "{lookup}"
    );
    tracker.stop().await;
}
