//! The reads anyone may poll without a token cost the database the same however often they are polled.

use super::support;

use std::sync::Arc;
use std::time::Duration;

use cah_protocol::ClientType;
use serde_json::{Value, json};
use support::{BACKENDS, Backend, TestTracker, fresh_database};
use tracker_d::db::{Db, now_ms};
use tracker_d::testing::{execute, import_urls};
use tracker_d::{clients, dedup, jobs, stats};

async fn listed(tracker: &TestTracker, query: &str) -> Vec<Value> {
    let (status, text) = tracker.get(&format!("/api/ext/clients{query}")).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("json list")
}

#[tokio::test]
async fn tokenless_reads_are_counted_once_per_ttl() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &["--read-cache-ttl", "1h"]).await;
        tracker.import(2, 0).await;
        let first = tracker.register("first", "CPU").await;
        assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "4");
        assert_eq!(listed(&tracker, "").await.len(), 1, "{backend:?}");
        let (_, data) = tracker.get("/data").await;

        // Changes each of those answers would show if it were counted again.
        assert_eq!(tracker.claim(&first, 1, false).await.len(), 1);
        tracker.register("second", "GPU").await;
        assert_eq!(
            tracker.get("/api/jobCount?type=CPU").await.1,
            "4",
            "{backend:?}: the count of an hour ago"
        );
        assert_eq!(
            tracker.get("/api/jobCount?type=HYBRID").await.1,
            "4",
            "{backend:?}: HYBRID clients count the same CPU jobs"
        );
        for query in ["", "?limit=10000", "?limit=1"] {
            let clients = listed(&tracker, query).await;
            assert_eq!(
                clients.len(),
                1,
                "{backend:?} {query}: the listing of an hour ago"
            );
            assert_eq!(clients[0]["nickname"], "first");
        }
        assert_eq!(tracker.get("/data").await.1, data, "{backend:?}");
        let (dir, database_url) = tracker.stop().await;

        // Without the cache (as the other tests run), every read counts.
        let tracker = TestTracker::start_on(dir, database_url, &[]).await;
        assert_eq!(tracker.get("/api/jobCount?type=CPU").await.1, "3");
        assert_eq!(listed(&tracker, "").await.len(), 2, "{backend:?}");
        tracker.stop().await;
    }
}

/// `tracker_dedup_entries{set="main"}` as `/metrics` shows it.
async fn main_set_size(tracker: &TestTracker) -> u64 {
    let (_, metrics) = tracker.get("/metrics").await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("tracker_dedup_entries{set=\"main\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    line.rsplit(' ').next().unwrap().parse().expect("a number")
}

async fn add(tracker: &TestTracker, token: &str, hashes: &[u64]) -> Vec<bool> {
    let answer: Value = tracker
        .post_ok(
            "/api/ext/dedup",
            &json!({"token": token, "set": "main", "hashes": hashes, "add": true}),
        )
        .await;
    serde_json::from_value(answer["new"].clone()).expect("flags")
}

/// The dedup sizes on the dashboard are counters that each addition keeps, not counts of the
/// sets (a count of a billion entries took half a minute), exact under concurrent additions.
/// (`db::schema`'s tests check that the migration counts what a database held before.)
#[tokio::test]
async fn dedup_sizes_are_kept_by_each_addition_not_counted() {
    for backend in BACKENDS {
        let tracker = Arc::new(TestTracker::start(backend, &[]).await);
        let token = tracker.register("scorer", "GPU").await;
        let hashes: Vec<u64> = (0..2_000).map(|i| i * 7_919).collect();
        let mut additions = Vec::new();
        for worker in 0..8 {
            let (tracker, token, mut mine) = (Arc::clone(&tracker), token.clone(), hashes.clone());
            mine.rotate_left(worker * 250);
            additions.push(tokio::spawn(
                async move { add(&tracker, &token, &mine).await },
            ));
        }
        for addition in additions {
            addition.await.expect("addition");
        }
        assert_eq!(main_set_size(&tracker).await, 2_000, "{backend:?}");

        // Rows another process writes are not seen: the size is read, not counted.
        let database_url = tracker.database_url.clone();
        execute(
            &database_url,
            "INSERT INTO dedup (set_id, hash) VALUES (3, -1), (3, -2)",
        )
        .await;
        assert_eq!(main_set_size(&tracker).await, 2_000, "{backend:?}");
        assert_eq!(
            add(&tracker, &token, &[0, 5, 6, 6]).await,
            [false, true, true, false]
        );
        assert_eq!(main_set_size(&tracker).await, 2_002, "{backend:?}");
        let tracker = Arc::into_inner(tracker).expect("sole owner");
        tracker.stop().await;
    }
}

/// On SQLite every write goes through one connection: the tokenless reads have connections of
/// their own, so a recount of a large database never holds up a claim (and a busy writer never
/// holds up the dashboard).
#[tokio::test]
async fn tokenless_reads_never_need_the_sqlite_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database(Backend::Sqlite, dir.path()).await;
    import_urls(
        &database_url,
        &["http://cc.test/wat/0.warc.wat.gz".to_owned()],
    )
    .await;
    let db = Db::connect(&database_url, 1).await.expect("db");
    clients::register(&db, "nick", ClientType::Cpu, "127.0.0.1", now_ms())
        .await
        .expect("register");
    let writer = db
        .pool()
        .acquire()
        .await
        .expect("the one writer connection");
    let reads = async {
        let stats = stats::collect(&db).await.expect("stats");
        assert_eq!((stats.total_jobs, stats.connected()), (2, 1));
        assert_eq!(
            jobs::open_count(&db, jobs::Stage::Cpu)
                .await
                .expect("count"),
            2
        );
        assert_eq!(clients::recent(&db, 10).await.expect("recent").len(), 1);
        assert_eq!(dedup::sizes(&db).await.expect("sizes").len(), 3);
        assert!(jobs::open_wat_url(&db).await.expect("wat").is_some());
    };
    tokio::time::timeout(Duration::from_secs(5), reads)
        .await
        .expect("the reads did not wait for the writer");
    // They cannot write either.
    let refused = sqlx::query("DELETE FROM jobs")
        .execute(db.read_pool())
        .await;
    assert!(refused.is_err(), "{refused:?}");
    drop(writer);
    db.close().await;
}
