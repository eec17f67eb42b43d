//! A CPU job reported through `/api/ext/invalid` (its WAT cannot be used) goes behind every
//! other open job, fails for good after `--max-wat-failures` reports, and an admin reset
//! reopens it; the GPU meaning of the call is unchanged.

use super::support;

use serde_json::{Value, json};
use support::{ADMIN_SECRET, BACKENDS, Backend, TestTracker};
use tracker_d::db::Db;

fn numbers(jobs: &[Value]) -> Vec<u64> {
    jobs.iter()
        .map(|job| job["number"].as_u64().expect("job number"))
        .collect()
}

/// A job's `(stage, status, failures, failure_reason, shuffle_key)`, from the database.
async fn job(tracker: &TestTracker, number: i64) -> (String, String, i64, Option<String>, i64) {
    let db = Db::connect(&tracker.database_url, 1).await.expect("db");
    let row = sqlx::query_as(
        "SELECT stage, status, failures, failure_reason, shuffle_key FROM jobs WHERE number = $1",
    )
    .bind(number)
    .fetch_one(db.pool())
    .await
    .expect("job row");
    db.close().await;
    row
}

async fn report(tracker: &TestTracker, token: &str, number: u64, reason: &str) -> (u16, String) {
    tracker
        .post(
            "/api/ext/invalid",
            &json!({"token": token, "number": number, "reason": reason}),
        )
        .await
}

async fn report_ok(tracker: &TestTracker, token: &str, number: u64, reason: &str) {
    let (status, body) = report(tracker, token, number, reason).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "success"),
        "report of {number}"
    );
}

#[tokio::test]
async fn a_reported_wat_comes_back_only_after_every_other_open_job() {
    for backend in BACKENDS {
        // No reaper round: its reset of the claim floor would hide a floor left too high.
        let tracker = TestTracker::start(backend, &["--reap-interval", "1h"]).await;
        // Keys are the WAT index: jobs 1..6 have keys 0,0,1,1,2,2.
        tracker.import(3, 0).await;
        let first = tracker.register("first", "CPU").await;
        let second = tracker.register("second", "HYBRID").await;
        assert_eq!(numbers(&tracker.claim(&first, 2, true).await), [1, 2]);
        report_ok(&tracker, &first, 1, "holds no warc record (52 bytes)").await;
        report_ok(&tracker, &first, 2, "holds no warc record (52 bytes)").await;
        let (stage, status, failures, reason, key) = job(&tracker, 1).await;
        assert_eq!(
            (stage.as_str(), status.as_str(), failures, reason.as_deref()),
            ("cpu", "open", 1, Some("holds no warc record (52 bytes)")),
            "{backend:?}"
        );
        assert!(
            key > 2,
            "{backend:?}: key {key} is behind every other job's"
        );
        assert_eq!(
            job(&tracker, 2).await.4,
            key,
            "{backend:?}: the halves of the WAT keep sharing a key"
        );
        assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "6");

        // Every other open job first: whole-WAT claims, and a job released after the report.
        assert_eq!(
            numbers(&tracker.claim(&second, 2, true).await),
            [3, 4],
            "{backend:?}"
        );
        let (status, _) = tracker
            .post("/api/ext/release", &json!({"token": second, "number": 3}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            numbers(&tracker.claim(&first, 1, false).await),
            [3],
            "{backend:?}: a released job keeps its place, ahead of the reported WAT"
        );
        assert_eq!(
            numbers(&tracker.claim(&first, 2, true).await),
            [5, 6],
            "{backend:?}"
        );
        assert_eq!(
            numbers(&tracker.claim(&second, 2, true).await),
            [1, 2],
            "{backend:?}: the reported WAT, once nothing else is open"
        );
        // A report from a HYBRID client counts too, and the WAT goes behind the one reported
        // before it.
        report_ok(&tracker, &second, 1, "truncated").await;
        assert!(job(&tracker, 1).await.4 > key, "{backend:?}");
        assert_eq!(job(&tracker, 1).await.2, 2, "{backend:?}");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_wat_reported_three_times_fails_until_an_admin_resets_it() {
    for backend in BACKENDS {
        fails_for_good(backend).await;
    }
}

async fn fails_for_good(backend: Backend) {
    let tracker = TestTracker::start(backend, &["--reap-interval", "1h"]).await;
    tracker.import(2, 0).await;
    let scraper = tracker.register("scraper", "CPU").await;
    for round in 1..=3 {
        // Every open job, so the broken WAT is among them however far back it went.
        assert_eq!(
            numbers(&tracker.claim(&scraper, 4, false).await),
            [1, 2, 3, 4]
        );
        for number in [1, 2] {
            report_ok(&tracker, &scraper, number, &format!("cut, round {round}")).await;
        }
        for number in [3, 4] {
            let (status, _) = tracker
                .post(
                    "/api/ext/release",
                    &json!({"token": scraper, "number": number}),
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    let (stage, status, failures, reason, _) = job(&tracker, 1).await;
    assert_eq!(
        (stage.as_str(), status.as_str(), failures, reason.as_deref()),
        ("cpu", "failed", 3, Some("cut, round 3")),
        "{backend:?}"
    );
    assert_eq!(job(&tracker, 2).await.1, "failed");
    assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "2");
    assert_eq!(
        numbers(&tracker.claim(&scraper, 4, false).await),
        [3, 4],
        "{backend:?}: no claim hands a failed job out"
    );
    let (status, _) = report(&tracker, &scraper, 1, "again").await;
    assert_eq!(status, 409, "a failed job is held by nobody");

    // The reaper's statement returns expired leases and leaves failed jobs alone.
    let db = Db::connect(&tracker.database_url, 1).await.expect("db");
    let expired = tracker_d::jobs::expire_leases(&db, i64::MAX)
        .await
        .expect("expire");
    db.close().await;
    assert_eq!(expired, 2, "{backend:?}: jobs 3 and 4");
    assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "2");
    assert_eq!(job(&tracker, 1).await.1, "failed", "{backend:?}");

    // Counted apart on every page.
    let data: Value = serde_json::from_str(&tracker.get("/data").await.1).expect("data");
    assert_eq!(data["failed_jobs"], 2, "{backend:?}: {data}");
    assert_eq!(data["completion_str"], "0 / 4");
    let (_, dashboard) = tracker.get("/").await;
    assert!(
        dashboard.contains("<b id=\"failed\">2</b>")
            && dashboard.contains("http://cc.test/wat/0.warc.wat.gz")
            && dashboard.contains("cut, round 3"),
        "{backend:?}: {dashboard}"
    );
    let (_, metrics) = tracker.get("/metrics").await;
    for line in [
        "tracker_jobs{stage=\"cpu\",status=\"failed\"} 2",
        "tracker_jobs_failed_total 2",
        "tracker_broken_wat_reports_total 6",
    ] {
        assert!(metrics.contains(line), "{backend:?}: no {line}: {metrics}");
    }

    let response = tracker
        .http
        .post(tracker.url("/admin/reset-job"))
        .header(cah_protocol::ADMIN_SECRET_HEADER, ADMIN_SECRET)
        .json(&json!({"number": 1}))
        .send()
        .await
        .expect("reset");
    assert_eq!(response.status(), 200);
    let (stage, status, failures, reason, _) = job(&tracker, 1).await;
    assert_eq!(
        (stage.as_str(), status.as_str(), failures, reason),
        ("cpu", "open", 0, None),
        "{backend:?}"
    );
    assert_eq!(
        numbers(&tracker.claim(&scraper, 4, false).await),
        [1, 3, 4],
        "{backend:?}: the reset job is handed out again"
    );
    tracker.stop().await;
}

#[tokio::test]
async fn a_gpu_invalid_report_still_sends_the_job_back_to_scraping_in_place() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        let cpu = tracker.register("cpu", "CPU").await;
        let gpu = tracker.register("gpu", "GPU").await;
        assert_eq!(numbers(&tracker.claim(&cpu, 1, false).await), [1]);
        let bundle = "rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6";
        let (status, body) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": 1, "bundle": bundle}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(numbers(&tracker.claim(&gpu, 1, false).await), [1]);
        report_ok(&tracker, &gpu, 1, "corrupt tar").await;
        let (stage, status, failures, reason, key) = job(&tracker, 1).await;
        assert_eq!(
            (stage.as_str(), status.as_str(), failures, reason, key),
            ("cpu", "open", 0, None, 0),
            "{backend:?}: back to scraping at its old place, no WAT failure counted"
        );
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "0");
        assert_eq!(
            numbers(&tracker.claim(&cpu, 1, false).await),
            [1],
            "{backend:?}: ahead of the jobs behind it"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_report_of_a_job_the_caller_does_not_hold_is_refused() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        let holder = tracker.register("holder", "CPU").await;
        let other = tracker.register("other", "CPU").await;
        let gpu = tracker.register("gpu", "GPU").await;
        assert_eq!(numbers(&tracker.claim(&holder, 2, true).await), [1, 2]);
        assert_eq!(report(&tracker, &other, 1, "not mine").await.0, 409);
        assert_eq!(report(&tracker, &other, 3, "open").await.0, 409);
        assert_eq!(report(&tracker, &other, 99, "no such job").await.0, 409);
        assert_eq!(
            report(&tracker, &gpu, 1, "a cpu job").await.0,
            409,
            "{backend:?}: a GPU client's report is about a bundle"
        );
        assert_eq!(report(&tracker, "no-such-token", 1, "x").await.0, 404);
        // The 2021 call keeps only its GPU meaning.
        let (status, _) = tracker
            .post(
                "/api/gpuInvalidDownload",
                &json!({"token": holder, "type": "CPU"}),
            )
            .await;
        assert_eq!(status, 403, "{backend:?}");
        let (stage, status, failures, _, _) = job(&tracker, 1).await;
        assert_eq!(
            (stage.as_str(), status.as_str(), failures),
            ("cpu", "pending", 0),
            "{backend:?}: still the holder's, nothing counted"
        );
        let (_, held) = tracker
            .post(
                "/api/ext/heartbeat",
                &json!({"token": holder, "progress": "x"}),
            )
            .await;
        let held: Value = serde_json::from_str(&held).expect("heartbeat");
        assert_eq!(held["jobs"], json!([1, 2]), "{backend:?}");
        tracker.stop().await;
    }
}
