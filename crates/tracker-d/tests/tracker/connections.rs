//! Connections that hog the tracker: idle and slow sockets are closed, stalled bodies dropped
//! (with their part files), open connections capped, oversized bodies refused before reading.

use super::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, TestTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far beyond every timeout these tests configure: reaching it means the server never acted.
const PATIENCE: Duration = Duration::from_secs(15);

async fn connect(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Everything the server sends until it closes the connection, or `None` if it keeps it open
/// past [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// The first line the server answers with, within [`PATIENCE`].
async fn status_line(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut byte = [0_u8; 1];
        while !received.ends_with(b"\r\n") {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => received.push(byte[0]),
            }
        }
    })
    .await
    .expect("the server answers");
    String::from_utf8_lossy(&received).trim_end().to_owned()
}

fn part_files(staging: &Path) -> Vec<String> {
    std::fs::read_dir(staging.join("tmp"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `staging` holds a part file (the server is reading the body).
async fn wait_for_part(staging: &Path) {
    tokio::time::timeout(PATIENCE, async {
        while part_files(staging).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the upload reached the store");
}

/// A claimed CPU job with a fresh upload URL: (put path and query, job number).
async fn upload_target(tracker: &TestTracker) -> (String, u64) {
    tracker.import(1, 0).await;
    let cpu = tracker.register("slow", "CPU").await;
    let jobs = tracker.claim(&cpu, 1, false).await;
    let number = jobs[0]["number"].as_u64().expect("number");
    let issued: Value = tracker
        .post_ok(
            "/api/ext/uploadUrl",
            &json!({"token": cpu, "number": number}),
        )
        .await;
    let url = issued["put_url"].as_str().expect("put_url");
    let path = url.strip_prefix(&tracker.base).expect("our url").to_owned();
    (path, number)
}

fn stalled_put(path: &str, announced: u64, sent: usize) -> Vec<u8> {
    let mut request =
        format!("PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {announced}\r\n\r\n")
            .into_bytes();
    request.extend(std::iter::repeat_n(7_u8, sent));
    request
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--header-timeout", "1s"]).await;
    let mut idle = connect(tracker.addr, b"").await;
    let mut slow = connect(
        tracker.addr,
        b"GET /api/ext/info HTTP/1.1\r\nHost: t\r\nX-Dr",
    )
    .await;
    assert!(
        until_closed(&mut slow).await.is_some(),
        "a head never finished is closed"
    );
    assert!(
        until_closed(&mut idle).await.is_some(),
        "a silent socket is closed"
    );
    // A keep-alive connection that goes quiet after a request is closed as well.
    let mut kept = connect(
        tracker.addr,
        b"GET /api/ext/info HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    let answered = until_closed(&mut kept).await.expect("closed when idle");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    tracker.stop().await;
}

#[tokio::test]
async fn stalled_bodies_are_dropped_with_their_part_files() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--body-timeout", "1s"]).await;
    let staging = tracker.dir.path().join("staging");
    let mut json_body = connect(
        tracker.addr,
        b"POST /api/ext/heartbeat HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"token\":",
    )
    .await;
    let answer = until_closed(&mut json_body)
        .await
        .expect("a stalled JSON body is dropped");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let (path, _) = upload_target(&tracker).await;
    let mut upload = connect(tracker.addr, &stalled_put(&path, 100_000, 999)).await;
    wait_for_part(&staging).await;
    let answer = until_closed(&mut upload)
        .await
        .expect("a stalled upload is dropped");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        part_files(&staging),
        Vec::<String>::new(),
        "part file removed"
    );
    tracker.stop().await;
}

#[tokio::test]
async fn an_upload_stops_when_its_job_lease_expires() {
    for backend in support::BACKENDS {
        let tracker =
            TestTracker::start(backend, &["--lease", "1s", "--reap-interval", "100ms"]).await;
        let staging = tracker.dir.path().join("staging");
        let (path, number) = upload_target(&tracker).await;
        let mut upload = connect(tracker.addr, &stalled_put(&path, 100_000, 99_999)).await;
        wait_for_part(&staging).await;
        let answer = until_closed(&mut upload)
            .await
            .expect("the upload of an expired job is stopped");
        assert!(answer.starts_with("HTTP/1.1 409"), "{backend:?}: {answer}");
        assert_eq!(
            part_files(&staging),
            Vec::<String>::new(),
            "{backend:?}: part file of job {number} removed"
        );
        tracker.stop().await;
    }
}

#[tokio::test]
async fn open_connections_are_capped_and_the_server_keeps_serving() {
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &["--max-connections", "3", "--header-timeout", "1s"],
    )
    .await;
    // Far more idle sockets than the cap: the ones past it wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect(tracker.addr, b"").await);
    }
    let (status, body) = tracker.get("/api/ext/info").await;
    assert_eq!(
        status, 200,
        "served once the idle sockets timed out: {body}"
    );
    for socket in &mut idle {
        assert!(
            until_closed(socket).await.is_some(),
            "every idle socket is closed"
        );
    }
    tracker.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &["--max-json-bytes", "4096", "--max-bundle-bytes", "10000"],
    )
    .await;
    let mut json_body = connect(
        tracker.addr,
        b"POST /api/ext/heartbeat HTTP/1.1\r\nHost: t\r\nContent-Length: 8388607\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_line(&mut json_body).await,
        "HTTP/1.1 413 Payload Too Large"
    );

    let (path, _) = upload_target(&tracker).await;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 10001\r\nExpect: 100-continue\r\n\r\n"
    );
    let mut upload = connect(tracker.addr, request.as_bytes()).await;
    assert_eq!(
        status_line(&mut upload).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    tracker.stop().await;
}

#[tokio::test]
async fn a_request_finished_during_the_shutdown_grace_is_written() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--shutdown-grace", "10s"]).await;
    let token = tracker.register("late", "CPU").await;
    let body = json!({"token": token, "progress": "finished during the grace"}).to_string();
    let head = format!(
        "POST /api/ext/heartbeat HTTP/1.1\r\nHost: tracker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The head and part of the body now, the rest once the shutdown has begun.
    let mut stream = connect(tracker.addr, head.as_bytes()).await;
    stream
        .write_all(&body.as_bytes()[..10])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let database_url = tracker.database_url.clone();
    let stopping = tokio::spawn(tracker.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(&body.as_bytes()[10..])
        .await
        .expect("write");
    assert_eq!(status_line(&mut stream).await, "HTTP/1.1 200 OK");
    drop(stream);
    let (_dir, _) = stopping.await.expect("stopped");
    let db = tracker_d::db::Db::connect(&database_url, 1)
        .await
        .expect("db");
    let progress: String = sqlx::query_scalar("SELECT progress FROM clients WHERE token = $1")
        .bind(&token)
        .fetch_one(db.pool())
        .await
        .expect("client row");
    db.close().await;
    assert_eq!(progress, "finished during the grace");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_loses_the_connection() {
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &[
            "--max-connections",
            "1",
            "--response-timeout",
            "1s",
            // The test client's idle keep-alive connections go too.
            "--header-timeout",
            "1s",
            "--max-bundle-bytes",
            "67108864",
        ],
    )
    .await;
    tracker.import(1, 0).await;
    let cpu = tracker.register("cpu", "CPU").await;
    let number = tracker.claim(&cpu, 1, false).await[0]["number"]
        .as_u64()
        .expect("number");
    // Far more than the sockets on both ends buffer.
    let handoff = tracker.upload(&cpu, number, vec![9_u8; 32 << 20]).await;
    let (status, body) = tracker
        .post(
            "/api/ext/complete",
            &json!({"token": cpu, "number": number, "bundle": handoff}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gpu = tracker.register("gpu", "GPU").await;
    let job = &tracker.claim(&gpu, 1, false).await[0];
    let url = job["bundle"]["url"].as_str().expect("bundle url");
    let path = url.strip_prefix(&tracker.base).expect("our url");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The download is asked for and never read, on the only connection there is.
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let hog = connect(tracker.addr, request.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut next = connect(
        tracker.addr,
        b"GET /api/ext/info HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&mut next).await, "HTTP/1.1 200 OK");
    drop(hog);
    tracker.stop().await;
}
