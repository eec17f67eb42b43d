//! Concurrent whole-WAT claims: each gets both halves of one WAT or nothing, never one half of
//! a WAT whose other half went to a rival, and none comes back empty while WATs are left.

use super::support;

use std::collections::HashMap;
use std::sync::Arc;

use support::{BACKENDS, Backend, TestTracker};
use tokio::sync::Barrier;
use tracker_d::db::{Db, now_ms};
use tracker_d::jobs::{self, ClaimedJob};

const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_whole_wat_claims_get_both_halves_of_one_wat() {
    for backend in BACKENDS {
        // More claims than WATs: the WATs run out under contention.
        race(backend, 40, 100).await;
        // Fewer claims than WATs: every claim must get a WAT, none is left empty-handed by a
        // rival that took the WAT it had picked.
        race(backend, 100, 40).await;
    }
}

/// `ROUNDS` times: imports `n_wats` WATs, starts `n_claims` whole-WAT claims at once, then
/// claims what is left one at a time.
async fn race(backend: Backend, n_wats: usize, n_claims: usize) {
    let tracker = TestTracker::start(backend, &[]).await;
    // A pool of its own, wide enough that every claim runs its statement at the same time.
    let db = Arc::new(
        Db::connect(&tracker.database_url, n_claims as u32)
            .await
            .expect("db"),
    );
    let mut given: HashMap<u64, String> = HashMap::new();
    for round in 0..ROUNDS {
        tracker.import(n_wats, round * n_wats).await;
        // The import ran beside this pool: claims must scan from the bottom, as after a reap.
        db.open_floor().reset();
        let barrier = Arc::new(Barrier::new(n_claims));
        let mut tasks = Vec::new();
        for claim in 0..n_claims {
            let db = Arc::clone(&db);
            let barrier = Arc::clone(&barrier);
            let holder = format!("holder-{round}-{claim}");
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let jobs = jobs::claim_whole_wat(&db, &holder, now_ms() + 60_000)
                    .await
                    .expect("claim");
                (holder, jobs)
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("claim task"));
        }
        for (holder, jobs) in &answers {
            assert_whole(backend, holder, jobs);
        }
        let n_served = answers.iter().filter(|(_, jobs)| !jobs.is_empty()).count();
        assert_eq!(
            n_served,
            n_claims.min(n_wats),
            "{backend:?} round {round}: {n_claims} claims over {n_wats} WATs"
        );
        loop {
            let holder = format!("holder-{round}-late-{}", answers.len());
            let jobs = jobs::claim_whole_wat(&db, &holder, now_ms() + 60_000)
                .await
                .expect("claim");
            if jobs.is_empty() {
                break;
            }
            answers.push((holder, jobs));
        }
        for (holder, jobs) in &answers {
            assert_whole(backend, holder, jobs);
            for job in jobs {
                if let Some(first) = given.insert(job.number, holder.clone()) {
                    panic!(
                        "{backend:?}: job {} given to {first} and {holder}",
                        job.number
                    );
                }
            }
        }
        assert_eq!(
            given.len(),
            2 * n_wats * (round + 1),
            "{backend:?} round {round}: every job is claimed once"
        );
    }
    db.close().await;
    tracker.stop().await;
}

/// Nothing, or the two halves of one WAT.
fn assert_whole(backend: Backend, holder: &str, jobs: &[ClaimedJob]) {
    if jobs.is_empty() {
        return;
    }
    let halves: Vec<(&str, u8)> = jobs
        .iter()
        .map(|job| (job.url.as_str(), job.shard))
        .collect();
    assert!(
        jobs.len() == 2 && jobs[0].url == jobs[1].url && jobs[0].shard != jobs[1].shard,
        "{backend:?}: {holder} got {halves:?}, not both halves of one WAT"
    );
}
