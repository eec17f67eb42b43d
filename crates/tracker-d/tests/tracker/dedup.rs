//! Dedup sets: exact answers, atomic under concurrency, persistent across restarts.

use super::support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

async fn check(
    tracker: &TestTracker,
    token: &str,
    set: &str,
    hashes: &[u64],
    add: bool,
) -> Vec<bool> {
    let answer: Value = tracker
        .post_ok(
            "/api/ext/dedup",
            &json!({"token": token, "set": set, "hashes": hashes, "add": add}),
        )
        .await;
    serde_json::from_value(answer["new"].clone()).expect("flags")
}

#[tokio::test]
async fn sets_answer_exactly_and_survive_restarts() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        let token = tracker.register("dedup", "CPU").await;
        let big = u64::MAX - 3;
        assert_eq!(
            check(&tracker, &token, "parsed", &[1, 2, 2, big], true).await,
            [true, true, false, true]
        );
        assert_eq!(
            check(&tracker, &token, "parsed", &[2, 3, big], true).await,
            [false, true, false]
        );
        assert_eq!(
            check(&tracker, &token, "clipped", &[2], false).await,
            [true],
            "sets are separate"
        );
        assert_eq!(
            check(&tracker, &token, "clipped", &[2], false).await,
            [true],
            "add=false adds nothing"
        );
        let (status, text) = tracker
            .post(
                "/api/ext/dedup",
                &json!({"token": token, "set": "nolang", "hashes": [1]}),
            )
            .await;
        assert_eq!(status, 400, "{text}");

        let (dir, database_url) = tracker.stop().await;
        let restarted = TestTracker::start_on(dir, database_url, &[]).await;
        let token = restarted.register("dedup", "CPU").await;
        assert_eq!(
            check(&restarted, &token, "parsed", &[1, 3, 4, big], true).await,
            [false, false, true, false],
            "{backend:?}"
        );
        let (_, metrics) = restarted.get("/metrics").await;
        assert!(
            metrics.contains("tracker_dedup_entries{set=\"parsed\"} 5"),
            "{metrics}"
        );
        restarted.stop().await;
    }
}

#[tokio::test]
async fn concurrent_callers_never_both_get_new() {
    for backend in BACKENDS {
        let tracker = std::sync::Arc::new(TestTracker::start(backend, &[]).await);
        let token = tracker.register("racer", "GPU").await;
        let hashes: Vec<u64> = (0..2_000).map(|i| i * 7_919).collect();
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let tracker = std::sync::Arc::clone(&tracker);
            let token = token.clone();
            let mut mine = hashes.clone();
            mine.rotate_left(worker * 250);
            tasks.push(tokio::spawn(async move {
                let flags = check(&tracker, &token, "main", &mine, true).await;
                mine.into_iter()
                    .zip(flags)
                    .filter(|(_, new)| *new)
                    .map(|(h, _)| h)
                    .collect::<Vec<_>>()
            }));
        }
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await.expect("task"));
        }
        assert_eq!(
            claimed.len(),
            hashes.len(),
            "{backend:?}: each hash is new exactly once"
        );
        assert_eq!(claimed.iter().collect::<HashSet<_>>().len(), hashes.len());
        let tracker = std::sync::Arc::into_inner(tracker).expect("sole owner");
        tracker.stop().await;
    }
}
