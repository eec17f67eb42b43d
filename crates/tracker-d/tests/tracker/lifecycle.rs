//! The whole CPU → GPU job lifecycle through the 2021 endpoints, on SQLite and PostgreSQL.

use super::support;

use serde_json::{Value, json};
use support::{BACKENDS, Backend, TestTracker};

#[tokio::test]
async fn cpu_to_gpu_lifecycle() {
    for backend in BACKENDS {
        lifecycle(backend).await;
    }
}

async fn lifecycle(backend: Backend) {
    let tracker = TestTracker::start(backend, &[]).await;
    tracker.import(2, 0).await;
    let cpu = tracker.register("alice", "CPU").await;
    let gpu = tracker.register("bob", "GPU").await;

    assert_eq!(
        tracker.get("/api/jobCount?type=CPU").await,
        (200, "4".into())
    );
    assert_eq!(
        tracker.get("/api/jobCount?type=GPU").await,
        (200, "0".into())
    );
    let (status, body) = tracker
        .post("/api/newJob", &json!({"token": gpu, "type": "GPU"}))
        .await;
    assert_eq!(status, 403, "no GPU work yet: {body}");

    let job: Value = tracker
        .post_ok("/api/newJob", &json!({"token": cpu, "type": "CPU"}))
        .await;
    let number = job["number"].as_u64().expect("number");
    assert_eq!(number, 1, "{backend:?}: claims walk the import order");
    assert_eq!(job["url"], "http://cc.test/wat/0.warc.wat.gz");
    assert_eq!(
        (job["start_id"].as_str(), job["end_id"].as_str()),
        (Some("0"), Some("500000"))
    );
    assert_eq!(job["shard"], 0);

    let (status, body) = tracker
        .post(
            "/api/updateProgress",
            &json!({"token": cpu, "progress": "Downloading images", "type": "CPU"}),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));

    let bundle_bytes: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
    let handoff = tracker.upload(&cpu, number, bundle_bytes.clone()).await;
    let (status, body) = tracker
        .post(
            "/api/markAsDone",
            &json!({"token": cpu, "type": "CPU", "url": handoff}),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let (status, _) = tracker
        .post(
            "/api/markAsDone",
            &json!({"token": cpu, "type": "CPU", "url": handoff}),
        )
        .await;
    assert_eq!(status, 403, "a second completion is refused as in 2021");

    assert_eq!(
        tracker.get("/api/jobCount?type=GPU").await,
        (200, "1".into())
    );
    let gpu_job: Value = tracker
        .post_ok("/api/newJob", &json!({"token": gpu, "type": "GPU"}))
        .await;
    assert_eq!(gpu_job["number"], number);
    let bundle_url = gpu_job["url"].as_str().expect("url");
    assert!(
        bundle_url.contains("/blobs/") && bundle_url.contains("signature="),
        "{bundle_url}"
    );
    let fetched = tracker
        .http
        .get(bundle_url)
        .send()
        .await
        .expect("get bundle");
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.expect("bytes").to_vec(), bundle_bytes);

    // A GPU job that yields nothing is still a finished job (2021 refused count 0).
    let (status, body) = tracker
        .post(
            "/api/markAsDone",
            &json!({"token": gpu, "type": "GPU", "count": 0}),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));

    let data: Value = serde_json::from_str(&tracker.get("/data").await.1).expect("data json");
    assert_eq!(data["completion_str"], "1 / 4");
    assert_eq!(data["total_connected_workers"], 2);
    let completed: Vec<String> = tracker
        .post_ok(
            "/api/isCompleted",
            &json!({"addresses": [handoff, "rsync never-seen"]}),
        )
        .await;
    assert_eq!(
        completed.len(),
        2,
        "closed and unknown addresses are both completed"
    );

    let (status, page) = tracker.get("/leaderboard").await;
    assert_eq!(status, 200);
    assert!(page.contains("alice") && page.contains("bob"), "{page}");
    // Progress strings reach the dashboard within the touch flush (1 s) plus the figures' cache.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, page) = tracker.get("/").await;
        assert_eq!(status, 200);
        assert!(page.contains("jobs-per-hour"), "{page}");
        if page.contains("Downloading images") {
            // One job went through both stages: it counts once as scraped, not also as closed.
            assert!(page.contains("<b id=\"scraped\">1</b>"), "{page}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "progress never shown: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, metrics) = tracker.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("tracker_closes_total 1"), "{metrics}");
    assert!(
        metrics.contains("tracker_jobs{stage=\"gpu\",status=\"closed\"} 1"),
        "{metrics}"
    );

    let (status, body) = tracker
        .post("/api/bye", &json!({"token": cpu, "type": "CPU"}))
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(
        tracker
            .post("/api/validateWorker", &json!({"token": cpu, "type": "CPU"}))
            .await,
        (200, "False".into())
    );
    assert_eq!(
        tracker
            .post("/api/validateWorker", &json!({"token": gpu, "type": "GPU"}))
            .await,
        (200, "True".into())
    );
    tracker.stop().await;
}

#[tokio::test]
async fn hybrid_closes_directly_and_new_job_releases_the_previous_one() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let hybrid = tracker.register("carol", "hybrid").await;
        let first: Value = tracker
            .post_ok("/api/newJob", &json!({"token": hybrid}))
            .await;
        // newJob releases the job the client held before claiming, so the lowest open job
        // is the same one again (without the release it would be the second job).
        let again: Value = tracker
            .post_ok("/api/newJob", &json!({"token": hybrid}))
            .await;
        assert_eq!(again["number"], first["number"], "{backend:?}");
        let other = tracker.register("carl", "hybrid").await;
        let second: Value = tracker
            .post_ok("/api/newJob", &json!({"token": other}))
            .await;
        assert_ne!(second["number"], first["number"], "{backend:?}");
        let (status, _) = tracker
            .post(
                "/api/markAsDone",
                &json!({"token": hybrid, "type": "HYBRID", "count": 42}),
            )
            .await;
        assert_eq!(status, 200);
        let (status, body) = tracker
            .post(
                "/api/markAsDone",
                &json!({"token": hybrid, "type": "HYBRID"}),
            )
            .await;
        assert_eq!(status, 403, "nothing held any more: {body}");
        let states = tracker.job_states().await;
        assert!(
            states.contains(&("cpu".into(), "closed".into(), 1)),
            "{states:?}"
        );
        assert!(
            states.contains(&("cpu".into(), "pending".into(), 1)),
            "{states:?}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn invalid_bundle_sends_the_job_back_to_scraping() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("dave", "CPU").await;
        let gpu = tracker.register("erin", "GPU").await;
        let jobs = tracker.claim(&cpu, 1, false).await;
        let number = jobs[0]["number"].as_u64().expect("number");
        let (status, body) = tracker
            .post("/api/markAsDone", &json!({"token": cpu, "type": "CPU", "url": "rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6"}))
            .await;
        assert_eq!(status, 200, "{body}");
        let gpu_job: Value = tracker
            .post_ok("/api/newJob", &json!({"token": gpu, "type": "GPU"}))
            .await;
        assert_eq!(
            gpu_job["url"], "rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6",
            "legacy handoffs pass through"
        );
        let (status, _) = tracker
            .post(
                "/api/gpuInvalidDownload",
                &json!({"token": gpu, "type": "GPU"}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "0");
        assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "2");
        assert!(
            jobs[0].get("scraped_before").is_none(),
            "{backend:?}: a first claim says nothing: {jobs:?}"
        );
        let again = tracker.claim(&cpu, 2, false).await;
        // The scraper must keep the pairs its first scrape added to `parsed`.
        for job in &again {
            let expected = job["number"] == number;
            assert_eq!(
                job.get("scraped_before")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                expected,
                "{backend:?}: {again:?}"
            );
        }
        assert!(
            again.iter().any(|job| job["number"] == number),
            "{backend:?}: {again:?}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_closed_job_reset_by_an_admin_is_marked_scraped_before() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let hybrid = tracker.register("ivan", "HYBRID").await;
        let jobs = tracker.claim(&hybrid, 1, false).await;
        let number = jobs[0]["number"].as_u64().expect("number");
        let (status, text) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": hybrid, "number": number, "count": 3}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        let response = tracker
            .http
            .post(tracker.url("/admin/reset-job"))
            .header(cah_protocol::ADMIN_SECRET_HEADER, support::ADMIN_SECRET)
            .json(&json!({"number": number}))
            .send()
            .await
            .expect("reset");
        assert_eq!(response.status(), 200, "{backend:?}");
        let again = tracker.claim(&hybrid, 2, false).await;
        let flags: Vec<(u64, bool)> = again
            .iter()
            .map(|job| {
                (
                    job["number"].as_u64().expect("number"),
                    job["scraped_before"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        assert!(flags.contains(&(number, true)), "{backend:?}: {again:?}");
        assert!(
            flags.iter().all(|(other, flag)| *other == number || !flag),
            "{backend:?}: only the reset job: {again:?}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn sample_id_ranges_never_overlap() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--max-jobs-per-client", "1000"]).await;
    tracker.import(50, 0).await;
    tracker.import(50, 25).await; // 25 of these are already there and are skipped.
    let hybrid = tracker.register("frank", "HYBRID").await;
    let mut ranges = Vec::new();
    loop {
        let jobs = tracker.claim(&hybrid, 1000, false).await;
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            ranges.push((
                job["start_id"].as_u64().expect("start"),
                job["end_id"].as_u64().expect("end"),
            ));
        }
    }
    assert_eq!(ranges.len(), 150, "75 WATs, two halves each");
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        assert_eq!(pair[0].1 - pair[0].0, 500_000);
    }
    tracker.stop().await;
}

/// A CPU client's credits as the database holds them: its `clients.jobs_completed`, and its
/// nickname's `cpu_leaderboard` points (`None`: no row).
async fn cpu_credits(database_url: &str, token: &str, nickname: &str) -> (i64, Option<i64>) {
    let db = tracker_d::db::Db::connect(database_url, 1)
        .await
        .expect("db");
    let completed: i64 = sqlx::query_scalar("SELECT jobs_completed FROM clients WHERE token = $1")
        .bind(token)
        .fetch_one(db.pool())
        .await
        .expect("client");
    let points: Option<i64> =
        sqlx::query_scalar("SELECT jobs_completed FROM cpu_leaderboard WHERE nickname = $1")
            .bind(nickname)
            .fetch_optional(db.pool())
            .await
            .expect("leaderboard");
    db.close().await;
    (completed, points)
}

#[tokio::test]
async fn a_bundle_reported_invalid_takes_back_the_handoffs_credit() {
    const FLAGS: &[&str] = &["--dedup-per-job", "1000", "--dedup-start", "0"];
    for backend in BACKENDS {
        let mut tracker = TestTracker::start(backend, FLAGS).await;
        tracker.import(1, 0).await;
        let farmer = tracker.register("garbage-farmer", "CPU").await;
        let gpu = tracker.register("honest-gpu", "GPU").await;
        for round in 0..3 {
            let jobs = tracker.claim(&farmer, 1, false).await;
            let number = jobs[0]["number"].as_u64().expect("number");
            let bundle = tracker.upload(&farmer, number, b"not a tar".to_vec()).await;
            let (status, text) = tracker
                .post(
                    "/api/ext/complete",
                    &json!({"token": farmer, "number": number, "bundle": bundle}),
                )
                .await;
            assert_eq!(status, 200, "{text}");
            if round == 2 {
                // The handoff's credit is written and the farmer is not cached any more: the
                // report takes it back in the database.
                let (dir, database_url) = tracker.stop().await;
                assert_eq!(
                    cpu_credits(&database_url, &farmer, "garbage-farmer").await,
                    (1, Some(1)),
                    "{backend:?}: a handoff is credited"
                );
                tracker = TestTracker::start_on(dir, database_url, FLAGS).await;
            }
            let claimed = tracker.claim(&gpu, 1, false).await;
            assert_eq!(claimed[0]["number"], number, "{backend:?}");
            let (status, text) = tracker
                .post(
                    "/api/ext/invalid",
                    &json!({"token": gpu, "number": number, "reason": "not a tar"}),
                )
                .await;
            assert_eq!(status, 200, "{text}");
            if round == 0 {
                // In memory too: no dedup allowance is left from the handoff.
                let (status, text) = tracker
                    .post(
                        "/api/ext/dedup",
                        &json!({"token": farmer, "set": "parsed", "hashes": [7], "add": true}),
                    )
                    .await;
                assert_eq!(status, 403, "{backend:?}: {text}");
            }
        }
        // An honest handoff keeps its credit.
        let jobs = tracker.claim(&farmer, 1, false).await;
        let number = jobs[0]["number"].as_u64().expect("number");
        let bundle = tracker.upload(&farmer, number, b"a bundle".to_vec()).await;
        let (status, text) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": farmer, "number": number, "bundle": bundle}),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        let (dir, database_url) = tracker.stop().await;
        assert_eq!(
            cpu_credits(&database_url, &farmer, "garbage-farmer").await,
            (1, Some(1)),
            "{backend:?}: three rejected handoffs earned nothing, the good one a point"
        );
        drop(dir);
    }
}
