//! S3 settings that cannot work stop the start with a message saying what to set, instead of
//! being waited out as a store outage: missing credentials (the instance metadata service
//! turned off, or refusing, as a non-EC2 host's does) and an endpoint that is not http(s).
//! No test here reaches the network: the metadata endpoint is a local fake or a closed
//! loopback port, and so is the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::parity_support;
use crate::support::{output_within_a_minute, run_against_no_tracker};

/// `clip-gpu-d run` to `s3://laion/runs` with no `AWS_*` variable but `envs` (every one the
/// test process has is removed), an unreachable loopback store and tracker; the exit code and
/// stderr, which must come within a minute.
async fn run_without_credentials(dir: &std::path::Path, envs: &[(&str, &str)]) -> (i32, String) {
    let mut command = run_against_no_tracker(dir, &parity_support::tiny_model());
    command.args([
        "--output",
        "s3://laion/runs",
        "--s3-endpoint",
        "http://127.0.0.1:1",
    ]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command.envs(envs.iter().copied());
    let output = output_within_a_minute(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn missing_credentials_stop_the_start_naming_what_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let envs = [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Even a regression that asked the metadata service would stay on this machine.
        ("AWS_METADATA_ENDPOINT", "http://127.0.0.1:1"),
    ];
    let (code, stderr) = run_without_credentials(dir.path(), &envs).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no usable S3 credentials for s3://laion: none is set")
            && stderr.contains("AWS_EC2_METADATA_DISABLED")
            && stderr.contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach a service"), "{stderr}");
}

#[tokio::test]
async fn a_refusing_metadata_service_stops_the_start_instead_of_being_waited_out() {
    // A metadata service that refuses every request, as the audit's host answered
    // `PUT /latest/api/token` with 403.
    let requests = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback({
        let requests = Arc::clone(&requests);
        move || {
            requests.fetch_add(1, Ordering::Relaxed);
            async { (axum::http::StatusCode::FORBIDDEN, "forbidden") }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metadata");
    let metadata = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let envs = [("AWS_METADATA_ENDPOINT", metadata.as_str())];
    let (code, stderr) = run_without_credentials(dir.path(), &envs).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "no usable S3 credentials for s3://laion: none is set, and the EC2 instance metadata service gave none"
        ) && stderr.contains("AWS_ACCESS_KEY_ID")
            && stderr.contains("403"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach a service"), "{stderr}");
    let asked = requests.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&asked),
        "asked the metadata service {asked} times"
    );
}

#[tokio::test]
async fn an_s3_endpoint_that_is_not_http_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = run_against_no_tracker(dir.path(), &parity_support::tiny_model());
    command
        .args([
            "--output",
            "s3://laion/runs",
            "--s3-endpoint",
            "ftp://127.0.0.1:1",
        ])
        .args([
            "--s3-access-key-id",
            "key",
            "--s3-secret-access-key",
            "secret",
        ]);
    let output = output_within_a_minute(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("'ftp://127.0.0.1:1' for '--s3-endpoint")
            && stderr.contains("http:// or https://"),
        "{stderr}"
    );
}
