//! Jobs the tracker assigned in a claim whose answer the daemon never got (the client gave up
//! on it and tried again) are released at the next heartbeat, not renewed for ever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use cah_protocol::ClientType;
use url::Url;

use crate::parity_support;
use crate::support::{RealTracker, daemon_config, hand_in_photos, run_until_released_none_invalid};

/// An HTTP proxy to `upstream` that forwards the first claim to the tracker and answers it
/// with a 502, as if its answer was lost on the way back; its base URL.
async fn proxy_losing_first_claim(upstream: Url) -> Url {
    let http = reqwest::Client::new();
    let lost = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (http, upstream, lost) = (http.clone(), upstream.clone(), Arc::clone(&lost));
            async move {
                let path = uri.path_and_query().map_or("/", |path| path.as_str());
                let target = upstream.join(path.trim_start_matches('/')).expect("url");
                let mut request = http.request(method, target).body(body);
                if let Some(kind) = headers.get("content-type") {
                    request = request.header("content-type", kind);
                }
                let Ok(response) = request.send().await else {
                    return (StatusCode::BAD_GATEWAY, Vec::new());
                };
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default().to_vec();
                if uri.path().ends_with("/claim") && !lost.swap(true, Ordering::SeqCst) {
                    return (StatusCode::BAD_GATEWAY, Vec::new());
                }
                (status, bytes)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_lost_claim_answer_are_released() {
    let tracker = RealTracker::start(&["--lease", "3s", "--reap-interval", "100ms"]).await;
    tracker.import(2).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(4, false).await.expect("claim");
    assert_eq!(jobs.len(), 4);
    hand_in_photos(&cpu, &jobs, &parity_support::photos(), 2, "").await;

    let proxy = proxy_losing_first_claim(tracker.base_url.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The first claim takes 3 jobs whose answer is lost; the retry gets the fourth, which stays
    // held in the open shard (not all 3 held jobs wait in it, and no flush comes).
    let config = daemon_config(
        &proxy,
        &dir.path().join("dataset"),
        &[
            "--max-jobs",
            "3",
            "--flush-interval",
            "1h",
            "--shard-size",
            "100",
        ],
    );
    run_until_released_none_invalid(config, 3.0).await;
    tracker.stop().await;
}
