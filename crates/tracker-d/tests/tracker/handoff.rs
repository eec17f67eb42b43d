//! CPU handoffs: what a bundle's url may be, and a handoff against a job that moved on.

use super::support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};
use tracker_d::db::Db;

async fn complete(tracker: &TestTracker, token: &str, number: u64, bundle: &str) -> (u16, String) {
    tracker
        .post(
            "/api/ext/complete",
            &json!({"token": token, "number": number, "bundle": bundle}),
        )
        .await
}

/// The job's stage, status and handoff, straight from the database.
async fn job_row(tracker: &TestTracker, number: u64) -> (String, String, Option<String>) {
    let db = Db::connect(&tracker.database_url, 1).await.expect("db");
    let row = sqlx::query_as("SELECT stage, status, gpu_url FROM jobs WHERE number = $1")
        .bind(i64::try_from(number).expect("number"))
        .fetch_one(db.pool())
        .await
        .expect("job row");
    db.close().await;
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_racing_a_new_upload_url_has_one_winner() {
    const TRIES: usize = 40;
    for backend in BACKENDS {
        let tracker = Arc::new(TestTracker::start(backend, &[]).await);
        tracker.import(TRIES / 2, 0).await;
        let cpu = tracker.register("racer", "CPU").await;
        let (mut handed_off, mut superseded) = (0, 0);
        for _ in 0..TRIES {
            let jobs = tracker.claim(&cpu, 1, false).await;
            let number = jobs[0]["number"].as_u64().expect("number");
            let bundle = tracker.upload(&cpu, number, vec![5_u8; 64]).await;
            let completing = {
                let (tracker, cpu, bundle) = (Arc::clone(&tracker), cpu.clone(), bundle.clone());
                tokio::spawn(async move { complete(&tracker, &cpu, number, &bundle).await })
            };
            let issuing = {
                let (tracker, cpu) = (Arc::clone(&tracker), cpu.clone());
                tokio::spawn(async move {
                    tracker
                        .post(
                            "/api/ext/uploadUrl",
                            &json!({"token": cpu, "number": number}),
                        )
                        .await
                })
            };
            let (completed, issued) = (
                completing.await.expect("task"),
                issuing.await.expect("task"),
            );
            let (stage, status, gpu_url) = job_row(&tracker, number).await;
            match (completed.0, issued.0) {
                (200, 409) => {
                    handed_off += 1;
                    assert_eq!((stage.as_str(), status.as_str()), ("gpu", "open"));
                    let key = gpu_url.as_deref().and_then(|url| url.strip_prefix("blob:"));
                    let key = key.expect("a blob handoff");
                    assert!(
                        tracker.dir.path().join("staging").join(key).exists(),
                        "{backend:?}: the handed-off bundle is kept"
                    );
                }
                (409 | 400, 200) => {
                    superseded += 1;
                    assert_eq!((stage.as_str(), status.as_str()), ("cpu", "pending"));
                    // Give the job up for the next round.
                    let (status, text) = tracker
                        .post("/api/ext/release", &json!({"token": cpu, "number": number}))
                        .await;
                    assert_eq!(status, 200, "{text}");
                }
                other => panic!(
                    "{backend:?}: job {number}: complete {completed:?}, uploadUrl {issued:?}, \
                     job {stage}/{status} {gpu_url:?}: {other:?}"
                ),
            }
        }
        assert_eq!(handed_off + superseded, TRIES, "{backend:?}");
        let tracker = Arc::into_inner(tracker).expect("sole owner");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn a_completion_after_the_lease_expired_is_a_conflict() {
    for backend in BACKENDS {
        let tracker =
            TestTracker::start(backend, &["--lease", "300ms", "--reap-interval", "50ms"]).await;
        tracker.import(1, 0).await;
        let cpu = tracker.register("late", "CPU").await;
        let number = tracker.claim(&cpu, 1, false).await[0]["number"]
            .as_u64()
            .expect("number");
        let issued: Value = tracker
            .post_ok(
                "/api/ext/uploadUrl",
                &json!({"token": cpu, "number": number}),
            )
            .await;
        let bundle = format!("blob:{}", issued["key"].as_str().expect("key"));
        tokio::time::timeout(Duration::from_secs(15), async {
            while job_row(&tracker, number).await.1 != "open" {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the reaper returns the job");
        let (status, text) = complete(&tracker, &cpu, number, &bundle).await;
        assert_eq!(status, 409, "{backend:?}: {text}");
        assert!(text.contains("not held by you"), "{text}");
        tracker.stop().await;
    }
}

#[tokio::test]
async fn only_uploaded_bundles_are_handed_off_unless_external_ones_are_allowed() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &["--external-bundles", "false"]).await;
        tracker.import(2, 0).await;
        let cpu = tracker.register("handoff", "CPU").await;
        let jobs = tracker.claim(&cpu, 2, false).await;
        let number = jobs[0]["number"].as_u64().expect("number");
        for bundle in [
            "file:///etc/passwd",
            "http://169.254.169.254/latest/meta-data/",
            "rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6",
        ] {
            let (status, text) = complete(&tracker, &cpu, number, bundle).await;
            assert_eq!(status, 400, "{backend:?} {bundle}: {text}");
            assert!(text.contains("--external-bundles"), "{text}");
        }
        let (status, text) = tracker
            .post(
                "/api/markAsDone",
                &json!({"token": cpu, "type": "CPU", "url": "file:///etc/passwd"}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: legacy: {text}");
        let bundle = tracker.upload(&cpu, number, b"bundle".to_vec()).await;
        assert_eq!(complete(&tracker, &cpu, number, &bundle).await.0, 200);
        tracker.stop().await;

        // Allowed: http(s) URLs and 2021 rsync strings, no other scheme.
        let tracker = TestTracker::start(backend, &["--external-bundles"]).await;
        tracker.import(2, 0).await;
        let cpu = tracker.register("handoff", "CPU").await;
        let jobs = tracker.claim(&cpu, 3, false).await;
        let numbers: Vec<u64> = jobs
            .iter()
            .map(|job| job["number"].as_u64().unwrap())
            .collect();
        for bundle in [
            "file:///etc/passwd",
            "gopher://x/",
            "rsync ",
            "javascript:alert(1)",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://[fe80::1%25eth0]/b.tar",
            "https://[fd00:ec2::254]/latest/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            let (status, text) = complete(&tracker, &cpu, numbers[0], bundle).await;
            assert_eq!(status, 400, "{backend:?} {bundle}: {text}");
        }
        let (status, text) = complete(
            &tracker,
            &cpu,
            numbers[0],
            "https://bundles.example/job-1.tar",
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        let (status, text) =
            complete(&tracker, &cpu, numbers[2], "http://10.0.0.5/job-3.tar").await;
        assert_eq!(status, 200, "{backend:?}: a LAN bundle store: {text}");
        let (status, text) = complete(&tracker, &cpu, numbers[1], "rsync 0b5e8a0e").await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        tracker.stop().await;
    }
}
