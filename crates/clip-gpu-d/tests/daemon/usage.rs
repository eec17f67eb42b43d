//! Configuration errors of `clip-gpu-d run` exit 64 (EX_USAGE), which the unit's
//! `RestartPreventExitStatus=64` does not restart, with a message naming the flag and its
//! environment variable, before anything is loaded, created or contacted.

use std::path::Path;
use std::time::Duration;

use crate::parity_support;
use crate::support::run_against_no_tracker;

/// Runs `clip-gpu-d run` in `dir` with `extra` flags and `envs` against a tracker port nothing
/// listens on; asserts exit 64 within a minute (a daemon that accepted the configuration waits
/// for the tracker for ever), and returns stderr.
async fn run_refused(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = run_against_no_tracker(dir, &parity_support::tiny_model());
    if !extra.contains(&"--output") && !envs.iter().any(|(name, _)| *name == "CLIP_OUTPUT") {
        command.args(["--output", "dataset"]);
    }
    let running = command
        .args(extra)
        .envs(envs.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap_or_else(|_| panic!("{extra:?} {envs:?}: accepted, still running after 60 s"))
        .expect("run clip-gpu-d");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(64),
        "{extra:?} {envs:?}: {stderr}"
    );
    stderr
}

#[tokio::test]
async fn cpu_threads_below_one_are_refused_before_libtorch_sees_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    // libtorch aborted the process on this (exit 134 in a release build), and systemd
    // restarted it for ever.
    let stderr = run_refused(dir.path(), &[], &[("CLIP_CPU_THREADS", "0")]).await;
    assert!(
        stderr.contains("'0' for '--cpu-threads")
            && stderr.contains("CLIP_CPU_THREADS, which is set to \"0\""),
        "{stderr}"
    );
    let stderr = run_refused(dir.path(), &["--cpu-threads=-3"], &[]).await;
    assert!(stderr.contains("'-3' for '--cpu-threads"), "{stderr}");
    for flag in [
        "--batch-size",
        "--shard-size",
        "--max-jobs",
        "--max-bundle-bytes",
    ] {
        let stderr = run_refused(dir.path(), &[flag, "0"], &[]).await;
        assert!(stderr.contains(&format!("'0' for '{flag}")), "{stderr}");
    }
    assert!(!dir.path().join("dataset").exists());
}

#[tokio::test]
async fn a_zero_poll_interval_is_refused_instead_of_busy_looping_the_tracker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = run_refused(dir.path(), &[], &[("CLIP_POLL_INTERVAL", "0s")]).await;
    assert!(
        stderr.contains("invalid configuration")
            && stderr
                .contains("--poll-interval (CLIP_POLL_INTERVAL) is 0s, but must be at least 1s"),
        "{stderr}"
    );
    assert!(!dir.path().join("dataset").exists());
}

#[tokio::test]
async fn boolean_variables_take_the_forms_environment_files_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepted: the configuration then fails on the poll interval, not on CLIP_TFRECORD.
    for value in ["1", "yes", "on", "true", "0", "no", "off", "false"] {
        let envs = [("CLIP_TFRECORD", value), ("CLIP_POLL_INTERVAL", "0s")];
        let stderr = run_refused(dir.path(), &[], &envs).await;
        assert!(
            stderr.contains("--poll-interval (CLIP_POLL_INTERVAL) is 0s"),
            "CLIP_TFRECORD={value}: {stderr}"
        );
    }
    let stderr = run_refused(dir.path(), &[], &[("CLIP_TFRECORD", "maybe")]).await;
    assert!(
        stderr.contains("'maybe' for '--tfrecord'")
            && stderr.contains("CLIP_TFRECORD, which is set to \"maybe\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_output_url_other_than_s3_is_refused_not_taken_for_a_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // This became the local folder ./ftp:/x/y, and jobs were completed into it.
    let stderr = run_refused(dir.path(), &["--output", "ftp://x/y"], &[]).await;
    assert!(
        stderr.contains("invalid value 'ftp://x/y' for '--output")
            && stderr.contains("looks like a URL (ftp:)")
            && stderr.contains("s3://BUCKET/PREFIX"),
        "{stderr}"
    );
    let stderr = run_refused(dir.path(), &[], &[("CLIP_OUTPUT", "gs://laion/runs")]).await;
    assert!(
        stderr.contains("looks like a URL (gs:)")
            && stderr.contains("CLIP_OUTPUT, which is set to \"gs://laion/runs\""),
        "{stderr}"
    );
    let created: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(created.is_empty(), "{created:?}");
}

#[tokio::test]
async fn an_output_folder_that_is_a_file_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("afile"), b"").expect("file");
    // This failed with "failed to write afile: File exists", naming no flag.
    let stderr = run_refused(dir.path(), &["--output", "afile"], &[]).await;
    assert!(
        stderr.contains("--output (CLIP_OUTPUT) afile is a file, not a folder"),
        "{stderr}"
    );
    let stderr = run_refused(dir.path(), &["--output", "afile/dataset"], &[]).await;
    assert!(
        stderr.contains("--output (CLIP_OUTPUT) afile/dataset: afile is a file, not a folder"),
        "{stderr}"
    );
    // Keys and a loopback endpoint: were the configuration accepted, nothing would leave
    // the machine (no instance metadata service, no AWS).
    let spool = [
        "--output",
        "s3://laion/runs",
        "--spool-dir",
        "afile",
        "--s3-endpoint",
        "http://127.0.0.1:1",
        "--s3-access-key-id",
        "key",
        "--s3-secret-access-key",
        "secret",
    ];
    let stderr = run_refused(dir.path(), &spool, &[]).await;
    assert!(
        stderr.contains("--spool-dir (CLIP_SPOOL_DIR) afile is a file, not a folder"),
        "{stderr}"
    );
}
