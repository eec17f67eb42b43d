//! Hundreds of simulated workers claim, heartbeat, complete and crash at once: no job is ever
//! held by two live workers, none is lost, and each is completed exactly once per stage.

use super::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{BACKENDS, Backend, TestTracker};

const WATS: usize = 150;
const CPU_WORKERS: usize = 150;
const GPU_WORKERS: usize = 50;

#[derive(Default)]
struct Ledger {
    handoffs: HashMap<u64, u32>,
    closes: HashMap<u64, u32>,
    crashes: u32,
    refused_live_completions: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_of_workers_completes_every_job_exactly_once() {
    for backend in BACKENDS {
        swarm(backend).await;
    }
}

async fn swarm(backend: Backend) {
    let tracker =
        Arc::new(TestTracker::start(backend, &["--lease", "1s", "--reap-interval", "100ms"]).await);
    tracker.import(WATS, 0).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut workers = Vec::new();
    for index in 0..CPU_WORKERS + GPU_WORKERS {
        let tracker = Arc::clone(&tracker);
        let ledger = Arc::clone(&ledger);
        let kind = if index < CPU_WORKERS { "CPU" } else { "GPU" };
        workers.push(tokio::spawn(worker(
            tracker,
            ledger,
            kind,
            index as u64,
            deadline,
        )));
    }
    for worker in workers {
        worker.await.expect("worker task");
    }
    let ledger = Arc::into_inner(ledger)
        .expect("workers done")
        .into_inner()
        .expect("lock");
    let jobs = (WATS * 2) as u64;
    assert!(
        ledger.refused_live_completions.is_empty(),
        "{backend:?}: a live holder lost its job: {:?}",
        ledger.refused_live_completions
    );
    assert_eq!(
        ledger.handoffs.len() as u64,
        jobs,
        "{backend:?}: every job scraped"
    );
    assert_eq!(
        ledger.closes.len() as u64,
        jobs,
        "{backend:?}: every job scored"
    );
    assert!(
        ledger
            .handoffs
            .values()
            .chain(ledger.closes.values())
            .all(|n| *n == 1),
        "{backend:?}: exactly once"
    );
    assert!(ledger.crashes > 0, "the drill crashed some workers");
    let tracker = Arc::into_inner(tracker).expect("sole owner");
    assert_eq!(
        tracker.job_states().await,
        vec![("gpu".into(), "closed".into(), jobs as i64)]
    );
    tracker.stop().await;
}

/// One simulated worker; it "crashes" (abandons its job and re-registers) on about one cycle in 25.
async fn worker(
    tracker: Arc<TestTracker>,
    ledger: Arc<Mutex<Ledger>>,
    kind: &'static str,
    seed: u64,
    deadline: Instant,
) {
    let mut token = tracker.register(&format!("worker-{seed}"), kind).await;
    let mut cycle = seed;
    loop {
        assert!(
            Instant::now() < deadline,
            "the swarm did not finish in time"
        );
        let jobs = tracker.claim(&token, 1, false).await;
        let Some(job) = jobs.first() else {
            if all_closed(&tracker).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        };
        let number = job["number"].as_u64().expect("number");
        cycle = cycle
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if (cycle >> 33).is_multiple_of(25) {
            ledger.lock().expect("lock").crashes += 1;
            token = tracker.register(&format!("worker-{seed}"), kind).await;
            continue;
        }
        let (status, body) = tracker
            .post(
                "/api/ext/heartbeat",
                &json!({"token": token, "progress": format!("job {number}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let completion = if kind == "CPU" {
            json!({"token": token, "number": number, "bundle": format!("rsync {number:032x}")})
        } else {
            json!({"token": token, "number": number, "count": number % 7})
        };
        let (status, body) = tracker.post("/api/ext/complete", &completion).await;
        let mut ledger = ledger.lock().expect("lock");
        if status == 200 {
            let tally = if kind == "CPU" {
                &mut ledger.handoffs
            } else {
                &mut ledger.closes
            };
            *tally.entry(number).or_default() += 1;
        } else {
            ledger
                .refused_live_completions
                .push(format!("{kind} job {number}: {status} {body}"));
        }
    }
}

async fn all_closed(tracker: &TestTracker) -> bool {
    let (_, metrics) = tracker.get("/metrics").await;
    metrics.contains(&format!("tracker_closes_total {}", WATS * 2))
}
