//! The fake Hetzner Cloud API's errors: auth, validation, uniqueness, limits, rate limits, storms.

use cah_testkit::hetzner::{HetznerConfig, ProjectConfig};
use serde_json::{Value, json};

use super::hetzner_api;

use hetzner_api::{Api, KEY, error_code};

#[tokio::test]
async fn errors_have_the_documented_shape() {
    let config = HetznerConfig {
        projects: vec![ProjectConfig {
            token: "small".into(),
            server_limit: 2,
        }],
        ..HetznerConfig::quick(&[])
    };
    let api = Api::start(config).await;
    let (status, _, unauthorized) = api
        .call("wrong", reqwest::Method::GET, "/servers", None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        unauthorized,
        json!({ "error": { "code": "unauthorized", "message": "unable to authenticate", "details": null } })
    );
    let no_token = api
        .client
        .get(format!("{}/servers", api.server.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(no_token.status(), 401);

    assert_eq!(api.create("small", "one", json!({})).await.0, 201);
    let (status, duplicate) = api.create("small", "one", json!({})).await;
    assert_eq!((status, error_code(&duplicate)), (409, "uniqueness_error"));
    assert_eq!(duplicate["error"]["details"]["fields"][0]["name"], "name");
    assert_eq!(api.create("small", "two", json!({})).await.0, 201);
    let (status, limited) = api.create("small", "three", json!({})).await;
    assert_eq!(
        (status, error_code(&limited)),
        (403, "resource_limit_exceeded")
    );
    assert_eq!(
        limited["error"]["details"]["limits"][0]["name"],
        "server_limit"
    );

    let cases = [
        (
            json!({ "server_type": "cx22", "image": "debian-12" }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "bad_name!", "server_type": "cx22", "image": "debian-12" }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "x", "server_type": "cx99", "image": "debian-12" }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "x", "server_type": "cx22", "image": "windows-95" }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "x", "server_type": "cx22", "image": "debian-12", "location": "ash" }),
            "resource_unavailable",
            412,
        ),
        (
            json!({ "name": "x", "server_type": "cx22", "image": "debian-12", "ssh_keys": ["nope"] }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "x", "server_type": "cx22", "image": "debian-12", "labels": { "hetzner.cloud/x": "y" } }),
            "invalid_input",
            400,
        ),
        (
            json!({ "name": "x", "server_type": "cx22", "image": "debian-12", "user_data": "x".repeat(40_000) }),
            "invalid_input",
            400,
        ),
    ];
    for (body, code, expected_status) in cases {
        let (status, error) = api.post("small", "/servers", body.clone()).await;
        assert_eq!(
            (status, error_code(&error)),
            (expected_status, code),
            "{body}"
        );
        assert!(error["error"]["message"].is_string());
    }
    let raw = api
        .client
        .post(format!("{}/servers", api.server.base_url()))
        .bearer_auth("small")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), 400);
    assert_eq!(
        error_code(&raw.json::<Value>().await.expect("json")),
        "json_error"
    );
    let (status, _, wrong_method) = api
        .call("small", reqwest::Method::PATCH, "/servers", None)
        .await;
    assert_eq!(
        (status, error_code(&wrong_method)),
        (405, "method_not_allowed")
    );
    let (status, dup_key) = api
        .post(
            "small",
            "/ssh_keys",
            json!({ "name": "a", "public_key": KEY }),
        )
        .await;
    assert_eq!(status, 201, "{dup_key}");
    let (status, dup_key) = api
        .post(
            "small",
            "/ssh_keys",
            json!({ "name": "b", "public_key": KEY }),
        )
        .await;
    assert_eq!((status, error_code(&dup_key)), (409, "uniqueness_error"));
    assert_eq!(
        dup_key["error"]["details"]["fields"][0]["name"],
        "public_key"
    );
}

#[tokio::test]
async fn rate_limits_and_injected_storms() {
    let config = HetznerConfig {
        rate_limit: 5,
        ..HetznerConfig::quick(&["alpha", "beta"])
    };
    let api = Api::start(config).await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let (status, headers, _) = api
            .call("alpha", reqwest::Method::GET, "/locations", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(headers["ratelimit-limit"], "5");
        let reset: u64 = headers["ratelimit-reset"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("unix time");
        assert!(
            reset
                >= std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs()
        );
        remaining.push(
            headers["ratelimit-remaining"]
                .to_str()
                .expect("ascii")
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    let (status, headers, body) = api
        .call("alpha", reqwest::Method::GET, "/locations", None)
        .await;
    assert_eq!((status, error_code(&body)), (429, "rate_limit_exceeded"));
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(
        api.get("beta", "/locations").await.0,
        200,
        "each project has its own budget"
    );

    assert_eq!(
        api.server
            .requests()
            .iter()
            .filter(|request| request.status == 429)
            .count(),
        1
    );

    let api = Api::start(HetznerConfig::quick(&["alpha"])).await;
    api.server.inject_rate_limit_storm(3);
    for _ in 0..3 {
        let (status, headers, body) = api
            .call("alpha", reqwest::Method::GET, "/servers", None)
            .await;
        assert_eq!((status, error_code(&body)), (429, "rate_limit_exceeded"));
        assert_eq!(headers["ratelimit-remaining"], "0");
    }
    api.server.inject_errors(1, 503, "unavailable");
    let (status, body) = api.get("alpha", "/servers").await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"));
    let (status, headers, _) = api
        .call("alpha", reqwest::Method::GET, "/servers", None)
        .await;
    assert_eq!(status, 200, "injected errors are used up");
    let remaining: u32 = headers["ratelimit-remaining"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    // Five requests cost five tokens; the bucket refills one per second, so allow a slow machine one.
    assert!(
        (3595..=3596).contains(&remaining),
        "every request, failed or not, costs one: {remaining}"
    );
    assert_eq!(
        api.server
            .requests()
            .iter()
            .filter(|request| request.status == 429)
            .count(),
        3
    );
}

#[tokio::test]
async fn a_delete_protected_server_refuses_deletion_until_unprotected() {
    let api = Api::start(HetznerConfig::quick(&["alpha"])).await;
    let (status, created) = api.create("alpha", "keep-me", json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["server"]["id"].as_i64().expect("id");
    let path = format!("/servers/{id}/actions/change_protection");
    let protect = |delete: bool| {
        api.post(
            "alpha",
            &path,
            json!({ "delete": delete, "rebuild": delete }),
        )
    };
    let (status, action) = protect(true).await;
    assert_eq!(status, 201, "{action}");
    assert_eq!(action["action"]["command"], "change_protection");
    let (_, server) = api.get("alpha", &format!("/servers/{id}")).await;
    assert_eq!(server["server"]["protection"]["delete"], true);
    let (status, _, refused) = api
        .call(
            "alpha",
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "protected"),
        "{refused}"
    );
    let (status, bad) = api
        .post(
            "alpha",
            &format!("/servers/{id}/actions/change_protection"),
            json!({}),
        )
        .await;
    assert_eq!((status, error_code(&bad)), (400, "invalid_input"), "{bad}");
    protect(false).await;
    let (status, _, deleted) = api
        .call(
            "alpha",
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
}
