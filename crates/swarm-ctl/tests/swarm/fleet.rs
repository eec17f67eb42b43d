//! `up`, `down` and `status` against the fake Hetzner API: spreading, idempotence, overflow
//! between accounts, and never touching a server without our labels.

use std::collections::HashMap;

use serde_json::json;

use super::support::{AccountSpec, SWARM, World, names};

#[tokio::test]
async fn up_spreads_over_locations_and_is_idempotent() {
    let world = World::single().await;
    let text = world.ok(&["up", "6", "--location", "fsn1,nbg1,hel1"]).await;
    assert!(text.contains("swarm alpha has 6 nodes"), "{text}");
    let servers = world.servers(0).await;
    let expected: Vec<String> = (1..=6).map(|n| format!("cah-alpha-{n}")).collect();
    assert_eq!(names(&servers), expected);
    let mut per_location: HashMap<String, usize> = HashMap::new();
    for server in &servers {
        *per_location
            .entry(
                server["location"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
        assert_eq!(server["labels"]["managed-by"], "cah-swarm");
        assert_eq!(server["labels"]["swarm"], SWARM);
        assert_eq!(server["labels"]["account"], "main");
        assert_eq!(server["status"], "running", "up returns once servers run");
        assert_eq!(server["server_type"]["name"], "cx22");
    }
    assert_eq!(
        per_location,
        HashMap::from([("fsn1".into(), 2), ("nbg1".into(), 2), ("hel1".into(), 2)])
    );
    // The node gets its own name, the account's nickname and no storage credentials.
    let id = servers[0]["id"].as_i64().expect("id");
    let user_data = world
        .hetzner
        .user_data(&world.specs[0].token(), id)
        .expect("user data");
    let name = servers[0]["name"].as_str().expect("name");
    assert!(
        user_data.contains(&format!("SCRAPER_NODE_NAME={name}\n")),
        "{user_data}"
    );
    assert!(user_data.contains("SCRAPER_NICKNAME=nick-main\n"));
    assert!(
        !user_data.contains("token-main"),
        "the api token never goes into user data"
    );

    // Same size again: nothing is created.
    world.hetzner.clear_requests();
    let text = world.ok(&["up", "6"]).await;
    assert!(text.contains("already has 6 nodes"), "{text}");
    assert_eq!(world.count_requests("POST", "/v1/servers"), 0);

    // Growing creates only the missing ones, with fresh names, in the emptiest locations.
    world.ok(&["up", "8", "--location", "fsn1,nbg1,hel1"]).await;
    let servers = world.servers(0).await;
    let grown: Vec<(&str, &str)> = servers
        .iter()
        .filter_map(|server| {
            Some((
                server["name"].as_str()?,
                server["location"]["name"].as_str()?,
            ))
        })
        .filter(|(name, _)| *name == "cah-alpha-7" || *name == "cah-alpha-8")
        .collect();
    assert_eq!(
        grown,
        vec![("cah-alpha-7", "fsn1"), ("cah-alpha-8", "nbg1")]
    );
}

#[tokio::test]
async fn up_fills_accounts_in_order_and_overflows() {
    let world = World::start(vec![
        AccountSpec {
            name: "small",
            server_limit: 2,
            max_nodes: -1,
        },
        AccountSpec {
            name: "skipped",
            server_limit: 25,
            max_nodes: 0,
        },
        AccountSpec {
            name: "capped",
            server_limit: 25,
            max_nodes: 3,
        },
        AccountSpec {
            name: "big",
            server_limit: 25,
            max_nodes: -1,
        },
    ])
    .await;
    let text = world
        .ok(&[
            "up",
            "7",
            "--server-type",
            "cpx11",
            "--location",
            "fsn1,hel1",
        ])
        .await;
    assert!(
        text.contains("account small is at its server limit"),
        "{text}"
    );
    // The paused account is only read (its servers still count), never written to.
    assert!(
        world
            .hetzner
            .requests()
            .iter()
            .filter(|request| request.token.as_deref() == Some(world.specs[1].token().as_str()))
            .all(|request| request.method == "GET")
    );
    assert_eq!(world.servers(0).await.len(), 2);
    assert_eq!(
        world.servers(1).await.len(),
        0,
        "max_nodes = 0 pauses the account"
    );
    assert_eq!(
        world.servers(2).await.len(),
        3,
        "max_nodes caps the account"
    );
    assert_eq!(world.servers(3).await.len(), 2);
    let mut all = Vec::new();
    for account in 0..4 {
        all.extend(names(&world.servers(account).await));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 7, "names are unique across accounts: {all:?}");

    let text = world.ok(&["status"]).await;
    assert!(text.contains("NAME") && text.contains("EUR/H"), "{text}");
    assert!(text.contains("0.0074"), "cpx11's hourly price: {text}");
    assert!(text.contains("7 nodes, 0.0518 EUR/h"), "{text}");
}

#[tokio::test]
async fn up_reports_when_every_account_is_full() {
    let world = World::start(vec![AccountSpec {
        name: "tiny",
        server_limit: 2,
        max_nodes: -1,
    }])
    .await;
    let (result, text) = world.run(&["up", "3"]).await;
    let message = format!("{:#}", result.expect_err("cannot reach 3"));
    // The cause first, what makes room, and no bare "run it again", which cannot help.
    assert!(
        message.starts_with(
            "every account is at its cap or server limit (tiny is at its Hetzner server limit): \
             created 2 of 3 missing nodes, the swarm has 2 of 3; to get the rest, raise max_nodes in the accounts file, \
             ask Hetzner to raise a project's server limit, or add an [[account]], then run `swarm-ctl up 3` again; \
             this run created cah-alpha-1, cah-alpha-2 (they stay and are billed)"
        ) && !message.contains("again finishes it"),
        "{message}"
    );
    assert!(
        text.contains("cah-alpha-2"),
        "the table still shows what exists: {text}"
    );

    // Caps in the accounts file are named as such.
    let world = World::start(vec![
        AccountSpec {
            name: "capped",
            server_limit: 25,
            max_nodes: 1,
        },
        AccountSpec {
            name: "resting",
            server_limit: 25,
            max_nodes: 0,
        },
    ])
    .await;
    let (result, _) = world.run(&["up", "2"]).await;
    let message = format!("{:#}", result.expect_err("cannot reach 2"));
    assert!(
        message.starts_with(
            "every account is at its cap or server limit (capped is at max_nodes = 1, resting is paused (max_nodes = 0)): \
             created 1 of 2 missing nodes, the swarm has 1 of 2;"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn down_deletes_only_labelled_servers_after_rechecking() {
    let world = World::single().await;
    let foreign = world.foreign_server(0, "database-primary", json!({})).await;
    let other_swarm = world
        .foreign_server(
            0,
            "cah-beta-1",
            json!({ "managed-by": "cah-swarm", "swarm": "beta" }),
        )
        .await;
    let lookalike = world
        .foreign_server(0, "cah-alpha-99", json!({ "swarm": "alpha" }))
        .await;
    world.ok(&["up", "3"]).await;
    assert_eq!(world.servers(0).await.len(), 6);

    world.hetzner.clear_requests();
    let text = world.ok(&["down"]).await;
    assert!(
        text.contains("dry run: would delete these 3 servers"),
        "{text}"
    );
    assert!(
        !text.contains("database-primary")
            && !text.contains("cah-beta-1")
            && !text.contains("cah-alpha-99")
    );
    assert_eq!(world.count_requests("DELETE", "/v1/servers"), 0);

    let text = world.ok(&["down", "--yes"]).await;
    assert!(text.contains("deleted 3 servers"), "{text}");
    let requests = world.hetzner.requests();
    for (index, request) in requests.iter().enumerate() {
        if request.method == "DELETE" {
            let previous = &requests[index - 1];
            assert_eq!(
                (previous.method.as_str(), previous.path.as_str()),
                ("GET", request.path.as_str()),
                "labels re-read before each delete"
            );
        }
    }
    let mut left: Vec<i64> = world
        .servers(0)
        .await
        .iter()
        .filter_map(|server| server["id"].as_i64())
        .collect();
    left.sort();
    assert_eq!(left, vec![foreign, other_swarm, lookalike]);
    let text = world.ok(&["down", "--yes"]).await;
    assert!(text.contains("has no servers"), "{text}");
}

#[tokio::test]
async fn up_skips_names_taken_by_foreign_servers() {
    let world = World::single().await;
    let squatter = world
        .foreign_server(0, "cah-alpha-1", json!({ "owner": "someone-else" }))
        .await;
    world.ok(&["up", "2"]).await;
    let servers = world.servers(0).await;
    assert_eq!(
        names(&servers),
        vec!["cah-alpha-1", "cah-alpha-2", "cah-alpha-3"]
    );
    assert!(
        world
            .hetzner
            .requests()
            .iter()
            .any(|request| request.status == 409),
        "the API said uniqueness_error"
    );
    world.ok(&["down", "--yes"]).await;
    let left: Vec<i64> = world
        .servers(0)
        .await
        .iter()
        .filter_map(|server| server["id"].as_i64())
        .collect();
    assert_eq!(left, vec![squatter]);
    // The swarm key was uploaded once and is reused.
    world.ok(&["up", "1"]).await;
    assert_eq!(world.count_requests("POST", "/v1/ssh_keys"), 1);
}

#[tokio::test]
async fn counts_across_pages() {
    let world = World::start(vec![AccountSpec {
        name: "wide",
        server_limit: 60,
        max_nodes: -1,
    }])
    .await;
    world.ok(&["up", "55"]).await;
    assert_eq!(
        world.servers(0).await.len()
            + world
                .api(0, reqwest::Method::GET, "/servers?page=2&per_page=50", None)
                .await["servers"]
                .as_array()
                .map_or(0, Vec::len),
        55
    );
    world.hetzner.clear_requests();
    let text = world.ok(&["up", "55"]).await;
    assert!(text.contains("already has 55 nodes"), "{text}");
    assert!(
        world
            .hetzner
            .requests()
            .iter()
            .any(|request| request.path == "/v1/servers"
                && request
                    .query
                    .as_deref()
                    .is_some_and(|query| query.contains("page=2"))),
        "the second page was read"
    );
    assert_eq!(world.count_requests("POST", "/v1/servers"), 0);
}

#[tokio::test]
async fn keeps_a_foreign_ssh_key_with_our_name() {
    let world = World::single().await;
    let dir = world.dir.path().join("other-key");
    std::fs::create_dir_all(&dir).expect("dir");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("id"))
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let public_key = std::fs::read_to_string(dir.join("id.pub")).expect("public key");
    let body = json!({ "name": "cah-swarm-alpha", "public_key": public_key.trim() });
    world
        .api(0, reqwest::Method::POST, "/ssh_keys", Some(body))
        .await;
    world.ok(&["up", "1"]).await;
    let keys = world.api(0, reqwest::Method::GET, "/ssh_keys", None).await;
    let names: Vec<&str> = keys["ssh_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"cah-swarm-alpha")
            && names
                .iter()
                .any(|name| name.starts_with("cah-swarm-alpha-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn swarm_yes_in_the_environment_does_not_arm_down() {
    let world = World::single().await;
    world.ok(&["up", "2"]).await;
    // SWARM_YES exported for a `heal` cron job must not turn a preview `down` into a delete.
    for value in ["true", "1"] {
        let output = world.run_binary(&["down"], &[("SWARM_YES", value)]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "SWARM_YES={value}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("dry run: would delete these 2 servers"),
            "SWARM_YES={value}: {stdout}"
        );
        assert_eq!(world.count_requests("DELETE", "/v1/servers"), 0);
        assert_eq!(world.servers(0).await.len(), 2);
    }
    // `--yes` on the command line still arms `down`.
    let output = world.run_binary(&["down", "--yes"], &[]).await;
    assert!(output.status.success());
    assert!(world.servers(0).await.is_empty());
}

#[tokio::test]
async fn paused_accounts_servers_are_still_listed_counted_and_deleted() {
    let world = World::start(vec![
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
    // Servers swarm-ctl made before the operator set max_nodes = 0.
    for name in ["cah-alpha-1", "cah-alpha-2"] {
        world
            .foreign_server(
                1,
                name,
                json!({ "managed-by": "cah-swarm", "swarm": SWARM, "account": "paused" }),
            )
            .await;
    }
    world.hetzner.clear_requests();
    let text = world.ok(&["status"]).await;
    assert!(
        text.contains("cah-alpha-1") && text.contains("cah-alpha-2") && text.contains("paused"),
        "status shows the paused account's servers: {text}"
    );

    let text = world.ok(&["up", "3"]).await;
    assert!(text.contains("2 nodes, creating 1"), "{text}");
    assert_eq!(names(&world.servers(0).await), vec!["cah-alpha-3"]);
    assert_eq!(
        world.servers(1).await.len(),
        2,
        "a paused account gets no new servers"
    );

    let text = world.ok(&["down", "--yes"]).await;
    assert!(text.contains("deleted 3 servers"), "{text}");
    assert!(world.servers(1).await.is_empty(), "they no longer bill");
    assert!(world.servers(0).await.is_empty());
    let paused_token = world.specs[1].token();
    assert!(
        world
            .hetzner
            .requests()
            .iter()
            .filter(|request| request.token.as_deref() == Some(paused_token.as_str()))
            .all(|request| request.method != "POST"),
        "nothing was created in the paused account"
    );
}
