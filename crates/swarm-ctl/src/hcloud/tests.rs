//! Paging and retry rules of the Hetzner Cloud client, against raw HTTP servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A one-route HTTP server on 127.0.0.1 answering every request with `answer(page)`; the
/// count of requests it answered.
async fn canned(answer: fn(u64) -> Value) -> (Hcloud, Arc<AtomicU64>) {
    canned_dropping(answer, 0, 0).await
}

/// As [`canned`], but the first `drop` connections are closed once the request is read,
/// with no answer (a reset); the client retries `retries` times.
async fn canned_dropping(
    answer: fn(u64) -> Value,
    drop: u64,
    retries: u32,
) -> (Hcloud, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = Url::parse(&format!(
        "http://{}/v1",
        listener.local_addr().expect("addr")
    ))
    .expect("url");
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let page = head
                .split(['?', '&', ' '])
                .find_map(|part| part.strip_prefix("page="))
                .and_then(|page| page.parse().ok())
                .unwrap_or(1);
            if counter.fetch_add(1, Ordering::SeqCst) < drop {
                continue;
            }
            let body = answer(page).to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    let retry = RetryPolicy {
        max_retries: retries,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };
    let client = Hcloud::new(&url, Secret::new("token"), retry).expect("client");
    (client, served)
}

fn servers(count: usize, page: u64, next_page: Option<u64>, last_page: Option<u64>) -> Value {
    let servers: Vec<Value> = (0..count)
        .map(|index| json!({ "id": page * 100 + index as u64 }))
        .collect();
    json!({ "servers": servers, "meta": { "pagination": {
        "page": page, "next_page": next_page, "last_page": last_page,
    } } })
}

async fn list(client: &Hcloud) -> Result<Vec<Value>, HcloudError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        client.list_all::<Value>("/servers", "servers", &[]),
    )
    .await
    .expect("the listing ends")
}

#[tokio::test]
async fn list_all_follows_pages_to_the_end() {
    let (client, served) =
        canned(|page| servers(50, page, (page < 2).then_some(page + 1), Some(2))).await;
    assert_eq!(list(&client).await.expect("two pages").len(), 100);
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn list_all_refuses_a_next_page_that_goes_back() {
    // 60 servers, but page 1 names itself as the next page: not the end of the listing.
    let (client, _) = canned(|page| servers(50, page, Some(1), Some(2))).await;
    let error = list(&client)
        .await
        .expect_err("a truncated listing is refused");
    let message = error.to_string();
    assert!(
        message.contains("page 1 names next_page 1") && message.contains("incomplete"),
        "{message}"
    );
}

#[tokio::test]
async fn list_all_refuses_an_empty_page_with_a_next_page() {
    let (client, _) = canned(|page| servers(0, page, Some(page + 1), None)).await;
    let message = list(&client).await.expect_err("refused").to_string();
    assert!(message.contains("holds no servers"), "{message}");
}

#[tokio::test]
async fn list_all_stops_at_the_last_page_or_the_cap() {
    // next_page keeps growing past the announced last page.
    let (client, served) = canned(|page| servers(1, page, Some(page + 1), Some(3))).await;
    let message = list(&client).await.expect_err("refused").to_string();
    assert!(message.contains("past the last page 3"), "{message}");
    assert_eq!(served.load(Ordering::SeqCst), 3);

    // No last page at all: the hard cap ends it.
    let (client, served) = canned(|page| servers(1, page, Some(page + 1), None)).await;
    let message = list(&client).await.expect_err("refused").to_string();
    assert!(message.contains("past the last page 1000"), "{message}");
    assert_eq!(served.load(Ordering::SeqCst), MAX_PAGES);
}

#[tokio::test]
async fn a_lost_answer_is_retried_for_repeatable_calls_only() {
    let (client, served) = canned_dropping(|page| servers(1, page, None, Some(1)), 1, 2).await;
    assert_eq!(list(&client).await.expect("retried").len(), 1);
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // POST /servers is repeatable (its repeat is adopted); another POST is not.
    let (client, served) = canned_dropping(|_| json!({ "ok": true }), 1, 2).await;
    let answer: Value = client
        .call(Method::POST, "/servers", &[], Some(&json!({})))
        .await
        .expect("POST /servers retried");
    assert_eq!(answer["ok"], true);
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let (client, served) = canned_dropping(|_| json!({ "ok": true }), 1, 2).await;
    let error = client
        .call::<Value>(Method::POST, "/ssh_keys", &[], Some(&json!({})))
        .await
        .expect_err("not repeated");
    assert!(matches!(error, HcloudError::Transport { .. }), "{error:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
