//! Refusals: unknown tokens, admin secrets, bad JSON, oversized bodies and registration floods.

use super::support;

use serde_json::json;
use support::{ADMIN_SECRET, Backend, TestTracker};

#[tokio::test]
async fn writes_need_a_registered_token() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    tracker.import(1, 0).await;
    for (path, body) in [
        ("/api/newJob", json!({"token": "nope", "type": "CPU"})),
        (
            "/api/updateProgress",
            json!({"token": "nope", "progress": "x"}),
        ),
        ("/api/markAsDone", json!({"token": "nope", "count": 1})),
        ("/api/bye", json!({"token": "nope"})),
        ("/api/ext/claim", json!({"token": "nope"})),
        (
            "/api/ext/heartbeat",
            json!({"token": "nope", "progress": "x"}),
        ),
        ("/api/ext/uploadUrl", json!({"token": "nope", "number": 1})),
        (
            "/api/ext/dedup",
            json!({"token": "nope", "set": "main", "hashes": [1]}),
        ),
        (
            "/custom/markasdone-cpu",
            json!({"token": "nope", "shards": [1], "urls": {"1": "x"}, "nickname": "n"}),
        ),
    ] {
        let (status, text) = tracker.post(path, &body).await;
        assert_eq!(status, 404, "{path}: {text}");
        assert!(text.contains("register again"), "{path}: {text}");
    }
    let (status, text) = tracker
        .post(
            "/custom/markasdone-cpu",
            &json!({"shards": [1], "urls": {"1": "x"}, "nickname": "n"}),
        )
        .await;
    assert_eq!(status, 400, "a token is required: {text}");
    tracker.stop().await;
}

#[tokio::test]
async fn admin_secret_travels_only_in_a_header() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    tracker.import(1, 0).await;
    let url = tracker.url("/admin/reset-job");
    let send = |secret: Option<&str>, query: &str| {
        let mut request = tracker
            .http
            .post(format!("{url}{query}"))
            .json(&json!({"number": 1}));
        if let Some(secret) = secret {
            request = request.header(cah_protocol::ADMIN_SECRET_HEADER, secret);
        }
        request.send()
    };
    assert_eq!(send(None, "").await.unwrap().status(), 401);
    assert_eq!(
        send(Some("wrong-secret-wrong-secret"), "")
            .await
            .unwrap()
            .status(),
        401
    );
    let in_query = format!("?password={ADMIN_SECRET}");
    assert_eq!(
        send(None, &in_query).await.unwrap().status(),
        401,
        "query strings are ignored"
    );
    assert_eq!(send(Some(ADMIN_SECRET), "").await.unwrap().status(), 200);
    tracker.stop().await;

    let no_secret = TestTracker::start(Backend::Sqlite, &[]).await;
    let response = no_secret
        .http
        .post(no_secret.url("/admin/reset-job"))
        .header(cah_protocol::ADMIN_SECRET_HEADER, "")
        .json(&json!({"number": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    no_secret.stop().await;
}

#[tokio::test]
async fn bad_json_and_oversized_bodies_get_clear_errors() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--max-json-bytes", "4096"]).await;
    let send = |body: Vec<u8>| {
        tracker
            .http
            .post(tracker.url("/api/newJob"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, needle) in [
        (b"{not json".to_vec(), "invalid JSON"),
        (b"{}".to_vec(), "missing field `token`"),
        (
            br#"{"token": "t", "type": "XPU"}"#.to_vec(),
            "unknown client type",
        ),
        (b"\xff\xfe".to_vec(), "invalid JSON"),
    ] {
        let response = send(body).await.unwrap();
        assert_eq!(response.status(), 400);
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{text}");
    }
    let huge = format!(r#"{{"token": "{}"}}"#, "a".repeat(10_000));
    let response = send(huge.into_bytes()).await.unwrap();
    assert_eq!(response.status(), 413);
    tracker.stop().await;
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &["--register-per-minute", "1", "--register-burst", "3"],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(tracker.get("/api/new?nickname=flood&type=CPU").await.0, 200);
    }
    let response = tracker
        .http
        .get(tracker.url("/api/new?nickname=flood&type=CPU"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    tracker.stop().await;
}
