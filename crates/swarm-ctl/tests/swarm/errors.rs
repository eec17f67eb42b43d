//! API trouble: 429 storms, injected server errors, and refusals that must tell the user what to do.

use super::support::World;

#[tokio::test]
async fn survives_a_rate_limit_storm() {
    let world = World::single().await;
    world.hetzner.inject_rate_limit_storm(8);
    world.ok(&["up", "2"]).await;
    assert_eq!(world.servers(0).await.len(), 2);
    let n_429 = world
        .hetzner
        .requests()
        .iter()
        .filter(|request| request.status == 429)
        .count();
    assert_eq!(n_429, 8, "every 429 was retried");
    world.hetzner.inject_errors(3, 503, "unavailable");
    world.ok(&["status"]).await;
}

#[tokio::test]
async fn gives_up_after_bounded_retries() {
    let world = World::single().await;
    world.hetzner.inject_rate_limit_storm(50);
    let (result, _) = world.run(&["status"]).await;
    let message = format!("{:#}", result.expect_err("retries are bounded"));
    assert!(message.contains("rate_limit_exceeded"), "{message}");
    assert!(
        message.contains("requests per hour is used up") && message.contains("full again at"),
        "the final error says when to retry: {message}"
    );
    let n_429 = world
        .hetzner
        .requests()
        .iter()
        .filter(|request| request.status == 429)
        .count();
    assert_eq!(n_429, 13, "one attempt plus --api-retries 12");
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let world = World::single().await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["up", "1", "--server-type", "cx99"],
            "unknown server type cx99; known: cx22",
        ),
        (
            &["up", "1", "--location", "fsn1,ash"],
            "server type cx22 is not offered in ash; it is offered in: fsn1, nbg1, hel1",
        ),
        (
            &["logs", "cah-alpha-404"],
            "swarm alpha has no node cah-alpha-404",
        ),
        (&["heal"], "pass --tracker or set SWARM_TRACKER_URL"),
        (
            &["up", "1", "--wait-ready"],
            "pass --tracker or set SWARM_TRACKER_URL",
        ),
    ];
    for (command, expected) in cases {
        let (result, _) = world.run(command).await;
        let message = format!("{:#}", result.expect_err("refused"));
        assert!(message.contains(expected), "{command:?}: {message}");
    }
    assert_eq!(world.count_requests("POST", "/v1/servers"), 0);

    // A wrong token: the API's code comes through with whose token it is and where it came
    // from; the token does not.
    let token_file = world.dir.path().join("main.token");
    std::fs::write(&token_file, "not-a-token").expect("write token");
    let (result, _) = world.run(&["status"]).await;
    let message = format!("{:#}", result.expect_err("unauthorized"));
    assert!(
        message.contains("unauthorized")
            && message.contains(&format!(
                "the api refused the token of account main, from the token file {}: check it",
                token_file.display()
            ))
            && !message.contains("not-a-token"),
        "{message}"
    );
}

/// A loopback web server that is not the Hetzner API: every request gets `status_line` and
/// `body`. Its base URL.
async fn not_the_api(status_line: &'static str, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let _ = stream.read(&mut buffer).await;
            let reply = format!(
                "HTTP/1.1 {status_line}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn an_api_url_that_is_not_the_api_is_named_with_its_flag() {
    let world = World::single().await;
    let cases = [
        (
            not_the_api("404 Not Found", "").await,
            "answered GET /servers with http 404 and no Hetzner API error in it",
        ),
        (
            not_the_api("200 OK", "<html>welcome</html>").await,
            "answered GET /servers with http 200 and a body that is not JSON",
        ),
    ];
    for (url, expected) in cases {
        let mut argv = world.argv(&["status"]);
        let at = argv
            .iter()
            .position(|arg| arg == "--api-url")
            .expect("flag")
            + 1;
        argv[at] = url.clone();
        let args = <swarm_ctl::Args as clap::Parser>::try_parse_from(&argv).expect("flags");
        let result = swarm_ctl::run(args, &|_| None, &mut Vec::new(), std::future::pending()).await;
        let message = format!("{:#}", result.expect_err("not the api"));
        assert!(
            message.contains(&format!("{url} {expected}: it does not look like the Hetzner Cloud API; check --api-url (HCLOUD_API_URL), which is https://api.hetzner.cloud/v1 unless set")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn missing_accounts_file_is_explained() {
    let world = World::single().await;
    std::fs::remove_file(world.dir.path().join("swarm.toml")).expect("remove");
    let (result, _) = world.run(&["status"]).await;
    let message = format!("{:#}", result.expect_err("no file"));
    assert!(
        message.contains("create it from deploy/swarm.example.toml or pass --config"),
        "{message}"
    );
}

#[tokio::test]
async fn unsafe_bootstrap_values_fail_before_any_change() {
    let world = World::single().await;
    let path = world.dir.path().join("swarm.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("/scraper-d\"", "/scraper-d$(reboot)\"")).expect("write");
    let (result, _) = world.run(&["up", "2"]).await;
    let message = format!("{:#}", result.expect_err("refused"));
    assert!(
        message.contains("SCRAPER_URL") && message.contains("cannot go into cloud-init"),
        "{message}"
    );
    assert_eq!(
        world.count_requests("POST", "/v1/"),
        0,
        "nothing was created or uploaded"
    );
}

#[tokio::test]
async fn bootstrap_values_nodes_cannot_use_fail_before_any_change() {
    let world = World::single().await;
    let path = world.dir.path().join("swarm.toml");
    let good = std::fs::read_to_string(&path).expect("read");
    let sha = "0123456789abcdef".repeat(4);
    let cases = [
        (
            good.replace("https://tracker.example.org/", "ftp://tracker.example.org/"),
            "bootstrap.tracker_url ftp://tracker.example.org/ must be an http:// or https:// URL",
        ),
        (
            good.replace(&sha, &"0".repeat(64)),
            "bootstrap.scraper_sha256 is the example's all-zero placeholder",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).expect("write");
        let (result, _) = world.run(&["up", "2"]).await;
        let message = format!("{:#}", result.expect_err("refused"));
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(world.hetzner.requests().len(), 0, "nothing reached the api");
}

#[tokio::test]
async fn a_failed_up_names_the_servers_it_created() {
    let world = World::single().await;
    // The second create is refused: the first server exists and is billed.
    world
        .hetzner
        .inject_error_on("POST", "/v1/servers", 1, 403, "forbidden");
    let (result, _) = world.run(&["up", "3"]).await;
    let message = format!("{:#}", result.expect_err("the create was refused"));
    let servers = super::support::names(&world.servers(0).await);
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert!(
        message.contains("forbidden")
            && message.contains(&format!(
                "created {} (they stay and are billed)",
                servers[0]
            ))
            && message.contains("`swarm-ctl up 3` again"),
        "{message}"
    );

    // A run that changed nothing says nothing about changes.
    world
        .hetzner
        .inject_error_on("POST", "/v1/servers", 0, 403, "forbidden");
    let (result, _) = world.run(&["up", "3"]).await;
    let message = format!("{:#}", result.expect_err("refused"));
    assert!(!message.contains("this run created"), "{message}");
}

#[tokio::test]
async fn a_uniqueness_error_without_a_server_of_that_name_is_reported() {
    let world = World::single().await;
    // The API says "not unique" (an ssh key, a stale index), yet no server has the name.
    world
        .hetzner
        .inject_error_on("POST", "/v1/servers", 0, 409, "uniqueness_error");
    let (result, _) = world.run(&["up", "1"]).await;
    let message = format!("{:#}", result.expect_err("the api's error comes through"));
    assert!(
        message.contains("uniqueness_error") && message.contains("no server has that name"),
        "{message}"
    );
    assert_eq!(
        world.count_requests("POST", "/v1/servers"),
        1,
        "no further names were tried"
    );
    assert!(world.servers(0).await.is_empty());
}

#[tokio::test]
async fn a_server_adopted_after_a_lost_answer_is_named_as_created() {
    let world = World::single().await;
    // The first create goes through but its answer is lost; the retry gets uniqueness_error
    // and adopts the server. The next create is refused, so `up` fails.
    world.hetzner.lose_answer_on("POST", "/v1/servers", 0);
    world
        .hetzner
        .inject_error_on("POST", "/v1/servers", 1, 403, "forbidden");
    let (result, _) = world.run(&["up", "2"]).await;
    let message = format!("{:#}", result.expect_err("the second create was refused"));
    let servers = super::support::names(&world.servers(0).await);
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(
        world.count_requests("POST", "/v1/servers"),
        3,
        "lost, repeated, refused"
    );
    assert!(
        message.contains(&format!(
            "created {} (they stay and are billed)",
            servers[0]
        )),
        "{message}"
    );
}

#[tokio::test]
async fn usage_errors_exit_64_like_the_daemons() {
    let world = World::single().await;
    for command in [
        &["up", "many"][..],
        &["frobnicate"],
        &["up", "1", "--colour"],
    ] {
        let output = world.run_binary(command, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{command:?}: {stderr}");
        assert!(
            stderr.contains("error:"),
            "clap says what is wrong: {stderr}"
        );
    }
    for command in [&["--help"][..], &["--version"], &["up", "--help"]] {
        let output = world.run_binary(command, &[]).await;
        assert_eq!(output.status.code(), Some(0), "{command:?}");
    }
    // Values clap parses but swarm-ctl refuses are usage errors too.
    let output = world
        .run_binary(&["heal", "--stale-after", "0s"], &[])
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--stale-after (SWARM_STALE_AFTER) is 0s; it must be at least 1s"),
        "{stderr}"
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm-ctl"))
        .args([
            "--state-dir",
            &world.state_dir().display().to_string(),
            "status",
        ])
        .env("SWARM_POLL_INTERVAL", "0s")
        .output()
        .await
        .expect("swarm-ctl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--poll-interval (SWARM_POLL_INTERVAL) is 0s; it must be at least 1s against the Hetzner API"),
        "{stderr}"
    );
    assert_eq!(world.hetzner.requests().len(), 0, "nothing reached the api");
}

#[tokio::test]
async fn a_token_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::single().await;
    let output = world.run_binary(&["status"], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("chmod"), "a 0600 file is fine: {stderr}");
    let token_file = world.dir.path().join("main.token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = world.run_binary(&["status"], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "a warning, not a refusal: {stderr}"
    );
    assert!(
        stderr.contains(&format!("file={}", token_file.display()))
            && stderr.contains("mode=0644")
            && stderr.contains("run chmod 600 on it"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_or_invalid_accounts_file_exits_78() {
    let world = World::single().await;
    let accounts = world.dir.path().join("swarm.toml");
    let valid = std::fs::read_to_string(&accounts).expect("accounts file");
    std::fs::remove_file(&accounts).expect("remove");
    let output = world.run_binary(&["status"], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("cannot read the accounts file")
            && stderr.contains("deploy/swarm.example.toml"),
        "{stderr}"
    );
    std::fs::write(&accounts, valid.replace("[[account]]", "[[account]\n")).expect("write");
    let output = world.run_binary(&["up", "1"], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("invalid accounts file"), "{stderr}");
    assert_eq!(world.hetzner.requests().len(), 0, "nothing reached the api");
}
