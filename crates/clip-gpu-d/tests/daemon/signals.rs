//! The real binary drains on SIGTERM: it stops claiming, scores the jobs it holds, closes the
//! open (short) shard, completes the jobs and exits 0. A SIGTERM while the checkpoint loads
//! stops it cleanly too (the handlers are installed first).

use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use cah_protocol::ClientType;
use tokio::io::AsyncReadExt;

use crate::parity_support;
use crate::support::{
    RealTracker, check_dataset, eventually, hand_in_photos, run_against_no_tracker, terminate,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_held_jobs_into_a_short_shard() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    let photos = parity_support::photos();
    let (blobs, _) = hand_in_photos(&cpu, &jobs, &photos, 2, "").await;
    // An ephemeral port for the metrics endpoint, so the test sees when the jobs are held.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
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
        .args([
            "--shard-size",
            "100",
            "--flush-interval",
            "1h",
            "--poll-interval",
            "1s",
        ])
        .arg("--tracker")
        .arg(tracker.base_url.as_str())
        .arg("--model")
        .arg(parity_support::tiny_model())
        .arg("--output")
        .arg(&output)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .expect("spawn clip-gpu-d");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    eventually("both jobs scored into the open shard", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        text.contains("clip_pairs_kept_total 4\n").then_some(())
    })
    .await;
    assert!(
        !output.join("00000_stats.json").is_file(),
        "the shard is still open"
    );
    let exit = terminate(&mut child).await;
    assert!(exit.success(), "{exit:?}");
    let done = tracker
        .client()
        .is_completed(&blobs)
        .await
        .expect("is completed");
    assert_eq!(done.len(), 2, "both jobs completed during the drain");
    let summary = check_dataset(&output);
    assert_eq!((summary.rows, summary.shards.len()), (4, 1), "{summary:?}");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_checkpoint_loads_exits_cleanly() {
    // The tiny checkpoint with its tokenizer.json a named pipe: the load blocks reading it for
    // as long as the test keeps the pipe open without writing, a model load that takes for ever.
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    std::fs::create_dir(&model).expect("model folder");
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(parity_support::tiny_model().join(name), model.join(name)).expect("copy");
    }
    let pipe = model.join("tokenizer.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut child = run_against_no_tracker(dir.path(), &model)
        .arg("--output")
        .arg(dir.path().join("dataset"))
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
    // Opening the write end without blocking succeeds once the daemon has the read end open,
    // that is, once it is inside the load.
    const O_NONBLOCK: i32 = 0o4000; // Linux
    let _writer = eventually("the daemon to open the checkpoint", || async {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&pipe)
            .ok()
    })
    .await;
    let signalled = Instant::now();
    // Before, SIGTERM's default action killed the daemon here (exit 143), with no log line.
    let exit = terminate(&mut child).await;
    let logs = logs.await.expect("stderr");
    assert!(exit.success(), "{exit:?}\n{logs}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        signalled.elapsed()
    );
    assert!(
        logs.contains("shutdown requested") && logs.contains("stopped before the start completed"),
        "{logs}"
    );
}
