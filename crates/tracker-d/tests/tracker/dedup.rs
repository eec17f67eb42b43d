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

async fn add(tracker: &TestTracker, token: &str, set: &str, hashes: &[u64]) -> (u16, String) {
    tracker
        .post(
            "/api/ext/dedup",
            &json!({"token": token, "set": set, "hashes": hashes, "add": true}),
        )
        .await
}

#[tokio::test]
async fn clients_add_only_to_the_sets_of_their_role() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let gpu = tracker.register("scorer", "GPU").await;
        let hybrid = tracker.register("both", "HYBRID").await;
        for set in ["clipped", "main"] {
            let (status, text) = add(&tracker, &cpu, set, &[1, 2]).await;
            assert_eq!(status, 403, "{backend:?} {set}: {text}");
            assert!(
                text.contains(&format!("CPU clients may not add to the {set} set")),
                "{text}"
            );
            assert_eq!(
                check(&tracker, &cpu, set, &[1, 2], false).await,
                [true, true],
                "{backend:?}: checking stays open, and the refused add added nothing"
            );
        }
        assert_eq!(check(&tracker, &cpu, "parsed", &[1], true).await, [true]);
        for set in ["clipped", "main"] {
            assert_eq!(check(&tracker, &gpu, set, &[1], true).await, [true]);
        }
        let (status, text) = add(&tracker, &gpu, "parsed", &[7]).await;
        assert_eq!(status, 403, "{backend:?}: {text}");
        assert!(
            text.contains("GPU clients may not add to the parsed set"),
            "{text}"
        );
        for set in ["parsed", "clipped", "main"] {
            assert_eq!(check(&tracker, &hybrid, set, &[2], true).await, [true]);
        }
        let (_, metrics) = tracker.get("/metrics").await;
        assert!(
            metrics.contains("tracker_dedup_refused_total 3"),
            "{metrics}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn additions_are_bounded_by_the_jobs_a_client_completed_or_holds() {
    const PER_JOB: u64 = 1_000;
    for backend in BACKENDS {
        let tracker = TestTracker::start(
            backend,
            &["--dedup-per-job", "1000", "--dedup-start", "1000"],
        )
        .await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("scraper", "CPU").await;
        let mut next = 0_u64;
        let mut fresh = |n: u64| {
            let hashes: Vec<u64> = (next..next + n).collect();
            next += n;
            hashes
        };
        // Without a job, the address's start allowance.
        let first = fresh(PER_JOB / 2);
        assert_eq!(add(&tracker, &cpu, "parsed", &first).await.0, 200);
        let flags = check(&tracker, &cpu, "parsed", &first, true).await;
        assert!(
            flags.iter().all(|new| !new),
            "{backend:?}: adding them again adds nothing"
        );
        let (status, text) = add(&tracker, &cpu, "parsed", &fresh(PER_JOB / 2)).await;
        assert_eq!(
            status, 200,
            "{backend:?}: hashes that were not new cost nothing: {text}"
        );
        let refused = fresh(1);
        let (status, text) = add(&tracker, &cpu, "parsed", &refused).await;
        assert_eq!(status, 403, "{backend:?}: {text}");
        assert!(text.contains("dedup quota reached"), "{text}");
        assert!(
            check(&tracker, &cpu, "parsed", &refused, false).await[0],
            "the refused hash was not added"
        );
        // Each set has its own quota.
        let gpu = tracker.register("scorer", "GPU").await;
        assert_eq!(add(&tracker, &gpu, "clipped", &fresh(PER_JOB)).await.0, 200);
        assert_eq!(add(&tracker, &gpu, "main", &fresh(PER_JOB)).await.0, 200);
        assert_eq!(add(&tracker, &gpu, "main", &fresh(1)).await.0, 403);

        // A held job allows one more job's worth, and completing it keeps that.
        let jobs = tracker.claim(&cpu, 1, false).await;
        assert_eq!(jobs.len(), 1);
        let number = jobs[0]["number"].as_u64().unwrap();
        assert_eq!(
            add(&tracker, &cpu, "parsed", &fresh(PER_JOB / 2)).await.0,
            200
        );
        let bundle = tracker.upload(&cpu, number, b"bundle".to_vec()).await;
        let (status, text) = tracker
            .post(
                "/api/ext/complete",
                &json!({"token": cpu, "number": number, "bundle": bundle}),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            add(&tracker, &cpu, "parsed", &fresh(PER_JOB / 2)).await.0,
            200
        );
        assert_eq!(add(&tracker, &cpu, "parsed", &fresh(1)).await.0, 403);

        // A restarted tracker counts anew, and still knows the jobs the client completed.
        let (dir, database_url) = tracker.stop().await;
        let tracker = TestTracker::start_on(
            dir,
            database_url,
            &["--dedup-per-job", "1000", "--dedup-start", "1000"],
        )
        .await;
        assert_eq!(
            add(&tracker, &cpu, "parsed", &fresh(2 * PER_JOB)).await.0,
            200
        );
        assert_eq!(add(&tracker, &cpu, "parsed", &fresh(1)).await.0, 403);
        let (_, metrics) = tracker.get("/metrics").await;
        assert!(
            metrics.contains("tracker_dedup_refused_total 1"),
            "{metrics}"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn registering_again_buys_no_more_additions() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        tracker.import(1, 0).await;
        // The default start allowance, 20,000 hashes per set, is shared by the address.
        let start: Vec<u64> = (0..20_000).collect();
        for (client_type, set) in [("CPU", "parsed"), ("GPU", "main"), ("GPU", "clipped")] {
            let first = tracker.register("fresh", client_type).await;
            let (status, text) = add(&tracker, &first, set, &start).await;
            assert_eq!(status, 200, "{backend:?} {set}: {text}");
            for _ in 0..3 {
                let again = tracker.register("fresh", client_type).await;
                let (status, text) = add(&tracker, &again, set, &[1 << 40]).await;
                assert_eq!(
                    status, 403,
                    "{backend:?} {set}: a new token adds nothing: {text}"
                );
            }
        }
        // A scraper that holds a job adds that job's pairs.
        let scraper = tracker.register("scraper", "CPU").await;
        assert_eq!(tracker.claim(&scraper, 1, false).await.len(), 1);
        let pairs: Vec<u64> = (1 << 40..(1 << 40) + 30_000).collect();
        let (status, text) = add(&tracker, &scraper, "parsed", &pairs).await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        tracker.stop().await;
    }
}

/// Adds fresh hashes to `set` in batches of `batch` until refused; returns how many were added.
async fn add_until_refused(
    tracker: &TestTracker,
    token: &str,
    set: &str,
    batch: u64,
    next: &mut u64,
) -> u64 {
    let mut added = 0;
    loop {
        let hashes: Vec<u64> = (*next..*next + batch).collect();
        *next += batch;
        let (status, text) = add(tracker, token, set, &hashes).await;
        if status != 200 {
            assert_eq!(status, 403, "{text}");
            assert!(text.contains("dedup quota reached"), "{text}");
            return added;
        }
        added += batch;
        assert!(added <= 1_000_000, "no quota at all");
    }
}

async fn close(tracker: &TestTracker, token: &str, number: u64) {
    let (status, text) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": token, "number": number, "count": 0}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn holding_jobs_without_completing_them_buys_two_jobs_worth_per_address() {
    const PER_JOB: u64 = 1_000;
    for backend in BACKENDS {
        let tracker = TestTracker::start(
            backend,
            &["--dedup-per-job", "1000", "--dedup-start", "1000"],
        )
        .await;
        tracker.import(80, 0).await;
        let mut next = 1_u64 << 40;
        let mut fresh = |n: u64| {
            let hashes: Vec<u64> = (next..next + n).collect();
            next += n;
            hashes
        };
        // clip-gpu-d's way: scored pairs to `clipped` while it holds the jobs, a shard to
        // `main`, then the completions, which pay the debt back.
        let scorer = tracker.register("scorer", "HYBRID").await;
        for _ in 0..2 {
            let jobs = tracker.claim(&scorer, 8, false).await;
            assert_eq!(jobs.len(), 8);
            for _ in &jobs[..4] {
                let (status, text) = add(&tracker, &scorer, "clipped", &fresh(700)).await;
                assert_eq!(status, 200, "{backend:?}: {text}");
            }
            let (status, text) = add(&tracker, &scorer, "main", &fresh(900)).await;
            assert_eq!(status, 200, "{backend:?}: {text}");
            for job in &jobs {
                close(&tracker, &scorer, job["number"].as_u64().unwrap()).await;
            }
        }

        // The attack: a fresh registration claims the cap of 64 jobs, adds on their strength,
        // releases them, and registers again.
        let mut added = Vec::new();
        for round in 0..2 {
            let hoarder = tracker.register(&format!("hoarder{round}"), "HYBRID").await;
            let jobs = tracker.claim(&hoarder, 1000, false).await;
            assert_eq!(jobs.len(), 64, "{backend:?}");
            added.push(add_until_refused(&tracker, &hoarder, "main", 500, &mut next).await);
            for job in &jobs {
                let (status, _) = tracker
                    .post(
                        "/api/ext/release",
                        &json!({"token": hoarder, "number": job["number"]}),
                    )
                    .await;
                assert_eq!(status, 200);
            }
        }
        assert_eq!(
            added,
            [3 * PER_JOB, 0],
            "{backend:?}: the start allowance and two held jobs' worth, once per address"
        );
        // A completion pays back its own client's debt, not a neighbour's.
        let worker = tracker.register("worker", "HYBRID").await;
        let jobs = tracker.claim(&worker, 1, false).await;
        close(&tracker, &worker, jobs[0]["number"].as_u64().unwrap()).await;
        assert_eq!(
            add_until_refused(&tracker, &worker, "main", 500, &mut next).await,
            PER_JOB,
            "{backend:?}"
        );
        tracker.stop().await;
    }
}
