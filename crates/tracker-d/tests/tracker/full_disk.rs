//! A full disk: uploads to a full staging store are refused with 507 and no server path, and
//! the reaper keeps freeing space while the database cannot write.

use super::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::{BACKENDS, Backend, TestTracker, fresh_database};
use tracker_d::db::Db;
use tracker_d::http::AppError;
use tracker_d::staging::StagingError;
use tracker_d::testing::{SmallDisk, execute};
use tracker_d::tracker::TrackerError;

/// The staging tmpfs: room for a small bundle, not for a large one.
const DISK_BYTES: u64 = 256 * 1024;

// Says on stderr when it cannot mount the full disk it needs, and what it checks instead.
#[allow(clippy::print_stderr)]
#[tokio::test]
async fn an_upload_to_a_full_store_is_507_and_leaves_no_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("staging");
    let Some(disk) = SmallDisk::mount(&staging, DISK_BYTES) else {
        eprintln!(
            "cannot mount a tmpfs here (not root?): checking the answer to a StorageFull write \
             instead of filling a real disk"
        );
        return check_full_store_answer().await;
    };
    let database_url = fresh_database(Backend::Sqlite, dir.path()).await;
    let tracker = TestTracker::start_on(dir, database_url, &[]).await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("scraper", "CPU").await;
    let number = tracker.claim(&cpu, 1, false).await[0]["number"]
        .as_u64()
        .unwrap();
    let issued: Value = tracker
        .post_ok(
            "/api/ext/uploadUrl",
            &json!({"token": cpu, "number": number}),
        )
        .await;
    let put_url = issued["put_url"].as_str().unwrap();

    for size in [1024 * 1024, 8 * 1024 * 1024] {
        let response = tracker
            .http
            .put(put_url)
            .body(vec![5_u8; size])
            .send()
            .await
            .unwrap_or_else(|error| panic!("{size} bytes: no answer: {error}"));
        assert_eq!(response.status(), 507, "{size} bytes");
        let retry_after = response.headers()["retry-after"].to_str().unwrap();
        assert_eq!(retry_after, "300", "{size} bytes");
        let body = response.text().await.unwrap();
        assert!(body.contains("bundle store is full"), "{body}");
        assert!(!body.contains('/'), "no server path in {body:?}");
        assert_eq!(
            std::fs::read_dir(disk.path().join("tmp")).unwrap().count(),
            0,
            "the part that filled the disk is deleted"
        );
    }
    // The space is free again, and the same URL takes a bundle that fits.
    let response = tracker
        .http
        .put(put_url)
        .body(vec![6_u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(
        metrics.contains("tracker_blobs_stored_total 1"),
        "{metrics}"
    );
    let (dir, _) = tracker.stop().await;
    drop(disk);
    drop(dir);
}

/// Where no tmpfs can be mounted: the answer the HTTP layer gives to a write that failed with
/// `StorageFull`.
async fn check_full_store_answer() {
    let cause = std::io::Error::from(std::io::ErrorKind::StorageFull);
    let path = std::env::temp_dir().join("staging/tmp/job-1-0.part");
    let error = TrackerError::from(StagingError::io(path, cause));
    let response = AppError::from(error).into_response();
    assert_eq!(response.status(), 507);
    assert_eq!(response.headers()["retry-after"], "300");
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("bundle store is full"), "{body}");
    assert!(!body.contains('/'), "no server path in {body:?}");
}

#[tokio::test]
async fn the_reaper_collects_bundles_while_client_touches_cannot_be_written() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(
            backend,
            &[
                "--reap-interval",
                "50ms",
                "--blob-grace",
                "0s",
                "--lease",
                "1s",
                "--client-timeout",
                "1s",
            ],
        )
        .await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let gpu = tracker.register("scorer", "GPU").await;
        // From now on every write of client touches fails, as on a database whose disk is full.
        fail_statements(&tracker, backend, "BEFORE UPDATE OF last_seen ON clients").await;
        let number = tracker.claim(&cpu, 1, false).await[0]["number"]
            .as_u64()
            .unwrap();
        let handoff = tracker.upload(&cpu, number, vec![1_u8; 4_000]).await;
        let blob = tracker
            .dir
            .path()
            .join("staging")
            .join(handoff.trim_start_matches("blob:"));
        let complete = json!({"token": cpu, "number": number, "bundle": handoff});
        complete_ok(&tracker, &complete).await;
        assert_eq!(tracker.claim(&gpu, 1, false).await.len(), 1);
        let complete = json!({"token": gpu, "number": number, "count": 2});
        complete_ok(&tracker, &complete).await;
        let touched_at = now_ms();
        assert!(validate(&tracker, &cpu).await, "{backend:?}");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while blob.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: the closed job's bundle was not collected while touches failed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            last_seen(&tracker, &cpu).await < touched_at,
            "{backend:?}: the touches really were not written"
        );
        // Past the client timeout by what the database knows, the clients that keep calling
        // are not taken for idle.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        for token in [&cpu, &gpu] {
            assert!(
                validate(&tracker, token).await,
                "{backend:?}: a client that keeps calling was reaped as idle"
            );
        }
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_bundle_whose_row_cannot_be_deleted_still_loses_its_file() {
    for backend in BACKENDS {
        let tracker =
            TestTracker::start(backend, &["--reap-interval", "50ms", "--blob-grace", "0s"]).await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let gpu = tracker.register("scorer", "GPU").await;
        let numbers: Vec<u64> = tracker
            .claim(&cpu, 2, false)
            .await
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers.len(), 2, "{backend:?}");
        let mut blobs = Vec::new();
        for number in &numbers {
            let handoff = tracker.upload(&cpu, *number, vec![2_u8; 3_000]).await;
            let key = handoff.trim_start_matches("blob:").to_owned();
            blobs.push(tracker.dir.path().join("staging").join(key));
            let complete = json!({"token": cpu, "number": number, "bundle": handoff});
            complete_ok(&tracker, &complete).await;
        }
        fail_statements(&tracker, backend, "BEFORE DELETE ON blobs").await;
        for job in tracker.claim(&gpu, 2, false).await {
            let complete = json!({"token": gpu, "number": job["number"], "count": 1});
            complete_ok(&tracker, &complete).await;
        }

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while blobs.iter().any(|blob| blob.exists()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: a failed row deletion stopped the collection of the other bundle"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            count_blob_rows(&tracker).await,
            2,
            "{backend:?}: the rows could not go"
        );
        stop_failing(&tracker, backend).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count_blob_rows(&tracker).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: the rows were not deleted once the database could write"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracker.stop().await;
    }
}

/// Makes every statement matched by trigger timing `when` (`BEFORE UPDATE OF x ON t`) fail, as
/// statements fail on a database whose disk is full.
async fn fail_statements(tracker: &TestTracker, backend: Backend, when: &str) {
    match backend {
        Backend::Sqlite => {
            let sql = format!(
                "CREATE TRIGGER cah_test_fail {when} BEGIN \
                 SELECT RAISE(ABORT, 'database or disk is full'); END"
            );
            execute(&tracker.database_url, &sql).await;
        }
        Backend::Postgres => {
            execute(
                &tracker.database_url,
                "CREATE FUNCTION cah_test_fail() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
            )
            .await;
            let sql = format!(
                "CREATE TRIGGER cah_test_fail {when} FOR EACH ROW EXECUTE FUNCTION cah_test_fail()"
            );
            execute(&tracker.database_url, &sql).await;
        }
    }
}

/// Undoes [`fail_statements`] on `blobs`.
async fn stop_failing(tracker: &TestTracker, backend: Backend) {
    let sql = match backend {
        Backend::Sqlite => "DROP TRIGGER cah_test_fail",
        Backend::Postgres => "DROP TRIGGER cah_test_fail ON blobs",
    };
    execute(&tracker.database_url, sql).await;
}

async fn complete_ok(tracker: &TestTracker, request: &Value) {
    let (status, body) = tracker.post("/api/ext/complete", request).await;
    assert_eq!(status, 200, "{request}: {body}");
}

async fn validate(tracker: &TestTracker, token: &str) -> bool {
    let (status, body) = tracker
        .post("/api/validateWorker", &json!({"token": token}))
        .await;
    assert_eq!(status, 200, "{body}");
    body.trim() == "True"
}

async fn last_seen(tracker: &TestTracker, token: &str) -> i64 {
    let db = Db::connect(&tracker.database_url, 1).await.expect("db");
    let last_seen: i64 = sqlx::query_scalar("SELECT last_seen FROM clients WHERE token = $1")
        .bind(token)
        .fetch_one(db.pool())
        .await
        .expect("client row");
    db.close().await;
    last_seen
}

async fn count_blob_rows(tracker: &TestTracker) -> i64 {
    let db = Db::connect(&tracker.database_url, 1).await.expect("db");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blobs")
        .fetch_one(db.pool())
        .await
        .expect("count");
    db.close().await;
    rows
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("fits")
}
