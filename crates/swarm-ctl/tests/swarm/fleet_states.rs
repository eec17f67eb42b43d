//! `up` and `down` when servers are not where they should be: dying, stopped, still booting or
//! protected against deletion, and the empty swarm's bill.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::support::{AccountSpec, SWARM, World, names};

#[tokio::test]
async fn up_never_adopts_a_server_that_is_being_deleted() {
    let spec = AccountSpec {
        name: "main",
        server_limit: 25,
        max_nodes: -1,
    };
    let world = World::start_with_delay(vec![spec], Duration::from_secs(2)).await;
    world.ok(&["up", "2"]).await;
    // Both are being deleted (an interrupted `down`, or another operator's) and keep their
    // names for a while: the new node must take a fresh name, not wait on a dying server.
    for server in world.servers(0).await {
        let id = server["id"].as_i64().expect("id");
        world
            .api(0, reqwest::Method::DELETE, &format!("/servers/{id}"), None)
            .await;
    }
    world.ok(&["up", "1", "--wait-timeout", "30s"]).await;
    let alive: Vec<Value> = world
        .servers(0)
        .await
        .into_iter()
        .filter(|server| server["status"] != "deleting")
        .collect();
    assert_eq!(names(&alive), vec!["cah-alpha-3"]);
    assert_eq!(alive[0]["status"], "running");
}

#[tokio::test]
async fn up_after_an_interrupted_up_waits_for_its_booting_nodes() {
    let spec = AccountSpec {
        name: "main",
        server_limit: 25,
        max_nodes: -1,
    };
    let world = World::start_with_delay(vec![spec], Duration::from_millis(700)).await;
    world.create_interrupted_node("cah-alpha-1").await;
    let text = world.ok(&["up", "1"]).await;
    assert!(text.contains("already has 1 nodes"), "{text}");
    let servers = world.servers(0).await;
    assert_eq!(names(&servers), vec!["cah-alpha-1"]);
    assert_eq!(
        servers[0]["status"], "running",
        "up returned only once the node it found booting ran: {text}"
    );
    assert!(
        text.contains("running") && !text.contains("initializing"),
        "{text}"
    );
}

#[tokio::test]
async fn an_empty_swarm_costs_zero_not_minus_zero() {
    let world = World::single().await;
    let text = world.ok(&["status"]).await;
    assert!(text.contains("0 nodes, 0.0000 EUR/h"), "{text}");
    assert!(!text.contains("-0.0"), "{text}");
}

#[tokio::test]
async fn up_names_nodes_that_exist_but_do_not_run() {
    let world = World::single().await;
    // A node of the swarm that was created without starting (the API's start_after_create).
    let body = json!({
        "name": "cah-alpha-1", "server_type": "cx22", "image": "debian-12", "location": "fsn1",
        "start_after_create": false,
        "labels": { "managed-by": "cah-swarm", "swarm": SWARM, "account": "main" },
    });
    world
        .api(0, reqwest::Method::POST, "/servers", Some(body))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = world.ok(&["up", "1"]).await;
    assert!(text.contains("already has 1 nodes"), "{text}");
    assert!(
        text.contains("1 of them do not run (cah-alpha-1 is off)")
            && text.contains("swarm-ctl heal"),
        "{text}"
    );
}

#[tokio::test]
async fn down_deletes_every_other_server_when_one_refuses() {
    let world = World::single().await;
    world.ok(&["up", "3"]).await;
    let id = world.server_id(0, "cah-alpha-2").await;
    // The operator protected one node; Hetzner refuses to delete it with `protected`.
    world
        .api(
            0,
            reqwest::Method::POST,
            &format!("/servers/{id}/actions/change_protection"),
            Some(json!({ "delete": true, "rebuild": true })),
        )
        .await;
    let (result, text) = world.run(&["down", "--yes"]).await;
    let message = format!("{:#}", result.expect_err("one server was not deleted"));
    assert!(
        message.contains("1 of 3 servers were not deleted")
            && message.contains("cah-alpha-2")
            && message.contains("protected")
            && message.contains("swarm-ctl down --yes"),
        "{message}"
    );
    assert!(text.contains("deleted 2 servers"), "{text}");
    let alive: Vec<Value> = world
        .servers(0)
        .await
        .into_iter()
        .filter(|server| server["status"] != "deleting")
        .collect();
    assert_eq!(
        names(&alive),
        vec!["cah-alpha-2"],
        "the others were deleted"
    );
}

#[tokio::test]
async fn ctrl_c_during_up_says_what_was_created_and_how_to_finish() {
    signal_during_up("INT", 130).await;
}

#[tokio::test]
async fn sigterm_during_up_says_what_was_created_and_how_to_finish() {
    signal_during_up("TERM", 143).await;
}

#[tokio::test]
async fn a_closed_terminal_during_up_says_what_was_created_and_how_to_finish() {
    signal_during_up("HUP", 129).await;
}

/// Sends SIG`signal` to a real `swarm-ctl up 2` once it created both servers; it must exit with
/// `status` and name them with the command that finishes the job.
async fn signal_during_up(signal: &str, status: i32) {
    let spec = AccountSpec {
        name: "main",
        server_limit: 25,
        max_nodes: -1,
    };
    // Servers that take long to boot: `up` is still waiting for them when the signal comes.
    let world = World::start_with_delay(vec![spec], Duration::from_secs(30)).await;
    let argv = world.argv(&["up", "2"]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm-ctl"))
        .args(&argv[1..])
        .env("RUST_LOG", "swarm_ctl=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("swarm-ctl binary starts");
    // Signal once it logged both creations: the run has recorded them.
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let logged_both = tokio::time::timeout(Duration::from_secs(20), async {
        let mut created = 0;
        while created < 2 {
            let line = lines.next_line().await.expect("read").expect("a log line");
            created += usize::from(line.contains("server created"));
            log.push_str(&line);
            log.push('\n');
        }
    })
    .await;
    assert!(logged_both.is_ok(), "up created both servers: {log}");
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.expect("read") {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    })
    .await
    .unwrap_or_else(|_| panic!("swarm-ctl stops at SIG{signal}"));
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("swarm-ctl exits")
        .expect("output");
    let stderr = log + &rest;
    assert_eq!(
        output.status.code(),
        Some(status),
        "SIG{signal}: {output:?}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "swarm-ctl: interrupted by SIG{signal}: created cah-alpha-1, cah-alpha-2 (they stay and are billed); `swarm-ctl up 2` again finishes it"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn down_fails_when_a_server_it_counted_gone_still_exists() {
    let world = World::single().await;
    world.ok(&["up", "3"]).await;
    let id = world.server_id(0, "cah-alpha-2").await;
    // The re-read before the delete answers 404 though the server is there.
    world
        .hetzner
        .inject_error_on("GET", &format!("/v1/servers/{id}"), 0, 404, "not_found");
    let (result, _) = world.run(&["down", "--yes"]).await;
    let message = format!("{:#}", result.expect_err("cah-alpha-2 still exists"));
    assert!(
        message.contains("1 of 3 servers were not deleted, they still exist: cah-alpha-2")
            && message.contains("run `swarm-ctl down --yes` again"),
        "{message}"
    );
}

#[tokio::test]
async fn down_names_the_server_whose_delete_action_failed() {
    let world = World::single().await;
    world.ok(&["up", "3"]).await;
    // The first delete is accepted, but its action ends in error: cah-alpha-1 stays.
    world.hetzner.fail_delete_actions(1);
    let (result, _) = world.run(&["down", "--yes"]).await;
    let message = format!("{:#}", result.expect_err("one delete failed"));
    assert!(
        message.contains("1 of 3 servers were not deleted, they still exist: cah-alpha-1")
            && message.contains("run `swarm-ctl down --yes` again"),
        "{message}"
    );
    let left: Vec<Value> = world
        .servers(0)
        .await
        .into_iter()
        .filter(|server| server["status"] != "deleting")
        .collect();
    assert_eq!(names(&left), vec!["cah-alpha-1"]);
}
