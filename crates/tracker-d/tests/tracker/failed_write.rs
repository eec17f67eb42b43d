//! A write that SQLite rolled back itself (here a full disk under the database) leaves later
//! writes committing once there is room again: the connection is replaced after a failed
//! statement, so no request is answered 200 for a change that never reaches the database.

use super::support;

use std::io::Write;
use std::path::Path;

use serde_json::json;
use support::{Backend, TestTracker, fresh_database};
use tracker_d::testing::{SmallDisk, execute};

/// The tmpfs under the database: room for the database, its journal and some growth.
const DISK_BYTES: u64 = 4 * 1024 * 1024;

// Says on stderr when it cannot mount the disk it needs, and what it checks instead.
#[allow(clippy::print_stderr)]
#[tokio::test]
async fn completions_after_a_full_disk_are_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("db"), DISK_BYTES) else {
        eprintln!(
            "cannot mount a tmpfs here (not root?): refusing a write with a trigger's \
             RAISE(ROLLBACK) instead of filling a real disk"
        );
        let database_url = fresh_database(Backend::Sqlite, dir.path()).await;
        return check(dir, database_url, None).await;
    };
    let database_url = fresh_database(Backend::Sqlite, disk.path()).await;
    let filler = disk.path().join("filler");
    check(dir, database_url, Some(&filler)).await;
    drop(disk);
}

/// Four clients claim, upload and complete while the disk under the database fills for 2 s
/// and is freed again: every completion answered 200 must be in the database, as another
/// connection reads it. (Before the connection was replaced after a failed statement, the
/// tracker went on answering 200 to writes that never committed: 851 answered, 152 stored.)
// Says on stderr when it cannot mount the disk it needs.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_completion_answered_during_and_after_a_full_disk_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("db"), DISK_BYTES) else {
        eprintln!("cannot mount a tmpfs here (not root?): the full-disk load is not checked");
        return;
    };
    let database_url = fresh_database(Backend::Sqlite, disk.path()).await;
    let tracker = std::sync::Arc::new(TestTracker::start_on(dir, database_url, &[]).await);
    tracker.import(200, 0).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let tracker = std::sync::Arc::clone(&tracker);
        workers.push(tokio::spawn(async move {
            let token = tracker.register(&format!("w{worker}"), "CPU").await;
            let mut answered = Vec::new();
            while tokio::time::Instant::now() < deadline {
                if let Some(number) = complete_one(&tracker, &token).await {
                    answered.push(number);
                }
            }
            answered
        }));
    }
    let filler = disk.path().join("filler");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    fill(&filler);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    std::fs::remove_file(&filler).expect("free the disk");
    let mut answered = Vec::new();
    for worker in workers {
        answered.extend(worker.await.expect("worker"));
    }
    let stored: Vec<i64> = {
        let db = tracker_d::db::Db::connect(&tracker.database_url, 1)
            .await
            .expect("db");
        let numbers = sqlx::query_scalar("SELECT number FROM jobs WHERE stage = 'gpu'")
            .fetch_all(db.pool())
            .await
            .expect("completed jobs");
        db.close().await;
        numbers
    };
    assert!(
        answered.len() > 20,
        "too little traffic to tell: {}",
        answered.len()
    );
    let lost: Vec<u64> = answered
        .iter()
        .copied()
        .filter(|number| !stored.contains(&(*number as i64)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} completions answered 200 are not stored: {lost:?}",
        lost.len(),
        answered.len()
    );
    drop(disk);
}

/// One claim, upload and completion; the job number when the completion was answered 200.
async fn complete_one(tracker: &TestTracker, token: &str) -> Option<u64> {
    let (status, text) = tracker
        .post(
            "/api/ext/claim",
            &json!({"token": token, "max_jobs": 1, "whole_wat": false}),
        )
        .await;
    let claimed: serde_json::Value = serde_json::from_str(&text).ok().filter(|_| status == 200)?;
    let number = claimed["jobs"].get(0)?["number"].as_u64()?;
    let (status, text) = tracker
        .post(
            "/api/ext/uploadUrl",
            &json!({"token": token, "number": number}),
        )
        .await;
    let issued: serde_json::Value = serde_json::from_str(&text).ok().filter(|_| status == 200)?;
    let put = tracker
        .http
        .put(issued["put_url"].as_str()?)
        .body(vec![7u8; 512])
        .send()
        .await
        .ok()?;
    if put.status() != 200 {
        return None;
    }
    let handoff = format!("blob:{}", issued["key"].as_str()?);
    let (status, _) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": token, "number": number, "bundle": handoff}),
        )
        .await;
    (status == 200).then_some(number)
}

/// Completes a first job while its write must fail (the disk under the database full, or a
/// trigger refusing it), then a job not held (a transaction rolled back by the tracker), then a
/// second job, which another connection must see completed.
async fn check(dir: tempfile::TempDir, database_url: String, filler: Option<&Path>) {
    let tracker = TestTracker::start_on(dir, database_url, &[]).await;
    tracker.import(2, 0).await;
    let cpu = tracker.register("scraper", "CPU").await;
    let numbers: Vec<u64> = tracker
        .claim(&cpu, 3, false)
        .await
        .iter()
        .map(|job| job["number"].as_u64().expect("number"))
        .collect();
    let (refused, later) = (numbers[0], numbers[1]);
    let not_claimed = (1..=4).find(|n| !numbers.contains(n)).expect("a free job");
    let first = tracker.upload(&cpu, refused, vec![1; 64]).await;
    let second = tracker.upload(&cpu, later, vec![2; 64]).await;

    match filler {
        Some(filler) => fill(filler),
        None => {
            execute(
                &tracker.database_url,
                &format!(
                    "CREATE TRIGGER refuse_one BEFORE UPDATE OF stage ON jobs \
                     WHEN OLD.number = {refused} AND NEW.stage <> OLD.stage \
                     BEGIN SELECT RAISE(ROLLBACK, 'refused by the test'); END"
                ),
            )
            .await;
        }
    }
    let (status, body) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": refused, "bundle": first}),
        )
        .await;
    assert!(status >= 500, "{status} {body}");
    if let Some(filler) = filler {
        std::fs::remove_file(filler).expect("free the disk");
    }

    let (status, body) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": not_claimed, "bundle": "blob:none"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": later, "bundle": second}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let states = tracker.job_states().await;
    assert!(
        states.contains(&("gpu".to_owned(), "open".to_owned(), 1)),
        "the completion answered 200 is not in the database: {states:?}"
    );
    tracker.stop().await;
}

/// Writes `path` until the disk is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.flush();
}
