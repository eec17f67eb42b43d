//! The fake Hetzner Cloud API over real HTTP: shapes, lifecycle, selectors, pagination, projects.

use std::time::Duration;

use cah_testkit::hetzner::{HetznerConfig, fingerprint};
use serde_json::{Value, json};

use super::hetzner_api;

use hetzner_api::{Api, KEY, error_code};

#[tokio::test]
async fn create_wait_list_delete() {
    let api = Api::start(HetznerConfig::quick(&["alpha"])).await;
    let (status, key) = api
        .post(
            "alpha",
            "/ssh_keys",
            json!({ "name": "ops", "public_key": KEY, "labels": { "managed-by": "ccswarm" } }),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(
        key["ssh_key"]["fingerprint"],
        fingerprint(KEY).expect("fingerprint")
    );
    assert_eq!(
        key["ssh_key"]["fingerprint"]
            .as_str()
            .expect("string")
            .split(':')
            .count(),
        16
    );
    let key_id = key["ssh_key"]["id"].as_i64().expect("id");

    let user_data = "#cloud-config\nruncmd:\n  - echo hi\n";
    let body = json!({
        "name": "cah-blue-1", "server_type": "cpx11", "image": "debian-12", "location": "hel1",
        "ssh_keys": [key_id], "user_data": user_data, "labels": { "managed-by": "ccswarm", "ccswarm/swarm": "blue" },
        "public_net": { "enable_ipv4": true, "enable_ipv6": false },
    });
    let (status, created) = api.post("alpha", "/servers", body).await;
    assert_eq!(status, 201, "{created}");
    let server = &created["server"];
    assert_eq!(server["status"], "initializing");
    assert_eq!(server["server_type"]["name"], "cpx11");
    assert_eq!(server["location"]["name"], "hel1");
    assert_eq!(
        server["datacenter"]["location"]["network_zone"],
        "eu-central"
    );
    assert!(
        server["public_net"]["ipv4"]["ip"]
            .as_str()
            .expect("ipv4")
            .starts_with("203.0.113.")
    );
    assert!(server["public_net"]["ipv6"].is_null());
    assert_eq!(server["labels"]["ccswarm/swarm"], "blue");
    assert_eq!(
        created["root_password"],
        Value::Null,
        "no password with ssh keys"
    );
    assert_eq!(
        (
            created["action"]["command"].as_str(),
            created["action"]["status"].as_str()
        ),
        (Some("create_server"), Some("running"))
    );
    assert_eq!(created["next_actions"][0]["command"], "start_server");
    let id = server["id"].as_i64().expect("id");
    assert_eq!(
        api.server.user_data("alpha", id).as_deref(),
        Some(user_data)
    );

    let action_id = created["next_actions"][0]["id"].as_i64().expect("id");
    let mut polls = 0;
    let finished = loop {
        let (status, action) = api.get("alpha", &format!("/actions/{action_id}")).await;
        assert_eq!(status, 200);
        if action["action"]["status"] == "success" {
            break action;
        }
        polls += 1;
        assert!(polls < 100, "action never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(finished["action"]["progress"], 100);
    assert!(
        finished["action"]["finished"]
            .as_str()
            .expect("finished")
            .ends_with("+00:00")
    );
    assert_eq!(
        api.get("alpha", &format!("/servers/{id}")).await.1["server"]["status"],
        "running"
    );

    let (status, many) = api
        .get(
            "alpha",
            &format!("/actions?id={action_id}&id={}", created["action"]["id"]),
        )
        .await;
    assert_eq!(
        (status, many["actions"].as_array().expect("list").len()),
        (200, 2)
    );
    let (status, missing_id) = api.get("alpha", "/actions").await;
    assert_eq!((status, error_code(&missing_id)), (400, "invalid_input"));

    let (status, _, deleted) = api
        .call(
            "alpha",
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, deleted["action"]["command"].as_str()),
        (200, Some("delete_server"))
    );
    assert_eq!(
        api.get("alpha", &format!("/servers/{id}")).await.1["server"]["status"],
        "deleting"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    let (status, gone) = api.get("alpha", &format!("/servers/{id}")).await;
    assert_eq!((status, error_code(&gone)), (404, "not_found"));
    assert!(api.server.server_ids("alpha").is_empty());

    let requests = api.server.requests();
    let create_request = requests
        .iter()
        .find(|request| request.method == "POST" && request.path == "/v1/servers")
        .expect("recorded");
    assert_eq!(create_request.token.as_deref(), Some("alpha"));
    assert_eq!(create_request.status, 201);
    let recorded_body: Value =
        serde_json::from_str(create_request.body.as_deref().expect("body")).expect("json");
    assert_eq!(recorded_body["name"], "cah-blue-1");
    assert!(requests.iter().any(|request| request.query.as_deref()
        == Some(&*format!("id={action_id}&id={}", created["action"]["id"]))));
}

#[tokio::test]
async fn selectors_pagination_and_projects() {
    let api = Api::start(HetznerConfig::quick(&["alpha", "beta"])).await;
    for index in 0..7 {
        let swarm = if index < 5 { "blue" } else { "green" };
        let labels = json!({ "managed-by": "ccswarm", "ccswarm/swarm": swarm, "ccswarm/gen": index.to_string() });
        assert_eq!(
            api.create("alpha", &format!("cah-{swarm}-{index}"), labels)
                .await
                .0,
            201
        );
    }
    assert_eq!(
        api.create("alpha", "hand-made", json!({ "owner": "me" }))
            .await
            .0,
        201
    );
    assert_eq!(
        api.create("beta", "cah-blue-0", json!({ "managed-by": "ccswarm" }))
            .await
            .0,
        201,
        "names are per project"
    );

    let names = |body: &Value| -> Vec<String> {
        body["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|server| server["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, blue) = api
        .get(
            "alpha",
            "/servers?label_selector=managed-by%3Dccswarm%2Cccswarm%2Fswarm%3Dblue",
        )
        .await;
    assert_eq!(names(&blue).len(), 5);
    let (_, not_blue) = api
        .get("alpha", "/servers?label_selector=ccswarm%2Fswarm!%3Dblue")
        .await;
    assert_eq!(
        names(&not_blue),
        ["cah-green-5", "cah-green-6", "hand-made"]
    );
    let (_, present) = api.get("alpha", "/servers?label_selector=owner").await;
    assert_eq!(names(&present), ["hand-made"]);
    let (_, set) = api
        .get(
            "alpha",
            "/servers?label_selector=ccswarm%2Fgen%20in%20(1%2C6)",
        )
        .await;
    assert_eq!(names(&set), ["cah-blue-1", "cah-green-6"]);
    let (status, bad) = api
        .get("alpha", "/servers?label_selector=a%20in%20(b")
        .await;
    assert_eq!((status, error_code(&bad)), (400, "invalid_input"));
    let (_, by_name) = api.get("alpha", "/servers?name=cah-blue-3").await;
    assert_eq!(names(&by_name), ["cah-blue-3"]);
    let (_, sorted) = api.get("alpha", "/servers?sort=name:desc&per_page=2").await;
    assert_eq!(names(&sorted), ["hand-made", "cah-green-6"]);

    let (status, headers, page2) = api
        .call(
            "alpha",
            reqwest::Method::GET,
            "/servers?page=2&per_page=3",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&page2), ["cah-blue-3", "cah-blue-4", "cah-green-5"]);
    assert_eq!(
        page2["meta"]["pagination"],
        json!({ "page": 2, "per_page": 3, "previous_page": 1, "next_page": 3, "last_page": 3, "total_entries": 8 })
    );
    let link = headers["link"].to_str().expect("ascii");
    assert!(
        link.contains("rel=\"next\"") && link.contains("page=3&per_page=3"),
        "{link}"
    );
    let (_, last) = api.get("alpha", "/servers?page=3&per_page=3").await;
    assert_eq!(
        (
            names(&last).len(),
            last["meta"]["pagination"]["next_page"].clone()
        ),
        (2, Value::Null)
    );
    let (_, capped) = api.get("alpha", "/servers?per_page=500").await;
    assert_eq!(capped["meta"]["pagination"]["per_page"], 50);

    let (_, beta) = api.get("beta", "/servers").await;
    assert_eq!(names(&beta), ["cah-blue-0"]);
    let alpha_id = blue["servers"][0]["id"].as_i64().expect("id");
    assert_eq!(
        api.get("beta", &format!("/servers/{alpha_id}")).await.0,
        404,
        "projects are isolated"
    );

    let (status, types) = api.get("alpha", "/server_types?per_page=50").await;
    assert_eq!(status, 200);
    let cx22 = types["server_types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["name"] == "cx22")
        .expect("cx22");
    for field in [
        "cores",
        "memory",
        "disk",
        "prices",
        "cpu_type",
        "architecture",
        "locations",
        "storage_type",
    ] {
        assert!(!cx22[field].is_null(), "server type field {field}");
    }
    assert!(cx22["prices"][0]["price_hourly"]["net"].is_string());
    let (_, locations) = api.get("alpha", "/locations").await;
    let names_of_locations: Vec<&str> = locations["locations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names_of_locations,
        ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
    );
    assert_eq!(
        api.get("alpha", "/locations/ash").await.1["location"]["network_zone"],
        "us-east"
    );
}
