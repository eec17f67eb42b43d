//! A tracker-d process killed with SIGKILL mid-run and restarted loses nothing: claims, tokens,
//! handoffs and closed jobs are all still there, and the run finishes with every job done once.
//! SIGTERM then stops it gracefully.

use super::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::{BACKENDS, Backend};

struct Process {
    child: Child,
    base: String,
}

fn start(database_url: &str, dir: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--database-url", database_url, "--blob-dir"])
        .arg(dir.join("staging"))
        .args([
            "--register-per-minute",
            "10000",
            "--register-burst",
            "10000",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start tracker-d");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("tracker-d exited before listening")
            .expect("read log");
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "listening" {
            break event["fields"]["addr"]
                .as_str()
                .expect("addr field")
                .to_owned();
        }
    };
    // Keep draining the log so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process {
        child,
        base: format!("http://{addr}"),
    }
}

fn import(database_url: &str, dir: &Path, wats: usize) {
    let list = dir.join("wat.paths");
    let paths: Vec<String> = (0..wats)
        .map(|i| format!("crawl-data/CC-MAIN-2024-51/segments/1/wat/{i}.warc.wat.gz"))
        .collect();
    std::fs::write(&list, paths.join("\n")).expect("write list");
    let status = Command::new(env!("CARGO_BIN_EXE_tracker-d"))
        .args(["import", "--database-url", database_url, "--shuffle"])
        .arg(&list)
        .status()
        .expect("run import");
    assert!(status.success());
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, String) {
    let response = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("post");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
    )
}

#[tokio::test]
async fn sigkill_and_restart_lose_nothing() {
    for backend in BACKENDS {
        sigkill(backend).await;
    }
}

async fn sigkill(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = support::fresh_database(backend, dir.path()).await;
    import(&database_url, dir.path(), 20);
    let http = reqwest::Client::new();
    let mut tracker = start(&database_url, dir.path());

    let mut tokens = Vec::new();
    for i in 0..4 {
        let response = http
            .get(format!(
                "{}/api/new?nickname=w{i}&type=HYBRID",
                tracker.base
            ))
            .send()
            .await
            .expect("register");
        let value: Value = response.json().await.expect("json");
        tokens.push(value["token"].as_str().expect("token").to_owned());
    }
    let mut closed = Vec::new();
    let mut held = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (status, body) = post(
            &http,
            &tracker.base,
            "/api/ext/claim",
            json!({"token": token, "max_jobs": 3}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let jobs: Value = serde_json::from_str(&body).expect("json");
        for (j, job) in jobs["jobs"].as_array().expect("jobs").iter().enumerate() {
            let number = job["number"].as_u64().expect("number");
            if (i + j) % 2 == 0 {
                let (status, _) = post(
                    &http,
                    &tracker.base,
                    "/api/ext/complete",
                    json!({"token": token, "number": number, "count": 1}),
                )
                .await;
                assert_eq!(status, 200);
                closed.push(number);
            } else {
                held.push((token.clone(), number));
            }
        }
    }
    // SIGKILL: no shutdown path runs.
    tracker.child.kill().expect("kill");
    tracker.child.wait().expect("reap");

    tracker = start(&database_url, dir.path());
    for token in &tokens {
        let (status, body) = post(
            &http,
            &tracker.base,
            "/api/validateWorker",
            json!({"token": token, "type": "HYBRID"}),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (200, "True"),
            "{backend:?}: tokens survive"
        );
    }
    for (token, number) in &held {
        let (status, body) = post(
            &http,
            &tracker.base,
            "/api/ext/heartbeat",
            json!({"token": token, "progress": "back"}),
        )
        .await;
        assert_eq!(status, 200);
        let heartbeat: Value = serde_json::from_str(&body).expect("json");
        assert!(
            heartbeat["jobs"]
                .as_array()
                .expect("jobs")
                .contains(&json!(number)),
            "{backend:?}: claim survives"
        );
        let (status, _) = post(
            &http,
            &tracker.base,
            "/api/ext/complete",
            json!({"token": token, "number": number, "count": 2}),
        )
        .await;
        assert_eq!(status, 200);
    }
    for number in &closed {
        let (status, _) = post(
            &http,
            &tracker.base,
            "/api/ext/complete",
            json!({"token": tokens[0], "number": number, "count": 9}),
        )
        .await;
        assert_eq!(status, 409, "{backend:?}: closed stays closed");
    }
    // Finish the run.
    loop {
        let (_, body) = post(
            &http,
            &tracker.base,
            "/api/ext/claim",
            json!({"token": tokens[0], "max_jobs": 50}),
        )
        .await;
        let jobs: Value = serde_json::from_str(&body).expect("json");
        let jobs = jobs["jobs"].as_array().expect("jobs").clone();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            let (status, _) = post(
                &http,
                &tracker.base,
                "/api/ext/complete",
                json!({"token": tokens[0], "number": job["number"], "count": 1}),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    let data: Value = http
        .get(format!("{}/data", tracker.base))
        .send()
        .await
        .expect("data")
        .json()
        .await
        .expect("json");
    assert_eq!(data["completion_str"], "40 / 40", "{backend:?}");
    assert_eq!(
        data["total_pairs_scraped"].as_u64().expect("pairs"),
        closed.len() as u64 + 2 * held.len() as u64 + (40 - closed.len() - held.len()) as u64,
        "{backend:?}: every job credited exactly once"
    );
    // SIGTERM: a graceful stop, exit status 0, within the shutdown grace.
    let pid = tracker.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(status) = tracker.child.try_wait().expect("poll") {
            assert!(status.success(), "{backend:?}: SIGTERM exit {status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tracker-d ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
