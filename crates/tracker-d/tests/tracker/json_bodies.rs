//! JSON bodies held while they arrive: capped per route, within one byte budget across
//! connections (503 beyond it), and whole within a deadline (408 after).

use super::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Backend, TestTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head for `path`, then `body`; the caller holds the rest back.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    send_on(stream, head, body).await
}

/// [`send`] from the loopback address `from` (any of 127.0.0.0/8 is this host on Linux).
async fn send_from(from: [u8; 4], addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the source address");
    let stream = socket.connect(addr).await.expect("connect");
    send_on(stream, head, body).await
}

async fn send_on(mut stream: TcpStream, head: &str, body: &[u8]) -> TcpStream {
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    stream
}

fn post_head(path: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// The head of the answer, if one comes within `wait`.
async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buffer = [0_u8; 1024];
        while !received.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    (read.is_ok() && !received.is_empty()).then(|| String::from_utf8_lossy(&received).into_owned())
}

/// The value of an unlabelled metric.
async fn metric(tracker: &TestTracker, name: &str) -> u64 {
    let (status, text) = tracker.get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .expect("a number")
}

/// Waits (at most 10 s) until the bytes held by JSON bodies are at most `bytes`.
async fn held_bytes_fall_to(tracker: &TestTracker, bytes: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(tracker, "tracker_json_body_bytes").await > bytes {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_batch_routes_take_large_bodies() {
    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    let token = tracker.register("batcher", "GPU").await;
    let padding = "p".repeat(100 << 10);
    let (status, text) = tracker
        .post(
            "/api/ext/heartbeat",
            &json!({"token": token, "progress": padding}),
        )
        .await;
    assert_eq!(status, 413, "a heartbeat takes at most 64 KiB: {text}");
    // The largest dedup request, 100,000 hashes of 20 digits: about 2 MB.
    let hashes: Vec<u64> = (0..100_000).map(|i| u64::MAX - i).collect();
    let (status, text) = tracker
        .post(
            "/api/ext/dedup",
            &json!({"token": token, "set": "main", "hashes": hashes, "add": false}),
        )
        .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(200)]);
    let addresses: Vec<String> = (0..5_000)
        .map(|i| format!("https://bundles.example/{i:0>100}"))
        .collect();
    let (status, _) = tracker
        .post("/api/isCompleted", &json!({"addresses": addresses}))
        .await;
    assert_eq!(status, 200, "isCompleted takes about 600 KB");
    tracker.stop().await;
}

#[tokio::test]
async fn slow_bodies_share_one_budget_and_the_rest_get_503_at_once() {
    // 1 MiB in all, three quarters of it for dedup and isCompleted bodies: three of 200 KB.
    const BODY: usize = 200_000;
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &[
            "--json-body-budget",
            "1048576",
            "--max-json-bytes",
            "200000",
        ],
    )
    .await;
    tracker.import(1, 0).await;
    let scraper = tracker.register("scraper", "CPU").await;
    let number = tracker.claim(&scraper, 1, false).await[0]["number"]
        .as_u64()
        .expect("number");
    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let mut stream = send(
            tracker.addr,
            &post_head("/api/ext/dedup", BODY),
            b"{\"token\": \"",
        )
        .await;
        match answer(&mut stream, Duration::from_millis(500)).await {
            None => held.push(stream),
            Some(head) => {
                assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                assert!(head.to_lowercase().contains("retry-after: 5"), "{head}");
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (3, 5), "three bodies fit the budget");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once, not when the bodies time out"
    );
    // A chunked body is held as it grows, and refused once it would not fit.
    let mut chunked = send(
        tracker.addr,
        "POST /api/ext/dedup HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"",
    )
    .await;
    let chunk = vec![b' '; 65_536];
    let mut chunked_answer = None;
    for _ in 0..4 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if chunked.write_all(&framed).await.is_err() {
            break;
        }
        chunked_answer = answer(&mut chunked, Duration::from_millis(300)).await;
        if chunked_answer.is_some() {
            break;
        }
    }
    let head = chunked_answer.expect("the chunked body is refused");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // Small routes keep their quarter, and bundles stream to disk outside the budget.
    let (status, text) = tracker
        .post(
            "/api/ext/heartbeat",
            &json!({"token": scraper, "progress": "still here"}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let bundle = tracker.upload(&scraper, number, vec![7; 2 << 20]).await;
    assert!(bundle.starts_with("blob:"));

    let peak = metric(&tracker, "tracker_json_body_bytes_peak").await;
    assert!(
        (3 * BODY as u64..=786_432).contains(&peak),
        "held {peak} bytes at most, within the batch share"
    );
    assert_eq!(
        metric(&tracker, "tracker_json_bodies_refused_total").await,
        6
    );
    assert_eq!(
        metric(&tracker, "tracker_json_body_bytes").await,
        3 * BODY as u64
    );
    drop(held);
    drop(chunked);
    held_bytes_fall_to(&tracker, 0, "closed bodies give their bytes back").await;
    let hashes: Vec<u64> = (0..9_000).collect();
    let (status, text) = tracker
        .post(
            "/api/ext/dedup",
            &json!({"token": scraper, "set": "parsed", "hashes": hashes, "add": false}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    tracker.stop().await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_budget() {
    // Room for five 200 KB batch bodies (three quarters of the budget), two per address.
    const BODY: usize = 200_000;
    let tracker = TestTracker::start(
        Backend::Sqlite,
        &[
            "--json-body-budget",
            "1400000",
            "--max-json-bytes",
            "200000",
            "--json-body-budget-per-address",
            "400000",
        ],
    )
    .await;
    let head = post_head("/api/ext/dedup", BODY);
    let mut held = Vec::new();
    for from in [[127, 0, 0, 1], [127, 0, 0, 1], [127, 0, 0, 2]] {
        let mut stream = send_from(from, tracker.addr, &head, b"{\"token\": \"").await;
        assert_eq!(
            answer(&mut stream, Duration::from_millis(500)).await,
            None,
            "{from:?}: held while it arrives"
        );
        held.push(stream);
    }
    // The first address's third body would pass the budget, but not its share.
    let mut third = send_from([127, 0, 0, 1], tracker.addr, &head, b"{").await;
    let refused = answer(&mut third, Duration::from_secs(5))
        .await
        .expect("refused at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    assert_eq!(
        metric(&tracker, "tracker_json_bodies_refused_per_address_total").await,
        1
    );
    // A heartbeat from the first address is not counted against its share.
    let token = tracker.register("busy-host", "CPU").await;
    let (status, text) = tracker
        .post(
            "/api/ext/heartbeat",
            &json!({"token": token, "progress": "batches in flight"}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    // Another address still finds room for a batch.
    let mut other = send_from([127, 0, 0, 3], tracker.addr, &head, b"{").await;
    assert_eq!(answer(&mut other, Duration::from_millis(500)).await, None);
    assert_eq!(
        metric(&tracker, "tracker_json_body_bytes").await,
        4 * BODY as u64
    );
    // Bytes go back when a body ends, and the address may send again.
    drop(held.remove(0));
    held_bytes_fall_to(
        &tracker,
        3 * BODY as u64,
        "a closed body gives its bytes back",
    )
    .await;
    let mut again = send_from([127, 0, 0, 1], tracker.addr, &head, b"{").await;
    assert_eq!(answer(&mut again, Duration::from_millis(500)).await, None);
    tracker.stop().await;
}

#[tokio::test]
async fn a_body_that_drips_past_the_deadline_gets_408() {
    let tracker = TestTracker::start(Backend::Sqlite, &["--json-body-deadline", "1s"]).await;
    let token = tracker.register("dripper", "CPU").await;
    let body = json!({"token": token, "progress": "one byte at a time"}).to_string();
    let mut stream = send(
        tracker.addr,
        &post_head("/api/ext/heartbeat", body.len()),
        b"",
    )
    .await;
    let started = Instant::now();
    let mut head = None;
    // A byte every 100 ms stays far inside the body timeout (60 s), and would take 7 s.
    for byte in body.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        head = answer(&mut stream, Duration::from_millis(100)).await;
        if head.is_some() {
            break;
        }
    }
    let head = head.expect("an answer before the body is whole");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&tracker, "tracker_json_bodies_too_slow_total").await,
        1
    );
    tracker.stop().await;
}
