//! A tracker that is down when the daemon starts is waited for under systemd's notify
//! protocol: the daemon keeps extending its start (`EXTEND_TIMEOUT_USEC`, so the unit's start
//! timeout does not kill it) with a status line naming what it waits for, which `READY=1`
//! replaces once the tracker answers; a stop request during the wait ends it cleanly.

use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::process::Child;

use crate::parity_support;
use crate::support::{RealTracker, terminate};

/// The binary started against a tracker port nothing listens on, with a notify socket of its
/// own; the port, the socket and the child (its folder lives as long as the returned guard).
async fn start_without_tracker() -> (u16, UnixDatagram, Child, tempfile::TempDir) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .args(["run", "--devices", "cpu", "--tags", "off"])
        .arg("--tracker")
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg("--model")
        .arg(parity_support::tiny_model())
        .arg("--output")
        .arg(dir.path().join("dataset"))
        .env("NOTIFY_SOCKET", &socket_path)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn clip-gpu-d");
    (port, socket, child, dir)
}

/// The first notify message that contains `needle`, within a minute.
async fn message_with(socket: &UnixDatagram, needle: &str) -> String {
    let mut buffer = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = socket.recv(&mut buffer).await.expect("notify message");
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if message.contains(needle) {
                return message;
            }
            assert!(
                needle == "READY=1" || !message.contains("READY=1"),
                "ready without a tracker: {message}"
            );
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no notify message with {needle}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_down_at_start_is_waited_for_with_the_start_extended() {
    let (port, socket, mut child, _dir) = start_without_tracker().await;
    let message = message_with(&socket, "EXTEND_TIMEOUT_USEC=").await;
    assert!(
        message.contains("EXTEND_TIMEOUT_USEC=60000000")
            && message.contains(&format!(
                "STATUS=waiting for the tracker at http://127.0.0.1:{port}/"
            )),
        "{message}"
    );
    // The tracker comes up: the daemon registers, and `READY=1` replaces the status line.
    let tracker = RealTracker::start_on(([127, 0, 0, 1], port).into(), &[]).await;
    let ready = message_with(&socket, "READY=1").await;
    assert!(ready.contains("STATUS=running"), "{ready}");
    let exit = terminate(&mut child).await;
    assert!(exit.success(), "{exit:?}");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_waiting_for_the_tracker_exits_cleanly() {
    let (_port, socket, mut child, _dir) = start_without_tracker().await;
    message_with(&socket, "EXTEND_TIMEOUT_USEC=").await;
    // systemd's stop during the wait: a clean exit, nothing held.
    let exit = terminate(&mut child).await;
    assert!(exit.success(), "{exit:?}");
}
