//! Wire shapes: every call sends the protocol's method, path and body, and decodes its answer.

use std::collections::BTreeMap;

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;
use cah_tracker_client::{Completion, JobOutput, RetryPolicy};
use serde_json::json;

use super::scripted::{ScriptedTracker, Step, client_for};

#[tokio::test]
async fn register_sends_nickname_and_type_and_keeps_the_token_secret() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    let registration = &tracker.received_at("/api/new")[0];
    assert_eq!(registration.method, "GET");
    assert_eq!(
        registration.query.as_deref(),
        Some("nickname=alice&type=CPU")
    );
    assert_eq!(session.token(), "tok");
    assert_eq!(session.display_name(), "quiet-otter-512");
    assert_eq!(session.nickname(), "alice");
    assert_eq!(session.client_type(), ClientType::Cpu);
    assert_eq!(session.registered_upload_address(), "cah@staging::gpujobs");
    let debug = format!("{session:?}");
    assert!(!debug.contains("tok\""), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}

#[tokio::test]
async fn extension_calls_send_the_protocol_bodies() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    let job = json!({
        "number": 12, "wat_url": "https://data.commoncrawl.org/x.wat.gz", "shard": 1,
        "start_id": 100, "end_id": 200, "lease_until_ms": 5,
    });
    tracker
        .script("/api/ext/claim", [Step::json(json!({"jobs": [job]}))])
        .script(
            "/api/ext/heartbeat",
            [Step::json(json!({"jobs": [12], "lease_until_ms": 9}))],
        )
        .script("/api/ext/complete", [Step::text("success")])
        .script("/api/ext/release", [Step::text("success")])
        .script("/api/ext/invalid", [Step::text("success")])
        .script(
            "/api/ext/dedup",
            [Step::json(json!({"new": [true, false]}))],
        );

    let jobs = session.claim(0, true).await.expect("claims");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].number, jobs[0].shard, jobs[0].end_id),
        (12, 1, 200)
    );
    let heartbeat = session
        .heartbeat("downloading images")
        .await
        .expect("heartbeat");
    assert_eq!((heartbeat.jobs, heartbeat.lease_until_ms), (vec![12], 9));
    let completion = session
        .complete(12, JobOutput::Bundle("blob:k1".to_owned()))
        .await
        .expect("completes");
    assert_eq!(completion, Completion::Accepted);
    session.release(13).await.expect("releases");
    session
        .report_invalid(14, "corrupt tar")
        .await
        .expect("reports");
    let new = session
        .dedup(DedupSet::Parsed, &[1, u64::MAX], true)
        .await
        .expect("dedups");
    assert_eq!(new, [true, false]);

    let bodies: Vec<(String, serde_json::Value)> = tracker
        .received()
        .into_iter()
        .filter(|received| received.path.starts_with("/api/ext/"))
        .map(|received| {
            assert_eq!(received.method, "POST");
            assert_eq!(received.headers["content-type"], "application/json");
            (received.path.clone(), received.json())
        })
        .collect();
    let expected = [
        (
            "/api/ext/claim",
            json!({"token": "tok", "max_jobs": 1, "whole_wat": true}),
        ),
        (
            "/api/ext/heartbeat",
            json!({"token": "tok", "progress": "downloading images"}),
        ),
        (
            "/api/ext/complete",
            json!({"token": "tok", "number": 12, "bundle": "blob:k1"}),
        ),
        ("/api/ext/release", json!({"token": "tok", "number": 13})),
        (
            "/api/ext/invalid",
            json!({"token": "tok", "number": 14, "reason": "corrupt tar"}),
        ),
        (
            "/api/ext/dedup",
            json!({"token": "tok", "set": "parsed", "hashes": [1, u64::MAX], "add": true}),
        ),
    ];
    let expected: Vec<(String, serde_json::Value)> = expected
        .into_iter()
        .map(|(path, body)| (path.to_owned(), body))
        .collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn legacy_calls_send_the_protocol_bodies() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    let shard = json!({"url": "https://x/wat.gz", "start_id": "0", "end_id": "100", "shard": 0});
    tracker
        .script("/api/validateWorker", [Step::text("True")])
        .script(
            "/api/newJob",
            [Step::json(json!({
                "url": "https://x/wat.gz", "start_id": "0", "end_id": "100", "shard": 0, "number": 4,
            }))],
        )
        .script("/api/updateProgress", [Step::text("success")])
        .script("/api/markAsDone", [Step::text("success")])
        .script("/api/gpuInvalidDownload", [Step::text("success")])
        .script("/api/bye", [Step::text("success")])
        .script("/api/getUploadAddress", [Step::text("cah@staging::gpujobs")])
        .script("/api/isCompleted", [Step::json(json!(["rsync a"]))])
        .script("/custom/get-cpu-wat", [Step::text("https://x/wat.gz")])
        .script(
            "/custom/lookup-wat",
            [Step::json(json!({"status": "success", "shards": [[4, shard]]}))],
        )
        .script(
            "/custom/markasdone-cpu",
            [Step::json(json!({"status": "success", "completed": 1}))],
        );

    assert!(session.validate().await.expect("validates"));
    let job = session.new_job().await.expect("new job");
    assert_eq!((job.number, job.end_id.0), (4, 100));
    session
        .update_progress("Processing shard")
        .await
        .expect("progress");
    session
        .mark_as_done(JobOutput::Bundle("rsync a".to_owned()))
        .await
        .expect("done");
    session.gpu_invalid_download().await.expect("invalid");
    session.bye().await.expect("bye");
    assert_eq!(
        session.upload_address().await.expect("address"),
        "cah@staging::gpujobs"
    );
    let completed = session
        .client()
        .is_completed(&["rsync a".to_owned(), "rsync b".to_owned()])
        .await
        .expect("is completed");
    assert_eq!(completed, ["rsync a"]);
    let wat = session.client().get_cpu_wat().await.expect("a wat");
    let shards = session.lookup_wat(&wat).await.expect("lookup");
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].0, 4);
    let handoffs = BTreeMap::from([(4, "rsync a".to_owned())]);
    assert_eq!(
        session
            .mark_as_done_cpu(&handoffs)
            .await
            .expect("markasdone-cpu"),
        1
    );

    let body = |path: &str| tracker.received_at(path)[0].json();
    let token_request = json!({"token": "tok", "type": "CPU"});
    assert_eq!(body("/api/validateWorker"), token_request);
    assert_eq!(body("/api/newJob"), token_request);
    assert_eq!(body("/api/gpuInvalidDownload"), token_request);
    assert_eq!(body("/api/bye"), token_request);
    assert_eq!(
        body("/api/updateProgress"),
        json!({"token": "tok", "progress": "Processing shard", "type": "CPU"})
    );
    assert_eq!(
        body("/api/markAsDone"),
        json!({"token": "tok", "type": "CPU", "url": "rsync a"})
    );
    assert_eq!(
        body("/api/isCompleted"),
        json!({"addresses": ["rsync a", "rsync b"]})
    );
    assert_eq!(
        body("/custom/lookup-wat"),
        json!({"url": "https://x/wat.gz", "token": "tok"})
    );
    assert_eq!(
        body("/custom/markasdone-cpu"),
        json!({"shards": [4], "urls": {"4": "rsync a"}, "nickname": "alice", "token": "tok"})
    );
    assert_eq!(
        tracker.received_at("/api/getUploadAddress")[0]
            .query
            .as_deref(),
        Some("type=CPU")
    );
}

#[tokio::test]
async fn a_failed_custom_answer_is_a_conflict() {
    let tracker = ScriptedTracker::start().await;
    let session = tracker.session(RetryPolicy::none()).await;
    tracker.script(
        "/custom/lookup-wat",
        [Step::json(
            json!({"status": "failed", "detail": "fewer than 2 open shards"}),
        )],
    );
    let error = session
        .lookup_wat("https://x/wat.gz")
        .await
        .expect_err("taken");
    assert_eq!(
        error.to_string(),
        "job not held by this client: fewer than 2 open shards"
    );
}

#[tokio::test]
async fn public_calls_decode_their_answers() {
    let tracker = ScriptedTracker::start().await;
    tracker
        .script(
            "/data",
            [Step::json(json!({
                "completion_str": "1 / 2", "completion_float": 50.0, "total_connected_workers": 3,
                "total_pairs_scraped": 4, "eta": "Calculating...",
            }))],
        )
        .script(
            "/api/ext/clients",
            [Step::json(json!([{
                "display_name": "a-b-1", "type": "GPU", "nickname": "bob",
                "progress": "Initialized", "last_seen": 7,
            }]))],
        );
    let client = tracker.client(RetryPolicy::none());
    assert_eq!(
        client.data().await.expect("data").total_connected_workers,
        3
    );
    let clients = client.clients().await.expect("clients");
    assert_eq!(clients[0].client_type, ClientType::Gpu);
}

#[tokio::test]
async fn a_base_path_prefix_is_kept() {
    let tracker = ScriptedTracker::start().await;
    tracker.script("/tracker/api/jobCount", [Step::text("5")]);
    let url = tracker.url.join("/tracker/").expect("valid url");
    let count = client_for(url, RetryPolicy::none())
        .job_count(ClientType::Gpu)
        .await;
    assert_eq!(count.expect("count"), 5);
    let url = tracker.url.join("/tracker").expect("valid url");
    tracker.script("/tracker/api/jobCount", [Step::text("6")]);
    let count = client_for(url, RetryPolicy::none())
        .job_count(ClientType::Gpu)
        .await;
    assert_eq!(count.expect("count"), 6);
}

/// Daemons spawn these calls on a multi-threaded runtime, so their futures must be `Send`.
#[test]
fn call_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let url = url::Url::parse("http://127.0.0.1:9/").expect("valid url");
    let client = client_for(url, RetryPolicy::default());
    let session = cah_tracker_client::Session::resume(
        client.clone(),
        "alice".to_owned(),
        ClientType::Gpu,
        "tok".to_owned(),
        "quiet-otter-512".to_owned(),
    );
    assert_send(&client.register("alice", ClientType::Gpu));
    assert_send(&session.claim(4, false));
    assert_send(&session.complete(1, JobOutput::Pairs(1)));
    assert_send(&session.dedup(DedupSet::Main, &[1], true));
    let target = cah_protocol::ext::UploadUrlResponse {
        put_url: "/blobs/k".to_owned(),
        key: "k".to_owned(),
        expires_at_ms: 0,
        max_bytes: 0,
    };
    assert_send(&session.upload_bundle(&target, cah_tracker_client::BundleBody::File("/x".into())));
}
