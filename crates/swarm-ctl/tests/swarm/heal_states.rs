//! What `heal` says when it has nothing to do: nodes that have not reported to the tracker yet
//! and nodes that do not run are named as such, never counted as healthy.

use serde_json::json;

use super::heal::start_tracker;
use super::support::{SWARM, World};

#[tokio::test]
async fn heal_tells_nodes_not_reported_yet_and_stopped_ones_from_healthy() {
    let mut world = World::single().await;
    let (url, _stop) = start_tracker(world.dir.path()).await;
    world.extra_args = vec!["--tracker".into(), url.to_string()];
    world.ok(&["up", "2"]).await;
    // Neither node has reached the tracker; both are younger than the default --stale-after.
    let text = world.ok(&["heal"]).await;
    assert_eq!(
        text,
        "nothing to heal in swarm alpha: 0 of 2 nodes healthy; 2 not reported to the tracker yet, \
         probably still booting (younger than --stale-after 15m: cah-alpha-1, cah-alpha-2)\n"
    );

    // A node created without starting it is off.
    let body = json!({
        "name": "cah-alpha-3", "server_type": "cx22", "image": "debian-12", "location": "fsn1",
        "start_after_create": false,
        "labels": { "managed-by": "cah-swarm", "swarm": SWARM, "account": "main" },
    });
    world
        .api(0, reqwest::Method::POST, "/servers", Some(body))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let text = world.ok(&["heal"]).await;
    assert!(
        text.contains("0 of 3 nodes healthy")
            && text.contains("1 not running (cah-alpha-3 is off), which heal leaves alone"),
        "{text}"
    );
    assert!(!text.contains("are healthy"), "{text}");
}
