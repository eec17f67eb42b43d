//! One method per Hetzner Cloud API call that swarm-ctl makes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    Action, CreateServer, CreatedServer, Hcloud, HcloudError, Location, Server, ServerType, SshKey,
};

/// `GET /actions?id=` takes this many ids per request.
const ACTION_BATCH: usize = 50;

impl Hcloud {
    /// `GET /servers?label_selector=`, every page.
    pub async fn list_servers(&self, label_selector: &str) -> Result<Vec<Server>, HcloudError> {
        self.list_all(
            "/servers",
            "servers",
            &[("label_selector", label_selector.to_owned())],
        )
        .await
    }

    /// `GET /servers?name=`: the server of that exact name, if any.
    pub async fn server_by_name(&self, name: &str) -> Result<Option<Server>, HcloudError> {
        let servers: Vec<Server> = self
            .list_all("/servers", "servers", &[("name", name.to_owned())])
            .await?;
        Ok(servers.into_iter().find(|server| server.name == name))
    }

    /// `GET /servers/{id}`.
    pub async fn get_server(&self, id: i64) -> Result<Server, HcloudError> {
        let mut body: Value = self
            .call(Method::GET, &format!("/servers/{id}"), &[], None)
            .await?;
        decode(body["server"].take(), "GET /servers/{id}")
    }

    /// `POST /servers`.
    pub async fn create_server(
        &self,
        request: &CreateServer,
    ) -> Result<CreatedServer, HcloudError> {
        let body = serde_json::to_value(request).map_err(|error| HcloudError::Decode {
            call: "POST /servers".into(),
            detail: error.to_string(),
        })?;
        self.call(Method::POST, "/servers", &[], Some(&body)).await
    }

    /// `DELETE /servers/{id}`: the `delete_server` action.
    pub async fn delete_server(&self, id: i64) -> Result<Action, HcloudError> {
        let mut body: Value = self
            .call(Method::DELETE, &format!("/servers/{id}"), &[], None)
            .await?;
        decode(body["action"].take(), "DELETE /servers/{id}")
    }

    /// `GET /actions?id=…`, batched.
    pub async fn get_actions(&self, ids: &[i64]) -> Result<Vec<Action>, HcloudError> {
        let mut actions = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ACTION_BATCH) {
            let query: Vec<(&str, String)> =
                chunk.iter().map(|id| ("id", id.to_string())).collect();
            actions.extend(
                self.list_all::<Action>("/actions", "actions", &query)
                    .await?,
            );
        }
        Ok(actions)
    }

    /// Polls `ids` every `interval` until all succeeded; `on_progress(done, total)` after each poll.
    pub async fn wait_actions(
        &self,
        ids: &[i64],
        interval: Duration,
        timeout: Duration,
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<(), HcloudError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: Vec<i64> = ids.to_vec();
        while !pending.is_empty() {
            let actions = self.get_actions(&pending).await?;
            for action in &actions {
                if action.status == "error" {
                    let (code, message) = action
                        .error
                        .as_ref()
                        .map(|error| (error.code.clone(), error.message.clone()))
                        .unwrap_or_default();
                    return Err(HcloudError::ActionFailed {
                        id: action.id,
                        command: action.command.clone(),
                        code,
                        message,
                    });
                }
            }
            pending.retain(|id| {
                !actions
                    .iter()
                    .any(|action| action.id == *id && action.status == "success")
            });
            on_progress(ids.len() - pending.len(), ids.len());
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HcloudError::Timeout {
                    what: format!("{} hetzner actions", pending.len()),
                    after: timeout,
                });
            }
            tokio::time::sleep(interval).await;
        }
        Ok(())
    }

    /// `GET /ssh_keys?fingerprint=`.
    pub async fn ssh_key_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<SshKey>, HcloudError> {
        let keys: Vec<SshKey> = self
            .list_all(
                "/ssh_keys",
                "ssh_keys",
                &[("fingerprint", fingerprint.to_owned())],
            )
            .await?;
        Ok(keys.into_iter().next())
    }

    /// `POST /ssh_keys`.
    pub async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<SshKey, HcloudError> {
        let body = json!({ "name": name, "public_key": public_key, "labels": labels });
        let mut answer: Value = self
            .call(Method::POST, "/ssh_keys", &[], Some(&body))
            .await?;
        decode(answer["ssh_key"].take(), "POST /ssh_keys")
    }

    /// `GET /server_types`, every page.
    pub async fn server_types(&self) -> Result<Vec<ServerType>, HcloudError> {
        self.list_all("/server_types", "server_types", &[]).await
    }

    /// `GET /locations`, every page.
    pub async fn locations(&self) -> Result<Vec<Location>, HcloudError> {
        self.list_all("/locations", "locations", &[]).await
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, call: &str) -> Result<T, HcloudError> {
    serde_json::from_value(value).map_err(|error| HcloudError::Decode {
        call: call.to_owned(),
        detail: error.to_string(),
    })
}
