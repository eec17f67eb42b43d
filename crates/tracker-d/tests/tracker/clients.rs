//! The client listings: the dashboard's most recent clients per type, and the per-worker page.

use super::support;

use cah_protocol::ClientType;
use support::{BACKENDS, Backend, TestTracker};
use tracker_d::clients;
use tracker_d::db::{Db, now_ms};

#[tokio::test]
async fn a_limited_list_holds_each_types_most_recent_clients() {
    for backend in BACKENDS {
        listing(backend).await;
    }
}

async fn listing(backend: Backend) {
    let tracker = TestTracker::start(backend, &[]).await;
    tracker.import(1, 0).await;
    let db = Db::connect(&tracker.database_url, 2).await.expect("db");
    // Registered one millisecond apart, so "most recent" is well defined.
    let start = now_ms() - 1_000;
    let mut registered = Vec::new();
    for (index, client_type) in [ClientType::Cpu; 7]
        .into_iter()
        .chain([ClientType::Gpu; 3])
        .chain([ClientType::Hybrid; 5])
        .enumerate()
    {
        let client = clients::register(
            &db,
            &format!("nick{index}"),
            client_type,
            "127.0.0.1",
            start + index as i64,
        )
        .await
        .expect("register");
        registered.push(client);
    }
    let newest_cpu = &registered[6];
    let claimed = tracker_d::jobs::claim(
        &db,
        &newest_cpu.token,
        tracker_d::jobs::Stage::Cpu,
        1,
        now_ms() + 60_000,
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 1);

    let listed = clients::list(&db, Some(2)).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|c| c.display_name.as_str()).collect();
    let expected: Vec<&str> = [14, 13, 9, 8, 6, 5]
        .iter()
        .map(|index| registered[*index].display_name.as_str())
        .collect();
    assert_eq!(
        names, expected,
        "{backend:?}: two per type, most recent first"
    );
    let cpu = listed
        .iter()
        .find(|c| c.display_name == newest_cpu.display_name)
        .expect("listed");
    assert_eq!(cpu.job, Some(claimed[0].number));
    assert_eq!(cpu.client_type, ClientType::Cpu);
    assert_eq!(cpu.nickname, "nick6");
    assert!(listed.iter().filter(|c| c.job.is_some()).count() == 1);

    assert_eq!(clients::list(&db, Some(50)).await.expect("list").len(), 15);
    let all = clients::list(&db, None).await.expect("list");
    assert_eq!(all.len(), 15);
    assert!(
        all.windows(2)
            .all(|pair| pair[0].last_seen >= pair[1].last_seen)
    );

    let found = clients::find(&db, ClientType::Cpu, &newest_cpu.display_name)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.job, Some(claimed[0].number));
    assert!(
        clients::find(&db, ClientType::Gpu, &newest_cpu.display_name)
            .await
            .expect("find")
            .is_none(),
        "the type must match too"
    );
    let (status, body) = tracker
        .get(&format!("/worker/cpu/{}/data", newest_cpu.display_name))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"user_nickname\":\"nick6\""), "{body}");
    assert_eq!(
        tracker
            .get(&format!("/worker/gpu/{}/data", newest_cpu.display_name))
            .await
            .0,
        404
    );
    db.close().await;
    tracker.stop().await;
}

#[tokio::test]
async fn the_clients_endpoint_lists_a_bounded_number_most_recent_first() {
    for backend in BACKENDS {
        let tracker = TestTracker::start(backend, &[]).await;
        let db = Db::connect(&tracker.database_url, 2).await.expect("db");
        let start = now_ms() - 10_000;
        for index in 0..1_100_i64 {
            let client_type = [ClientType::Cpu, ClientType::Gpu][index as usize % 2];
            clients::register(&db, "swarm", client_type, "127.0.0.1", start + index)
                .await
                .expect("register");
        }
        db.close().await;
        let listed = |text: &str| -> Vec<serde_json::Value> {
            serde_json::from_str(text).expect("json list")
        };
        let (status, text) = tracker.get("/api/ext/clients").await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        let all = listed(&text);
        assert_eq!(all.len(), 1_000, "{backend:?}: the default cap");
        let seen: Vec<i64> = all
            .iter()
            .map(|c| c["last_seen"].as_i64().unwrap())
            .collect();
        assert!(
            seen.windows(2).all(|pair| pair[0] >= pair[1]),
            "most recent first"
        );
        let (status, text) = tracker.get("/api/ext/clients?limit=5").await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        let five = listed(&text);
        assert_eq!(five.len(), 5);
        assert_eq!(five[0]["last_seen"], all[0]["last_seen"]);
        assert_eq!(tracker.get("/api/ext/clients?limit=10001").await.0, 400);
        tracker.stop().await;
    }
}

#[tokio::test]
async fn nicknames_lose_invisible_characters_before_they_are_trimmed() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    let mut stored = Vec::new();
    for nickname in ["%00%20alice", "%00%20%00", "%E2%80%8B%20bob%20%00", "%20"] {
        let token = tracker.register(nickname, "CPU").await;
        let db = Db::connect(&tracker.database_url, 1).await.expect("db");
        let (client, _) = clients::lookup(&db, &token)
            .await
            .expect("lookup")
            .expect("registered");
        db.close().await;
        stored.push(client.nickname);
    }
    assert_eq!(
        stored,
        ["alice", "anonymous", "bob", "anonymous"],
        "a blank nickname is an absent one"
    );
    tracker.stop().await;
}

/// A CPU registration through `/api/new`: the status, the body and its `Retry-After`.
async fn register_from(tracker: &TestTracker, nickname: &str) -> (u16, String, Option<String>) {
    let response = tracker
        .http
        .get(tracker.url(&format!("/api/new?nickname={nickname}&type=CPU")))
        .send()
        .await
        .expect("register");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, response.text().await.expect("body"), retry_after)
}

#[tokio::test]
async fn registrations_stop_at_max_clients_and_resume_as_clients_leave() {
    for backend in BACKENDS {
        let flags = ["--max-clients", "3", "--reap-interval", "1h"];
        let tracker = TestTracker::start(backend, &flags).await;
        let mut tokens = Vec::new();
        for index in 0..3 {
            tokens.push(tracker.register(&format!("n{index}"), "CPU").await);
        }
        let (status, text, retry_after) = register_from(&tracker, "fourth").await;
        assert_eq!(status, 503, "{backend:?}: {text}");
        assert_eq!(retry_after.as_deref(), Some("60"), "{backend:?}");
        assert!(
            text.contains("the tracker is full") && text.contains('3'),
            "{backend:?}: {text}"
        );
        let (status, metrics) = tracker.get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains("tracker_registrations_refused_full_total 1"),
            "{backend:?}: {metrics}"
        );
        // A client that says bye makes room for one.
        let (status, text) = tracker
            .post(
                "/api/bye",
                &serde_json::json!({"token": tokens.pop().expect("token"), "type": "CPU"}),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        tokens.push(tracker.register("fifth", "CPU").await);
        assert_eq!(register_from(&tracker, "sixth").await.0, 503, "{backend:?}");
        // A restarted tracker counts the registered clients from its database.
        let (dir, database_url) = tracker.stop().await;
        let tracker = TestTracker::start_on(dir, database_url, &flags).await;
        assert_eq!(
            register_from(&tracker, "seventh").await.0,
            503,
            "{backend:?}"
        );
        tracker.stop().await;
    }
}
