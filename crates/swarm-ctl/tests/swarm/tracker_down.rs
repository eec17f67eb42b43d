//! `status`, `up` and `heal` with `--tracker` pointing where nothing answers: the tables still
//! come out with heartbeats shown as unknown, and `heal` refuses to act, saying why, at once.

use std::time::{Duration, Instant};

use super::support::World;

/// A loopback URL where nothing listens: a port bound and released again.
async fn dead_tracker() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

#[tokio::test]
async fn status_prints_the_table_with_unknown_heartbeats_and_one_error() {
    let world = World::single().await;
    world.ok(&["up", "2"]).await;
    let tracker = dead_tracker().await;
    let started = Instant::now();
    let output = world
        .run_binary(&["--tracker", &tracker, "status"], &[])
        .await;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for name in ["cah-alpha-1", "cah-alpha-2"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} is in the table: {stdout}"));
        assert!(row.contains(" unknown "), "{row}");
    }
    assert!(stdout.contains("2 nodes, "), "the totals too: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no retry warnings: {stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "swarm-ctl: error: heartbeats are shown as unknown: cannot list the clients of the tracker at {tracker}"
        )) && lines[0].contains("Connection refused"),
        "names the tracker and the cause: {stderr}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn up_succeeds_and_warns_when_only_the_tracker_is_down() {
    let mut world = World::single().await;
    world.extra_args = vec!["--tracker".into(), dead_tracker().await];
    let text = world.ok(&["up", "1"]).await;
    let row = text
        .lines()
        .find(|line| line.starts_with("cah-alpha-1"))
        .unwrap_or_else(|| panic!("the table shows the node: {text}"));
    assert!(row.contains(" unknown "), "{row}");
    assert!(text.contains("swarm alpha has 1 nodes"), "{text}");
}

#[tokio::test]
async fn heal_acts_on_nothing_without_heartbeats_and_says_so() {
    let mut world = World::single().await;
    world.ok(&["up", "2"]).await;
    // Old enough to be stale: only the missing heartbeats keep heal from recreating them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tracker = dead_tracker().await;
    world.extra_args = vec!["--tracker".into(), tracker.clone()];
    world.hetzner.clear_requests();
    let started = Instant::now();
    let (result, text) = world
        .run(&["heal", "--stale-after", "1s", "--recreate", "--yes"])
        .await;
    let message = format!("{:#}", result.expect_err("heal refuses"));
    assert!(
        message.starts_with(&format!(
            "heal restarts and recreates nothing, since it cannot tell stale nodes from healthy ones: cannot list the clients of the tracker at {tracker}"
        )),
        "{message}"
    );
    assert!(text.is_empty(), "{text}");
    assert_eq!(world.count_requests("DELETE", "/v1/servers"), 0);
    assert_eq!(world.count_requests("POST", "/v1/servers"), 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no long retries: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn up_wait_ready_polls_on_while_the_tracker_is_down_and_says_why_at_the_deadline() {
    let mut world = World::single().await;
    let tracker = dead_tracker().await;
    world.extra_args = vec!["--tracker".into(), tracker.clone()];
    let started = Instant::now();
    let (result, _) = world
        .run(&["up", "1", "--wait-ready", "--wait-timeout", "3s"])
        .await;
    let elapsed = started.elapsed();
    let message = format!("{:#}", result.expect_err("the node never showed"));
    assert!(
        message.contains("1 nodes not seen on the tracker within 3s: cah-alpha-1")
            && message.contains(&format!(
                "the tracker could not be read: cannot list the clients of the tracker at {tracker}"
            )),
        "{message}"
    );
    // Polled until the deadline, not cut short by the first failed read, nor held up by the
    // tracker client's two minutes of retries.
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(20),
        "took {elapsed:?}"
    );
}
