//! `tracker-d import` from a Common Crawl `wat.paths.gz` served over HTTP, as Common Crawl serves it.

use super::support;

use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::WatConfig;
use serde_json::Value;
use support::{Backend, TestTracker};

#[tokio::test]
async fn imports_a_served_listing_once() {
    let crawl_dir = tempfile::tempdir().expect("tempdir");
    let configs: Vec<WatConfig> = (0..3)
        .map(|index| WatConfig {
            file_index: index,
            n_pages: 2,
            ..WatConfig::small(80, 7)
        })
        .collect();
    let crawl = write_crawl(crawl_dir.path(), &configs).expect("crawl written");
    let server = CommonCrawlServer::start_local(crawl_dir.path())
        .await
        .expect("server");
    let listing = format!("{}{}", server.base_url(), crawl.listing_path());

    let tracker = TestTracker::start(Backend::Sqlite, &[]).await;
    for _ in 0..2 {
        let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker-d"))
            .args([
                "import",
                "--database-url",
                &tracker.database_url,
                "--base-url",
            ])
            .arg(server.base_url())
            .arg(&listing)
            .status()
            .await
            .expect("run import");
        assert!(
            status.success(),
            "the second import skips what the first created"
        );
    }
    assert_eq!(
        tracker.get("/api/jobCount?type=CPU").await.1,
        "6",
        "3 WATs, two halves each, once"
    );
    let hybrid = tracker.register("reader", "HYBRID").await;
    let jobs = tracker.claim(&hybrid, 10, false).await;
    let base = server.base_url();
    for job in &jobs {
        let url = job["wat_url"].as_str().expect("url");
        assert!(
            url.starts_with(&base) && url.ends_with(".warc.wat.gz"),
            "{url}"
        );
        let response = tracker.http.get(url).send().await.expect("fetch the WAT");
        assert_eq!(response.status(), 200, "{url} is served");
    }
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args(["import", "--database-url", &tracker.database_url])
        .arg(format!(
            "{}crawl-data/missing/wat.paths.gz",
            server.base_url()
        ))
        .output()
        .await
        .expect("run import");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("404"), "{stderr}");
    // A server that is not there: the message carries the cause, not just reqwest's summary.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args(["import", "--database-url", &tracker.database_url])
        .arg(format!("http://127.0.0.1:{port}/wat.paths.gz"))
        .output()
        .await
        .expect("run import");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    // `--limit 0` is a usage error; an env file's `TRACKER_IMPORT_SHUFFLE=yes` is true.
    let limit = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args([
            "import",
            "--database-url",
            &tracker.database_url,
            "--limit",
            "0",
        ])
        .arg(format!("http://127.0.0.1:{port}/wat.paths.gz"))
        .output()
        .await
        .expect("run import");
    let stderr = String::from_utf8_lossy(&limit.stderr);
    assert_eq!(limit.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--limit"), "{stderr}");
    let shuffle = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args(["import", "--database-url", &tracker.database_url])
        .arg(format!("http://127.0.0.1:{port}/wat.paths.gz"))
        .env("TRACKER_IMPORT_SHUFFLE", "yes")
        .output()
        .await
        .expect("run import");
    let stderr = String::from_utf8_lossy(&shuffle.stderr);
    assert_eq!(shuffle.status.code(), Some(1), "yes is accepted: {stderr}");
    let _: Value = serde_json::from_str(&tracker.get("/data").await.1).expect("data");
    tracker.stop().await;
    server.shutdown().await;
}
