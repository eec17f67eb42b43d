//! The reads anyone may poll without a token cost the database the same however often they are polled.

use super::support;

use serde_json::Value;
use support::{BACKENDS, TestTracker};

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
