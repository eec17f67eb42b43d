//! The `scraper-d run` binary configured only through `SCRAPER_*` variables, as systemd's
//! `EnvironmentFile=/etc/cah/scraper-d.env` does.

use std::process::Command;

use super::support::TestTracker;

fn scraper(tracker: &str, nickname: &str, work_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scraper-d"));
    command
        .arg("run")
        .env_clear()
        .env("SCRAPER_TRACKER_URL", tracker)
        .env("SCRAPER_NICKNAME", nickname)
        .env("SCRAPER_NODE_NAME", "node-3")
        .env("SCRAPER_SWARM", "test-swarm")
        .env("SCRAPER_ENROLLMENT_TOKEN", "secret-token")
        .env("SCRAPER_NAMESERVERS", "127.0.0.1:9")
        .env("SCRAPER_WORK_DIR", work_dir)
        .env("SCRAPER_EXIT_WHEN_IDLE", "true")
        .env("RUST_LOG", "info");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_its_environment_and_exits_when_idle() {
    let tracker = TestTracker::start(&[]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut command = scraper(&tracker.base, "env-test", work.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no job left"), "{stderr}");
    assert!(!stderr.contains("secret-token"), "{stderr}");

    let mut bad = scraper(&tracker.base, " ", work.path());
    let output = tokio::task::spawn_blocking(move || bad.output())
        .await
        .expect("task")
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_downloads_a_url_list_into_one_bundle() {
    let test_web = super::support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let list = work.path().join("urls.txt");
    let urls = [
        test_web.web.url("img-0001.photos.test", "/ok/a.jpg"),
        test_web
            .web
            .url("img-0002.photos.test", "/status/404/b.jpg"),
        test_web.web.url("img-0003.photos.test", "/ok/c.png"),
        test_web.web.url("private-img.photos.test", "/ok/d.jpg"),
    ];
    // One line that is not UTF-8 is counted, not fatal.
    let mut bytes = format!("# test list\n{}\n\n", urls.join("\n")).into_bytes();
    bytes.extend_from_slice(b"http://img-0004.photos.test/\xff\xfe.jpg\n");
    std::fs::write(&list, bytes).expect("list");
    let output = work.path().join("out.tar");
    let mut command = Command::new(env!("CARGO_BIN_EXE_scraper-d"));
    command
        .args(["fetch", "--summary-json", "--allow-cidr", "127.0.0.1/32"])
        .arg("--nameserver")
        .arg(test_web.dns.addr().to_string())
        .arg("--urls")
        .arg(&list)
        .arg("--output")
        .arg(&output)
        .env_clear();
    let result = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("summary line")).expect("json");
    assert_eq!(summary["urls"], 5);
    assert_eq!(summary["stored"], 2);
    assert_eq!(summary["outcomes"]["http_4xx"], 1);
    assert_eq!(summary["outcomes"]["private_address"], 1);
    assert_eq!(summary["outcomes"]["bad_url"], 1);
    assert!(output.exists());
}
