//! Test support: a real tracker-d on 127.0.0.1:0 over SQLite or PostgreSQL, and raw protocol calls.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracker_d::db::Db;
use tracker_d::testing::InProcess;

pub use tracker_d::testing::{BACKENDS, Backend, fresh_database};

pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// A running tracker.
pub struct TestTracker {
    pub addr: SocketAddr,
    pub base: String,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    server: Option<InProcess>,
}

impl TestTracker {
    /// Starts a tracker on a fresh database with `extra` serve flags.
    pub async fn start(backend: Backend, extra: &[&str]) -> TestTracker {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        Self::start_on(dir, database_url, extra).await
    }

    /// Starts a tracker over an existing database and folder.
    pub async fn start_on(
        dir: tempfile::TempDir,
        database_url: String,
        extra: &[&str],
    ) -> TestTracker {
        let mut flags = vec!["--admin-secret", ADMIN_SECRET];
        flags.extend_from_slice(extra);
        let server = InProcess::start(&database_url, &dir.path().join("staging"), &flags).await;
        TestTracker {
            addr: server.addr,
            base: server.base(),
            database_url,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()
                .expect("client"),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and returns its folder (for restarts).
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, self.database_url.clone())
    }

    /// Imports `n` WATs named `http://cc.test/wat/{offset+i}.warc.wat.gz`.
    pub async fn import(&self, n: usize, offset: usize) {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://cc.test/wat/{}.warc.wat.gz", offset + i))
            .collect();
        tracker_d::testing::import_urls(&self.database_url, &urls).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().await.expect("get");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    /// POSTs and decodes a 200 JSON answer, panicking with the body otherwise.
    pub async fn post_ok<T: DeserializeOwned>(&self, path: &str, body: &Value) -> T {
        let (status, text) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}: {text}"))
    }

    /// Registers a client and returns its token.
    pub async fn register(&self, nickname: &str, client_type: &str) -> String {
        let (status, text) = self
            .get(&format!("/api/new?nickname={nickname}&type={client_type}"))
            .await;
        assert_eq!(status, 200, "{text}");
        let value: Value = serde_json::from_str(&text).expect("json");
        value["token"].as_str().expect("token").to_owned()
    }

    /// Claims through the extension API.
    pub async fn claim(&self, token: &str, max_jobs: u32, whole_wat: bool) -> Vec<Value> {
        let value: Value = self
            .post_ok(
                "/api/ext/claim",
                &json!({"token": token, "max_jobs": max_jobs, "whole_wat": whole_wat}),
            )
            .await;
        value["jobs"].as_array().expect("jobs").clone()
    }

    /// Uploads `bytes` as the bundle of `number` and returns the handoff string.
    pub async fn upload(&self, token: &str, number: u64, bytes: Vec<u8>) -> String {
        let issued: Value = self
            .post_ok(
                "/api/ext/uploadUrl",
                &json!({"token": token, "number": number}),
            )
            .await;
        let response = self
            .http
            .put(issued["put_url"].as_str().expect("put_url"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("put");
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        format!("blob:{}", issued["key"].as_str().expect("key"))
    }

    /// Counts jobs by `(stage, status)` straight from the database.
    pub async fn job_states(&self) -> Vec<(String, String, i64)> {
        let db = Db::connect(&self.database_url, 2).await.expect("db");
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT stage, status, COUNT(*) FROM jobs GROUP BY stage, status ORDER BY stage, status",
        )
        .fetch_all(db.pool())
        .await
        .expect("count");
        db.close().await;
        rows
    }
}
