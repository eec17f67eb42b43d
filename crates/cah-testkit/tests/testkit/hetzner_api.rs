//! Shared by the Hetzner tests: the fake on 127.0.0.1:0 and small JSON call helpers.

use cah_testkit::hetzner::{HetznerConfig, HetznerServer};
use serde_json::{Value, json};

pub(crate) const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvI9LwvvQ8Xj5z3Qk3c8i9DZg+fM3nq9m0gkJ0sCk2M ops@laptop";

/// The fake plus a plain client.
pub(crate) struct Api {
    pub(crate) server: HetznerServer,
    pub(crate) client: reqwest::Client,
}

impl Api {
    pub(crate) async fn start(config: HetznerConfig) -> Self {
        let server = HetznerServer::start_local(config).await.expect("fake");
        Self {
            server,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub(crate) async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.server.base_url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        };
        (status, headers, json)
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let (status, _, body) = self.call(token, reqwest::Method::GET, path, None).await;
        (status, body)
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = self
            .call(token, reqwest::Method::POST, path, Some(body))
            .await;
        (status, body)
    }

    pub(crate) async fn create(&self, token: &str, name: &str, labels: Value) -> (u16, Value) {
        let body = json!({ "name": name, "server_type": "cx22", "image": "ubuntu-24.04", "location": "nbg1", "labels": labels });
        self.post(token, "/servers", body).await
    }
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .expect("error bodies have a code")
}
