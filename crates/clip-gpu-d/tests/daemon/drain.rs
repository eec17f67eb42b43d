//! The drain after SIGTERM ends at `--drain-timeout`: a job that cannot finish in time (its
//! bundle download never ends) and the open shard's job are released, no shard is written, and
//! the daemon exits 0. Under systemd it says READY=1, WATCHDOG=1 and STOPPING=1. A second
//! SIGTERM ends the drain the same way at once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cah_protocol::ClientType;
use cah_tracker_client::JobOutput;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::parity_support;
use crate::support::{
    RealTracker, eventually, good_bundle, hand_in, metric, scrape, sigterm, with_metadata,
};

/// An HTTP server that answers with headers and a few bytes of a 1 MiB body, then sends
/// nothing more and keeps the connection open: a download that never ends.
async fn stalling_origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: 1048576\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&[0u8; 512]).await;
            open.push(socket);
        }
    });
    addr
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path.display().to_string());
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_releases_held_jobs_and_writes_no_half_shard() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    assert_eq!(jobs.len(), 2);
    let photos = parity_support::photos();
    // Job 1: a good bundle, scored into the open shard. Job 2: handed off (2021 style) as a URL
    // on an origin whose download never ends.
    let number = jobs[0].number;
    let (entries, samples) = good_bundle(&jobs[0], &photos[..2], move |i| {
        format!("http://img.test/{number}/{i}.jpg")
    });
    let blob = hand_in(&cpu, number, with_metadata(entries, &samples, number)).await;
    let stalled = format!("http://{}/bundle.tar", stalling_origin().await);
    cpu.complete(jobs[1].number, JobOutput::Bundle(stalled.clone()))
        .await
        .expect("hand off job 2");

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    // Read as systemd does, at once: a full socket queue (10 datagrams) would block the sender.
    let stop_listening = Arc::new(AtomicBool::new(false));
    let listener = std::thread::spawn({
        let stop = Arc::clone(&stop_listening);
        move || {
            let (mut messages, mut buffer) = (Vec::new(), [0u8; 256]);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(length) = notify.recv(&mut buffer) {
                    messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
                }
            }
            messages
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    // `exec` keeps the shell's PID, which WATCHDOG_PID must name, as systemd sets it.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"export WATCHDOG_PID=$$; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .args(["--log-format", "json", "run", "--devices", "cpu"])
        .args(["--threshold", "-1", "--tags", "off", "--shard-size", "100"])
        .args(["--flush-interval", "1h", "--poll-interval", "1s"])
        .args(["--drain-timeout", "2s"])
        .arg("--tracker")
        .arg(tracker.base_url.as_str())
        .arg("--model")
        .arg(parity_support::tiny_model())
        .arg("--output")
        .arg(&output)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn clip-gpu-d");
    let logs = tokio::spawn({
        let mut stderr = child.stderr.take().expect("stderr");
        async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        }
    });
    eventually("job 1 in the open shard and job 2 downloading", || async {
        let text = scrape(&metrics_url).await?;
        let kept = metric(&text, "clip_pairs_kept_total")?;
        let held = metric(&text, "clip_held_jobs")?;
        (kept == 2.0 && held == 2.0).then_some(())
    })
    .await;
    // Let a few watchdog intervals (400 ms) pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let signalled = Instant::now();
    sigterm(&child);
    let waited = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let drained_for = signalled.elapsed();
    if waited.is_err() {
        let _ = child.start_kill();
    }
    let logs = logs.await.expect("stderr");
    let exit = waited
        .unwrap_or_else(|_| {
            panic!(
                "clip-gpu-d did not exit after its drain deadline:
{logs}"
            )
        })
        .expect("wait");
    assert!(exit.success(), "{exit:?}\n{logs}");
    assert!(
        drained_for >= Duration::from_secs(2) && drained_for < Duration::from_secs(30),
        "drained for {drained_for:?}"
    );

    // No shard, not even a temporary one, and no download left behind.
    assert_eq!(files_under(&output), Vec::<String>::new());
    // Neither job was completed; both were released, so another daemon gets them at once
    // (the lease is 30 minutes).
    let done = tracker
        .client()
        .is_completed(&[blob, stalled])
        .await
        .expect("is completed");
    assert!(done.is_empty(), "{done:?}");
    let released: BTreeSet<u64> = logs
        .lines()
        .filter(|line| line.contains("released the jobs still held"))
        .flat_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("json log");
            let jobs = entry["fields"]["jobs"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            jobs.split(|c: char| !c.is_ascii_digit())
                .filter_map(|number| number.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    let numbers: BTreeSet<u64> = jobs.iter().map(|job| job.number).collect();
    assert_eq!(released, numbers, "{logs}");
    let gpu = tracker.register("gpu-2", ClientType::Gpu).await;
    let again: BTreeSet<u64> = gpu
        .claim(8, false)
        .await
        .expect("claim")
        .iter()
        .map(|job| job.number)
        .collect();
    assert_eq!(again, numbers);

    // systemd saw readiness, watchdog pings while the daemon worked and drained, and the stop.
    stop_listening.store(true, Ordering::Relaxed);
    let messages = listener.join().expect("notify listener");
    let count = |state: &str| {
        messages
            .iter()
            .filter(|message| message.lines().any(|line| line == state))
            .count()
    };
    assert_eq!(count("READY=1"), 1, "{messages:?}");
    assert!(count("WATCHDOG=1") >= 3, "{messages:?}");
    assert_eq!(count("STOPPING=1"), 1, "{messages:?}");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_the_drain_short() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    // A job whose bundle download never ends: the drain cannot finish before its deadline.
    let stalled = format!("http://{}/bundle.tar", stalling_origin().await);
    cpu.complete(jobs[0].number, JobOutput::Bundle(stalled.clone()))
        .await
        .expect("hand off the job");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .args([
            "run",
            "--devices",
            "cpu",
            "--threshold",
            "-1",
            "--tags",
            "off",
        ])
        .args(["--flush-interval", "1h", "--poll-interval", "1s"])
        .args(["--drain-timeout", "10m"])
        .arg("--tracker")
        .arg(tracker.base_url.as_str())
        .arg("--model")
        .arg(parity_support::tiny_model())
        .arg("--output")
        .arg(dir.path().join("dataset"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn clip-gpu-d");
    let logs = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = tokio::spawn({
        let (logs, stderr) = (Arc::clone(&logs), child.stderr.take().expect("stderr"));
        async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut logs = logs.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        }
    });
    let logged = |needle: &'static str| {
        let logs = Arc::clone(&logs);
        move || {
            let found = logs.lock().expect("logs").contains(needle);
            async move { found.then_some(()) }
        }
    };
    eventually("the job held, its download stalled", || async {
        let text = scrape(&metrics_url).await?;
        (metric(&text, "clip_held_jobs")? == 1.0).then_some(())
    })
    .await;
    sigterm(&child);
    eventually("the drain to begin", logged("draining")).await;
    // The drain would last 10 minutes; a second SIGTERM (or Ctrl-C) ends it now.
    let signalled = Instant::now();
    sigterm(&child);
    let waited = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    if waited.is_err() {
        let _ = child.start_kill();
    }
    let _ = reader.await;
    let logs = logs.lock().expect("logs").clone();
    let exit = waited
        .unwrap_or_else(|_| panic!("the second SIGTERM did not end the drain:\n{logs}"))
        .expect("wait");
    assert!(exit.success(), "{exit:?}\n{logs}");
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "stopped {:?} after the second SIGTERM",
        signalled.elapsed()
    );
    assert!(
        logs.contains("drain cut short by a second stop request"),
        "{logs}"
    );
    // The job was released, not left to its 30-minute lease.
    let gpu = tracker.register("gpu-2", ClientType::Gpu).await;
    let again: Vec<u64> = gpu
        .claim(8, false)
        .await
        .expect("claim")
        .iter()
        .map(|job| job.number)
        .collect();
    assert_eq!(again, [jobs[0].number], "{logs}");
    tracker.stop().await;
}
