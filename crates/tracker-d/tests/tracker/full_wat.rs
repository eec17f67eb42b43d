//! The 2021 full-WAT client flow (`/custom/*`), now with the reservation 2021 lacked.

use super::support;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

/// `/custom/markasdone-cpu` for `numbers`, each handed off as an rsync path, as 2021's
/// FullWATClient sends it.
async fn mark_done(tracker: &TestTracker, numbers: &[u64], nickname: &str, token: &str) -> Value {
    let urls: serde_json::Map<String, Value> = numbers
        .iter()
        .map(|number| (number.to_string(), json!(format!("rsync {number:032x}"))))
        .collect();
    tracker
        .post_ok(
            "/custom/markasdone-cpu",
            &json!({"shards": numbers, "urls": urls, "nickname": nickname, "token": token}),
        )
        .await
}

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

        let done: Value = mark_done(&tracker, &numbers, "fullwat", &token).await;
        assert_eq!(
            done,
            json!({"status": "success", "completed": 2}),
            "{backend:?}"
        );
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "2");
        let repeat: Value = mark_done(&tracker, &numbers, "fullwat", &token).await;
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

#[tokio::test]
async fn markasdone_cpu_completes_only_the_callers_jobs() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        // Two clients behind one address (every test client is 127.0.0.1).
        let alice = tracker.register("alice", "CPU").await;
        let mallory = tracker.register("mallory", "CPU").await;
        let lookup: Value = tracker
            .post_ok(
                "/custom/lookup-wat",
                &json!({"url": "http://cc.test/wat/0.warc.wat.gz", "token": alice}),
            )
            .await;
        assert_eq!(lookup["status"], "success", "{backend:?}: {lookup}");
        let mut numbers: Vec<u64> = lookup["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|shard| shard[0].as_u64().unwrap())
            .collect();
        // And one job alice claimed through the extension API.
        let claimed = tracker.claim(&alice, 1, false).await;
        numbers.push(claimed[0]["number"].as_u64().unwrap());
        // At most two shards per call.
        for shards in numbers.chunks(2) {
            let stolen: Value = mark_done(&tracker, shards, "mallory", &mallory).await;
            assert_eq!(stolen["completed"], 0, "{backend:?}: {stolen}");
        }
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "0");
        let mut completed = 0;
        for shards in numbers.chunks(2) {
            let done: Value = mark_done(&tracker, shards, "alice", &alice).await;
            completed += done["completed"].as_u64().expect("completed");
        }
        assert_eq!(completed, 3, "{backend:?}");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn tokenless_reservations_stay_completable_from_their_address() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        // Two 2021 full-WAT processes on one machine: each registers, then looks up without
        // its token, so either reservation may land on either client.
        let first = tracker.register("fullwat", "CPU").await;
        let second = tracker.register("fullwat", "CPU").await;
        let mut reservations = Vec::new();
        for index in 0..2 {
            let url = format!("http://cc.test/wat/{index}.warc.wat.gz");
            let lookup: Value = tracker
                .post_ok("/custom/lookup-wat", &json!({"url": url}))
                .await;
            assert_eq!(lookup["status"], "success", "{backend:?}: {lookup}");
            let numbers: Vec<u64> = lookup["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|shard| shard[0].as_u64().unwrap())
                .collect();
            reservations.push(numbers);
        }
        // Each process reports the shards its client does *not* hold, the worst case.
        let holds = |token: &str| {
            let token = token.to_owned();
            let tracker = &tracker;
            async move {
                let heartbeat: Value = tracker
                    .post_ok(
                        "/api/ext/heartbeat",
                        &json!({"token": token, "progress": "x"}),
                    )
                    .await;
                heartbeat["jobs"].clone()
            }
        };
        let first_holds = holds(&first).await;
        for numbers in &reservations {
            let caller = if first_holds == json!(numbers) {
                &second
            } else {
                &first
            };
            let done: Value = mark_done(&tracker, numbers, "fullwat", caller).await;
            assert_eq!(done["completed"], 2, "{backend:?}: {done}");
        }
        assert_eq!(tracker.get("/api/jobCount?type=GPU").await.1, "4");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn markasdone_cpu_is_capped_and_checks_every_shard_before_completing_any() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(2, 0).await;
        let token = tracker.register("fullwat", "CPU").await;
        let numbers: Vec<u64> = tracker
            .claim(&token, 4, false)
            .await
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers.len(), 4);
        let urls = |handoffs: &[(u64, String)]| -> serde_json::Map<String, Value> {
            handoffs
                .iter()
                .map(|(number, url)| (number.to_string(), json!(url)))
                .collect()
        };
        let rsync = |number: u64| format!("rsync {number:032x}");
        let three: Vec<(u64, String)> = numbers[..3].iter().map(|n| (*n, rsync(*n))).collect();
        let (status, text) = tracker
            .post(
                "/custom/markasdone-cpu",
                &json!({"shards": &numbers[..3], "urls": urls(&three), "nickname": "n", "token": token}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: {text}");
        // The second shard's handoff is refused: the first is not completed either.
        let mixed = [
            (numbers[0], rsync(numbers[0])),
            (numbers[1], "x".repeat(3000)),
        ];
        let (status, text) = tracker
            .post(
                "/custom/markasdone-cpu",
                &json!({"shards": &numbers[..2], "urls": urls(&mixed), "nickname": "n", "token": token}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: {text}");
        assert_eq!(
            tracker.job_states().await,
            [("cpu".to_owned(), "pending".to_owned(), 4)],
            "{backend:?}: nothing was completed"
        );
        let done = mark_done(&tracker, &numbers[..2], "n", &token).await;
        assert_eq!(done["completed"], 2, "{backend:?}: {done}");
        tracker.stop().await;
    }
}

/// Makes the guarded update that hands off job `number` find no row, as when the reaper took
/// its lease between a request's checks and its completions.
async fn lose_lease_at_handoff(tracker: &TestTracker, backend: support::Backend, number: u64) {
    let url = &tracker.database_url;
    match backend {
        support::Backend::Sqlite => {
            tracker_d::testing::execute(
                url,
                &format!(
                    "CREATE TRIGGER lose_lease BEFORE UPDATE ON jobs \
                     WHEN OLD.number = {number} AND NEW.stage = 'gpu' \
                     BEGIN SELECT RAISE(IGNORE); END"
                ),
            )
            .await;
        }
        support::Backend::Postgres => {
            tracker_d::testing::execute(
                url,
                "CREATE FUNCTION lose_lease() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RETURN NULL; END $$",
            )
            .await;
            tracker_d::testing::execute(
                url,
                &format!(
                    "CREATE TRIGGER lose_lease BEFORE UPDATE ON jobs FOR EACH ROW \
                     WHEN (OLD.number = {number} AND NEW.stage = 'gpu') EXECUTE FUNCTION lose_lease()"
                ),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn markasdone_cpu_completes_both_halves_or_neither() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        let token = tracker.register("fullwat", "CPU").await;
        let numbers: Vec<u64> = tracker
            .claim(&token, 2, false)
            .await
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers.len(), 2);
        // Both halves pass the checks; the second's lease is gone when it is completed.
        lose_lease_at_handoff(&tracker, backend, numbers[1]).await;
        let urls: serde_json::Map<String, Value> = numbers
            .iter()
            .map(|number| (number.to_string(), json!(format!("rsync {number:032x}"))))
            .collect();
        let (status, text) = tracker
            .post(
                "/custom/markasdone-cpu",
                &json!({"shards": numbers, "urls": urls, "nickname": "fullwat", "token": token}),
            )
            .await;
        // The 2021 API's answer for a job no longer held.
        assert_eq!(status, 403, "{backend:?}: {text}");
        assert_eq!(
            tracker.job_states().await,
            [("cpu".to_owned(), "pending".to_owned(), 2)],
            "{backend:?}: the first half's handoff was rolled back with the second's"
        );
        let (_, leaderboard) = tracker.get("/leaderboard").await;
        assert!(
            leaderboard.contains("leaderboard-gpu") && !leaderboard.contains("fullwat"),
            "{backend:?}: no credit for a refused request: {leaderboard}"
        );
        let drop = match backend {
            support::Backend::Sqlite => "DROP TRIGGER lose_lease",
            support::Backend::Postgres => "DROP TRIGGER lose_lease ON jobs",
        };
        tracker_d::testing::execute(&tracker.database_url, drop).await;
        let done = mark_done(&tracker, &numbers, "fullwat", &token).await;
        assert_eq!(done["completed"], 2, "{backend:?}: {done}");
        tracker.stop().await;
    }
}
