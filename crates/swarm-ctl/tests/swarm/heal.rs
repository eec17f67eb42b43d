//! `heal`, `status` and `up --wait-ready` with a real tracker-d in-process: nodes whose tracker
//! clients went silent are restarted over SSH, or recreated when that fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cah_protocol::ClientType;
use cah_tracker_client::{Session, TrackerClient};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracker_d::cli::{Cli, Command};
use url::Url;

use super::support::{AccountSpec, SWARM, World, names};

/// A tracker-d on 127.0.0.1:0 over SQLite in `dir`; stops when the sender is dropped.
pub(crate) async fn start_tracker(dir: &Path) -> (Url, oneshot::Sender<()>) {
    let database_url = format!("sqlite://{}", dir.join("tracker.sqlite").display());
    let argv = [
        "tracker-d".to_owned(),
        "serve".to_owned(),
        "--database-url".to_owned(),
        database_url.clone(),
        "--blob-dir".to_owned(),
        dir.join("staging").display().to_string(),
        "--shutdown-grace".to_owned(),
        "1s".to_owned(),
        // Listings as of now, not as of up to 2 s ago: the heartbeats here are 3 s apart.
        "--read-cache-ttl".to_owned(),
        "0s".to_owned(),
    ];
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("tracker flags").command else {
        unreachable!("serve was given");
    };
    let config = tracker_d::ServeConfig::try_from(*args).expect("tracker config");
    let db = tracker_d::db::Db::connect(&database_url, 4)
        .await
        .expect("tracker database");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tracker_d::serve(listener, db, config, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

/// A fake `ssh` that appends its arguments to `log` and exits with `code`.
fn fake_ssh(dir: &Path, code: i32) -> PathBuf {
    let path = dir.join(format!("fake-ssh-{code}"));
    let log = dir.join("ssh.log");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexit {code}\n",
            log.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A node that "boots" after `delay`: its scraper-d registers with the account's nickname and
/// reports progress starting with the node's name, as scraper-d does.
fn boot_node(tracker: Url, name: &str, delay: Duration) -> tokio::task::JoinHandle<Session> {
    let progress = format!("{name}: starting");
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let tracker = TrackerClient::with_defaults(tracker).expect("client");
        let session = tracker
            .register("nick-main", ClientType::Cpu)
            .await
            .expect("register");
        session.update_progress(&progress).await.expect("heartbeat");
        session
    })
}

/// Waits until the tracker lists a client with `progress` seen at or after `since` (touches are flushed every second).
async fn until_listed(tracker: &TrackerClient, progress: &str, since: i64) {
    for _ in 0..100 {
        let clients = tracker.clients().await.expect("clients");
        if clients
            .iter()
            .any(|client| client.progress == progress && client.last_seen >= since)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the tracker never listed {progress:?}");
}

async fn beat(session: &Session, progress: &str, tracker: &TrackerClient) {
    let since = swarm_ctl::report::unix_now();
    session.update_progress(progress).await.expect("heartbeat");
    until_listed(tracker, progress, since).await;
}

#[tokio::test]
async fn heal_restarts_then_recreates_silent_nodes() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "3"]).await;
    let tracker = TrackerClient::with_defaults(url.clone()).expect("client");
    let healthy = tracker
        .register("nick-main", ClientType::Cpu)
        .await
        .expect("register");
    let silent = tracker
        .register("nick-main", ClientType::Cpu)
        .await
        .expect("register");
    beat(&silent, "cah-alpha-2: job 7", &tracker).await;
    beat(&healthy, "cah-alpha-1: job 1", &tracker).await;
    // cah-alpha-3 never reaches the tracker; cah-alpha-2 goes silent now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    beat(&healthy, "cah-alpha-1: job 2", &tracker).await;

    let text = world.ok(&["status"]).await;
    assert!(
        text.contains("HEARTBEAT") && text.contains("cah-alpha-1: job 2"),
        "{text}"
    );

    let ok_ssh = fake_ssh(world.dir.path(), 0);
    let dry = world.ok(&["heal", "--stale-after", "3s"]).await;
    assert!(
        dry.contains("cah-alpha-2: unhealthy")
            && dry.contains("cah-alpha-3: unhealthy, last heartbeat never"),
        "{dry}"
    );
    assert!(!dry.contains("cah-alpha-1: unhealthy"), "{dry}");
    assert!(dry.contains("dry run"), "{dry}");

    world
        .extra_args
        .extend(["--ssh-command".into(), ok_ssh.display().to_string()]);
    let text = world
        .ok(&[
            "heal",
            "--stale-after",
            "3s",
            "--recheck-after",
            "0s",
            "--yes",
        ])
        .await;
    assert!(
        text.contains("cah-alpha-2: restarted scraper-d")
            && text.contains("cah-alpha-3: restarted scraper-d"),
        "{text}"
    );
    let log = std::fs::read_to_string(world.dir.path().join("ssh.log")).expect("ssh log");
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.lines().all(|line| line
            .ends_with("-- systemctl restart scraper-d && systemctl is-active scraper-d")),
        "{log}"
    );
    assert!(
        log.contains("-l root 203.0.113."),
        "ssh goes to the node's address as root: {log}"
    );
    assert_eq!(
        names(&world.servers(0).await).len(),
        3,
        "a restart recreates nothing"
    );

    // The restart did not bring the heartbeats back: after the recheck the silent nodes are replaced.
    beat(&healthy, "cah-alpha-1: job 3", &tracker).await;
    let text = world
        .ok(&[
            "heal",
            "--stale-after",
            "3s",
            "--recheck-after",
            "300ms",
            "--yes",
        ])
        .await;
    assert!(
        text.contains("cah-alpha-2: still silent 300ms after the restart; recreating it"),
        "{text}"
    );
    assert!(
        text.contains("cah-alpha-2: deleted, replaced by cah-alpha-4"),
        "{text}"
    );
    assert!(
        text.contains("cah-alpha-3: deleted, replaced by cah-alpha-5"),
        "{text}"
    );
    assert_eq!(
        names(&world.servers(0).await),
        vec!["cah-alpha-1", "cah-alpha-4", "cah-alpha-5"]
    );
    let text = world.ok(&["heal", "--stale-after", "3s"]).await;
    assert!(
        text.contains(
            "nothing to heal in swarm alpha: 1 of 3 nodes healthy; 2 not reported to the tracker yet, \
             probably still booting (younger than --stale-after 3s: cah-alpha-4, cah-alpha-5)"
        ),
        "new nodes get time to boot, and are not called healthy: {text}"
    );

    // The new nodes never report either, and SSH to them fails: they are replaced at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    beat(&healthy, "cah-alpha-1: job 4", &tracker).await;
    let failing_ssh = fake_ssh(world.dir.path(), 255);
    let last = world.extra_args.len() - 1;
    world.extra_args[last] = failing_ssh.display().to_string();
    let text = world.ok(&["heal", "--stale-after", "3s", "--yes"]).await;
    assert!(
        text.contains("cah-alpha-4: restart failed") && text.contains("recreating it"),
        "{text}"
    );
    assert!(
        text.contains("cah-alpha-4: deleted, replaced by cah-alpha-6"),
        "{text}"
    );
    assert!(
        text.contains("cah-alpha-5: deleted, replaced by cah-alpha-7"),
        "{text}"
    );
    assert_eq!(
        names(&world.servers(0).await),
        vec!["cah-alpha-1", "cah-alpha-6", "cah-alpha-7"]
    );
}

#[tokio::test]
async fn up_waits_until_nodes_reach_the_tracker() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    let node = boot_node(url, "cah-alpha-1", Duration::from_millis(300));
    let text = world.ok(&["up", "1", "--wait-ready"]).await;
    assert!(
        text.contains("HEARTBEAT") && text.contains(" ago"),
        "the node has a heartbeat: {text}"
    );
    node.await.expect("node task");
}

#[tokio::test]
async fn up_after_an_interrupted_up_waits_until_its_nodes_reach_the_tracker() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    // The first `up 1 --wait-ready` was stopped right after its create call.
    world.create_interrupted_node("cah-alpha-1").await;
    let node = boot_node(url, "cah-alpha-1", Duration::from_millis(800));
    let text = world.ok(&["up", "1", "--wait-ready"]).await;
    assert!(text.contains("already has 1 nodes"), "{text}");
    assert!(
        text.contains("HEARTBEAT") && text.contains(" ago"),
        "waited for the node the interrupted run left: {text}"
    );
    node.await.expect("node task");
}

#[tokio::test]
async fn up_does_not_wait_for_old_nodes_that_never_reached_the_tracker() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "1"]).await;
    // Older than --wait-timeout, and never seen by the tracker: `heal`'s business.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (result, text) = world
        .run(&["up", "2", "--wait-ready", "--wait-timeout", "1s"])
        .await;
    // The new node never reports either, so only it is named.
    let message = format!("{:#}", result.expect_err("the new node never reports"));
    assert!(
        message.contains("1 nodes never reached the tracker") && message.contains("cah-alpha-2"),
        "{message} / {text}"
    );
    assert!(!message.contains("cah-alpha-1"), "{message}");
}

#[tokio::test]
async fn up_does_not_take_an_earlier_servers_client_for_the_new_node() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    let tracker = TrackerClient::with_defaults(url).expect("client");
    // An earlier cah-alpha-1, deleted since, is still on the tracker's client list.
    let earlier = tracker
        .register("nick-main", ClientType::Cpu)
        .await
        .expect("register");
    earlier
        .update_progress("cah-alpha-1: the earlier server")
        .await
        .expect("heartbeat");
    // Creation times are whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let node = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let session = tracker
            .register("nick-main", ClientType::Cpu)
            .await
            .expect("register");
        session
            .update_progress("cah-alpha-1: the new server")
            .await
            .expect("heartbeat");
        session
    });
    let text = world.ok(&["up", "1", "--wait-ready"]).await;
    // The new client is matched by its progress, or before its first progress report by the
    // account's nickname (`Initialized`): either way, not the earlier server's.
    assert!(
        text.contains(" ago") && !text.contains("the earlier server"),
        "waited for the new node's own client: {text}"
    );
    node.await.expect("node task");
}

#[tokio::test]
async fn heal_reports_a_changed_host_key_instead_of_recreating() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "2"]).await;
    // Ages are whole seconds: let the nodes be older than the threshold.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // What OpenSSH prints (LogLevel=ERROR) when a recycled address now has another key.
    let ssh = world.dir.path().join("changed-key-ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\ncat >&2 <<'EOF'\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Host key for 203.0.113.1 has changed and you have requested strict checking.\n\
         Host key verification failed.\n\
         EOF\nexit 255\n",
    )
    .expect("script");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    world
        .extra_args
        .extend(["--ssh-command".into(), ssh.display().to_string()]);
    let (result, text) = world
        .run(&[
            "heal",
            "--stale-after",
            "1s",
            "--recheck-after",
            "0s",
            "--yes",
        ])
        .await;
    let message = format!(
        "{:#}",
        result.expect_err("a changed key needs the operator")
    );
    assert!(
        message.contains("host keys changed on cah-alpha-1, cah-alpha-2"),
        "{message}"
    );
    assert!(
        text.contains("cah-alpha-1: not restarted and not recreated")
            && text.contains("Hetzner recycles IPs")
            && text.contains("ssh-keygen -R '203.0.113."),
        "{text}"
    );
    assert!(
        !text.contains("recreating it") && !text.contains("deleted"),
        "{text}"
    );
    assert_eq!(
        names(&world.servers(0).await),
        vec!["cah-alpha-1", "cah-alpha-2"],
        "a key mismatch recreates nothing"
    );
}

#[tokio::test]
async fn heal_replaces_a_paused_accounts_node_elsewhere() {
    let mut world = World::start(vec![
        AccountSpec {
            name: "active",
            server_limit: 25,
            max_nodes: -1,
        },
        AccountSpec {
            name: "paused",
            server_limit: 25,
            max_nodes: 0,
        },
    ])
    .await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world
        .foreign_server(
            1,
            "cah-alpha-1",
            serde_json::json!({ "managed-by": "cah-swarm", "swarm": SWARM, "account": "paused" }),
        )
        .await;
    // Ages are whole seconds: let the node be older than the threshold.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = world
        .ok(&["heal", "--stale-after", "1s", "--recreate", "--yes"])
        .await;
    assert!(
        text.contains(
            "cah-alpha-1: deleted, replaced by cah-alpha-2 in account active (paused is paused)"
        ),
        "{text}"
    );
    assert!(
        world.servers(1).await.is_empty(),
        "nothing new in the paused account"
    );
    assert_eq!(names(&world.servers(0).await), vec!["cah-alpha-2"]);
}

#[tokio::test]
async fn heal_recreate_that_cannot_replace_fails_and_says_up() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "2"]).await;
    // Neither node ever reaches the tracker; the account refuses the replacements.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..2 {
        world
            .hetzner
            .inject_error_on("POST", "/v1/servers", 0, 403, "resource_limit_exceeded");
    }
    let (result, text) = world
        .run(&["heal", "--stale-after", "1s", "--recreate", "--yes"])
        .await;
    let message = format!("{:#}", result.expect_err("nodes were lost"));
    assert!(
        text.contains("cah-alpha-1: deleted, but no replacement could be created"),
        "{text}"
    );
    assert!(
        message.contains("deleted cah-alpha-1, cah-alpha-2 but could not create a replacement")
            && message.contains("`swarm-ctl up 2`"),
        "{message}"
    );
}

#[tokio::test]
async fn heal_recreate_moves_to_another_account_when_its_own_is_full() {
    let specs = ["main", "spare"]
        .into_iter()
        .map(|name| AccountSpec {
            name,
            server_limit: 25,
            max_nodes: -1,
        })
        .collect();
    let mut world = World::start(specs).await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "1"]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    world
        .hetzner
        .inject_error_on("POST", "/v1/servers", 0, 403, "resource_limit_exceeded");
    let text = world
        .ok(&["heal", "--stale-after", "1s", "--recreate", "--yes"])
        .await;
    assert!(
        text.contains(
            "cah-alpha-1: deleted, replaced by cah-alpha-2 in account spare (main is full)"
        ),
        "{text}"
    );
    assert_eq!(names(&world.servers(1).await), vec!["cah-alpha-2"]);
}
