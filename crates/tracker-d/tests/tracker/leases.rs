//! Leases: heartbeats keep a job, silence loses it to the reaper, and a lost job cannot be completed.

use super::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

const SHORT: &[&str] = &[
    "--lease",
    "400ms",
    "--reap-interval",
    "50ms",
    "--client-timeout",
    "1h",
];

#[tokio::test]
async fn expired_lease_returns_the_job_and_blocks_the_old_holder() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, SHORT).await;
        tracker.import(1, 0).await;
        let slow = tracker.register("slow", "HYBRID").await;
        let fast = tracker.register("fast", "HYBRID").await;
        let jobs = tracker.claim(&slow, 2, false).await;
        assert_eq!(jobs.len(), 2);
        assert!(
            tracker.claim(&fast, 1, false).await.is_empty(),
            "{backend:?}: all held"
        );

        tokio::time::sleep(Duration::from_millis(900)).await;
        let taken = tracker.claim(&fast, 2, false).await;
        assert_eq!(taken.len(), 2, "{backend:?}: the reaper returned both jobs");

        let heartbeat: Value = tracker
            .post_ok(
                "/api/ext/heartbeat",
                &json!({"token": slow, "progress": "still here"}),
            )
            .await;
        assert_eq!(
            heartbeat["jobs"],
            json!([]),
            "the slow client learns it lost its jobs"
        );
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": slow, "number": jobs[0]["number"], "count": 5}),
            )
            .await;
        assert_eq!(status, 409, "{backend:?}: {body}");
        let (status, _) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": fast, "number": jobs[0]["number"], "count": 5}),
            )
            .await;
        assert_eq!(status, 200);
        tracker.stop().await;
    }
}

#[tokio::test]
async fn heartbeats_keep_the_lease() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, SHORT).await;
        tracker.import(1, 0).await;
        let worker = tracker.register("steady", "CPU").await;
        let other = tracker.register("eager", "CPU").await;
        let jobs = tracker.claim(&worker, 1, true).await;
        assert_eq!(jobs.len(), 2, "whole-WAT claim takes both halves");
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (status, body) = tracker
                .post(
                    "/api/updateProgress",
                    &json!({"token": worker, "progress": "working", "type": "CPU"}),
                )
                .await;
            assert_eq!((status, body.as_str()), (200, "success"));
            assert!(
                tracker.claim(&other, 1, false).await.is_empty(),
                "{backend:?}: lease held"
            );
        }
        tracker.stop().await;
    }
}

#[tokio::test]
async fn idle_clients_are_forgotten_and_must_register_again() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(
            backend,
            &[
                "--lease",
                "200ms",
                "--client-timeout",
                "300ms",
                "--reap-interval",
                "50ms",
            ],
        )
        .await;
        tracker.import(1, 0).await;
        let token = tracker.register("ghost", "CPU").await;
        assert_eq!(tracker.claim(&token, 1, false).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let (status, body) = tracker
            .post("/api/newJob", &json!({"token": token, "type": "CPU"}))
            .await;
        assert_eq!(status, 404, "{backend:?}: {body}");
        assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "2");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn any_call_renews_the_lease_as_in_2021() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, SHORT).await;
        tracker.import(1, 0).await;
        let worker = tracker.register("chatty", "CPU").await;
        let other = tracker.register("eager", "CPU").await;
        assert_eq!(tracker.claim(&worker, 2, false).await.len(), 2);
        // No heartbeat at all: only other calls, which are written in batches and renew leases.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (status, body) = tracker
                .post(
                    "/api/validateWorker",
                    &json!({"token": worker, "type": "CPU"}),
                )
                .await;
            assert_eq!((status, body.as_str()), (200, "True"));
            assert!(
                tracker.claim(&other, 1, false).await.is_empty(),
                "{backend:?}: lease held"
            );
        }
        // Silence: the lease runs out.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            tracker.claim(&other, 2, false).await.len(),
            2,
            "{backend:?}"
        );
        tracker.stop().await;
    }
}
