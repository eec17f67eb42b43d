//! What one client may ask of the tracker: pair counts within the job, handoff strings within
//! the limit, and a bounded number of jobs held at once.

use super::support;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

#[tokio::test]
async fn pair_counts_beyond_the_job_are_refused_and_the_dashboard_keeps_working() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let hybrid = tracker.register("greedy", "HYBRID").await;
        let jobs = tracker.claim(&hybrid, 2, false).await;
        let (first, second) = (&jobs[0]["number"], &jobs[1]["number"]);
        for count in [json!(i64::MAX), json!(u64::MAX), json!(500_001)] {
            let (status, body) = tracker
                .post(
                    "/api/ext/complete",
                    &json!({"token": hybrid, "number": first, "count": count}),
                )
                .await;
            assert_eq!(status, 400, "{backend:?}: count {count}: {body}");
            assert!(body.contains("500000 sample IDs"), "{body}");
            let (status, body) = tracker
                .post(
                    "/api/markAsDone",
                    &json!({"token": hybrid, "type": "HYBRID", "count": count}),
                )
                .await;
            assert_eq!(status, 400, "{backend:?}: legacy count {count}: {body}");
        }
        // Refused closes leave the jobs held: a count the job can hold still closes them.
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": hybrid, "number": first, "count": 500_000}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let (status, body) = tracker
            .post(
                "/api/markAsDone",
                &json!({"token": hybrid, "type": "HYBRID", "count": 7}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": hybrid, "number": second, "count": 1}),
            )
            .await;
        assert_eq!(status, 409, "{backend:?}: closed already: {body}");

        let (status, data) = tracker.get("/data").await;
        assert_eq!(status, 200, "{backend:?}: {data}");
        let data: Value = serde_json::from_str(&data).expect("data json");
        assert_eq!(data["total_pairs_scraped"], 500_007, "{backend:?}");
        for path in ["/", "/leaderboard", "/metrics"] {
            assert_eq!(tracker.get(path).await.0, 200, "{backend:?}: {path}");
        }
        tracker.stop().await;
    }
}

/// `len` bytes of hex that do not compress (PostgreSQL compresses long values before indexing).
fn incompressible(prefix: &str, len: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut text = prefix.to_owned();
    while text.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        text.push_str(&format!("{:016x}", state >> 1));
    }
    text.truncate(len);
    text
}

#[tokio::test]
async fn handoff_strings_are_capped_on_every_route() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        let cpu = tracker.register("hoarder", "CPU").await;
        let gpu = tracker.register("scorer", "GPU").await;
        let jobs = tracker.claim(&cpu, 4, false).await;
        let numbers: Vec<u64> = jobs
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        let long = incompressible("rsync ", tracker_d::tracker::MAX_HANDOFF_BYTES + 1);
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": numbers[0], "bundle": long}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert!(body.contains("2048"), "{body}");
        let (status, body) = tracker
            .post(
                "/api/markAsDone",
                &json!({"token": cpu, "type": "CPU", "url": long}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: legacy: {body}");
        let urls: serde_json::Map<String, Value> = numbers
            .iter()
            .map(|number| (number.to_string(), json!(long)))
            .collect();
        let (status, body) = tracker
            .post(
                "/custom/markasdone-cpu",
                &json!({"shards": numbers, "urls": urls, "nickname": "hoarder", "token": cpu}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: full-WAT: {body}");
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "0");

        let longest = incompressible("rsync ", tracker_d::tracker::MAX_HANDOFF_BYTES);
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": numbers[0], "bundle": longest}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: at the limit: {body}");
        let handed = tracker.claim(&gpu, 4, false).await;
        assert_eq!(handed.len(), 1, "{backend:?}");
        assert_eq!(handed[0]["bundle"]["url"], longest.as_str());
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_client_at_the_cap_gets_no_more_jobs() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &["--max-jobs-per-client", "3"]).await;
        tracker.import(8, 0).await;
        let hybrid = tracker.register("hoarder", "HYBRID").await;
        assert_eq!(
            tracker.claim(&hybrid, 2, false).await.len(),
            2,
            "{backend:?}"
        );
        assert_eq!(
            tracker.claim(&hybrid, 1000, false).await.len(),
            1,
            "{backend:?}: only the room left"
        );
        assert_eq!(
            tracker.claim(&hybrid, 1, false).await,
            Vec::<Value>::new(),
            "{backend:?}: at the cap, an empty claim as when there is no work"
        );
        let heartbeat: Value = tracker
            .post_ok(
                "/api/ext/heartbeat",
                &json!({"token": hybrid, "progress": "hoarding"}),
            )
            .await;
        let held = heartbeat["jobs"].as_array().unwrap().clone();
        assert_eq!(held.len(), 3, "{backend:?}");
        let (status, _) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": hybrid, "number": held[0], "count": 1}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            tracker.claim(&hybrid, 5, false).await.len(),
            1,
            "{backend:?}: room again"
        );
        let (status, body) = tracker
            .post("/api/newJob", &json!({"token": hybrid, "type": "HYBRID"}))
            .await;
        assert_eq!(status, 200, "{backend:?}: newJob releases first: {body}");

        // A whole-WAT claim with room for one job takes one half.
        let cpu = tracker.register("scraper", "CPU").await;
        assert_eq!(tracker.claim(&cpu, 1, true).await.len(), 2, "{backend:?}");
        assert_eq!(tracker.claim(&cpu, 1, true).await.len(), 1, "{backend:?}");
        assert!(tracker.claim(&cpu, 1, true).await.is_empty(), "{backend:?}");

        // Concurrent claims of one client cannot pass the cap together.
        let racer = tracker.register("racer", "HYBRID").await;
        let claims: Vec<_> = (0..16).map(|_| tracker.claim(&racer, 3, false)).collect();
        let claimed: usize = futures_util::future::join_all(claims)
            .await
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(claimed, 3, "{backend:?}");
        tracker.stop().await;
    }
}
