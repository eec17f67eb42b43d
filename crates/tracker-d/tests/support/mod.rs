//! Test support: a real tracker-d on 127.0.0.1:0 over SQLite or PostgreSQL, and raw protocol calls.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracker_d::cli::{Cli, Command};
use tracker_d::db::Db;
use tracker_d::{ServeConfig, import};

/// The databases every suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// A fresh, empty database URL for `backend`.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("tracker.sqlite").display()),
        Backend::Postgres => {
            let admin = std::env::var("CAH_TEST_POSTGRES_URL").expect(
                "PostgreSQL tests need CAH_TEST_POSTGRES_URL (for example postgres://postgres@127.0.0.1:55432/postgres); \
                 scripts/ci.sh starts a throwaway server and sets it",
            );
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::Executor::execute(&mut connection, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create a test database");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _)| base);
            format!("{base}/{name}")
        }
    }
}

/// A running tracker.
pub struct TestTracker {
    pub addr: SocketAddr,
    pub base: String,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
        let blob_dir = dir.path().join("staging");
        let mut argv = vec![
            "tracker-d".to_owned(),
            "serve".to_owned(),
            "--database-url".to_owned(),
            database_url.clone(),
            "--blob-dir".to_owned(),
            blob_dir.display().to_string(),
            "--admin-secret".to_owned(),
            ADMIN_SECRET.to_owned(),
            "--register-per-minute".to_owned(),
            "100000".to_owned(),
            "--register-burst".to_owned(),
            "100000".to_owned(),
            "--shutdown-grace".to_owned(),
            "2s".to_owned(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
            unreachable!("serve was given");
        };
        let config = ServeConfig::try_from(*args).expect("valid config");
        let db = Db::connect(&database_url, 8).await.expect("database opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tracker_d::serve(listener, db, config, async move {
            let _ = stopped.await;
        }));
        TestTracker {
            addr,
            base: format!("http://{addr}"),
            database_url,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()
                .expect("client"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and returns its folder (for restarts).
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, self.database_url.clone())
    }

    /// Imports `n` WATs named `http://cc.test/wat/{offset+i}.warc.wat.gz`.
    pub async fn import(&self, n: usize, offset: usize) {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://cc.test/wat/{}.warc.wat.gz", offset + i))
            .collect();
        let db = Db::connect(&self.database_url, 2).await.expect("db");
        import::import(&db, &urls, false, |_| {})
            .await
            .expect("import");
        db.close().await;
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
