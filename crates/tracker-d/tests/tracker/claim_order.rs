//! Claims take the open job with the lowest shuffle key, also after jobs reopen behind the claim floor.

use super::support;

use serde_json::{Value, json};
use support::{BACKENDS, TestTracker};

fn numbers(jobs: &[Value]) -> Vec<u64> {
    jobs.iter()
        .map(|job| job["number"].as_u64().expect("job number"))
        .collect()
}

#[tokio::test]
async fn reopened_jobs_are_claimed_first_wherever_they_reopened() {
    for backend in BACKENDS {
        // No reaper round during the test: its reset would hide a floor left too high.
        let tracker = TestTracker::start(backend, &["--reap-interval", "1h"]).await;
        // Without --shuffle the shuffle key is the WAT index: jobs 1..6 have keys 0,0,1,1,2,2.
        tracker.import(3, 0).await;
        let first = tracker.register("first", "CPU").await;
        let second = tracker.register("second", "CPU").await;
        assert_eq!(numbers(&tracker.claim(&first, 2, false).await), [1, 2]);
        assert_eq!(numbers(&tracker.claim(&first, 1, false).await), [3]);

        // Released in this process: the floor comes down with it.
        let (status, body) = tracker
            .post("/api/ext/release", &json!({"token": first, "number": 1}))
            .await;
        assert_eq!((status, body.as_str()), (200, "success"), "{backend:?}");
        assert_eq!(
            numbers(&tracker.claim(&second, 1, false).await),
            [1],
            "{backend:?}: the released job comes before higher keys"
        );
        assert_eq!(numbers(&tracker.claim(&second, 3, false).await), [4, 5, 6]);

        // Reopened behind the server's back (another process, an operator's SQL): nothing is
        // open above the floor any more, so the claim scans again from the bottom.
        let changed = tracker_d::testing::execute(
            &tracker.database_url,
            "UPDATE jobs SET status = 'open', holder = NULL, lease_until = NULL WHERE number = 2",
        )
        .await;
        assert_eq!(changed, 1);
        assert_eq!(
            numbers(&tracker.claim(&second, 1, true).await),
            [2],
            "{backend:?}: a whole-WAT claim finds it too"
        );
        assert!(tracker.claim(&second, 1, false).await.is_empty());
        tracker.stop().await;
    }
}
