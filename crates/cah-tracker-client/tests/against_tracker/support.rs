//! A real tracker-d on `127.0.0.1:0` over a fresh SQLite or PostgreSQL database, for contract tests.
//!
//! A trimmed copy of tracker-d's own `tests/support/mod.rs`: this crate only needs to start a
//! tracker, import jobs and point a client at it, and sharing that module would couple the
//! two test suites.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cah_protocol::ClientType;
use cah_tracker_client::{ClientConfig, RetryPolicy, Session, TrackerClient};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracker_d::ServeConfig;
use tracker_d::cli::{Cli, Command};
use tracker_d::db::Db;
use url::Url;

/// The database a tracker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The URL of the `index`-th imported WAT (0-based); WAT `index` gives jobs `2 index + 1`
/// (shard 0) and `2 index + 2` (shard 1).
pub(crate) fn wat_url(index: usize) -> String {
    format!("http://cc.test/wat/{index}.warc.wat.gz")
}

/// Now as unix milliseconds, to bound the tracker's lease and expiry times.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}

/// A fresh, empty database URL for `backend`: a file in `dir`, or a new PostgreSQL database.
async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("tracker.sqlite").display()),
        Backend::Postgres => {
            let admin = std::env::var("CAH_TEST_POSTGRES_URL").expect(
                "PostgreSQL tests need CAH_TEST_POSTGRES_URL (for example postgres://postgres@127.0.0.1:55432/postgres); \
                 scripts/ci.sh starts a throwaway server and sets it",
            );
            let name = format!("client_{:032x}", rand::random::<u128>());
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

/// A tracker-d serving in this test's runtime until [`RealTracker::stop`].
pub(crate) struct RealTracker {
    base_url: Url,
    database_url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl RealTracker {
    /// Starts a tracker on a fresh database; `extra` serve flags override the defaults here.
    pub(crate) async fn start(backend: Backend, extra: &[&str]) -> RealTracker {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        let blob_dir = dir.path().join("staging");
        let mut argv = vec![
            "tracker-d".to_owned(),
            "serve".to_owned(),
            "--database-url".to_owned(),
            database_url.clone(),
            "--blob-dir".to_owned(),
            blob_dir.display().to_string(),
            // Every test registers from 127.0.0.1; only the flood test wants the limit.
            "--register-per-minute".to_owned(),
            "100000".to_owned(),
            "--register-burst".to_owned(),
            "100000".to_owned(),
            "--shutdown-grace".to_owned(),
            "2s".to_owned(),
        ];
        argv.extend(extra.iter().map(|flag| (*flag).to_owned()));
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
            unreachable!("serve was given");
        };
        let config = ServeConfig::try_from(*args).expect("valid config");
        let db = Db::connect(&database_url, 8).await.expect("database opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tracker_d::serve(listener, db, config, async move {
            let _ = stopped.await;
        }));
        RealTracker {
            base_url: Url::parse(&format!("http://{addr}/")).expect("base url"),
            database_url,
            stop,
            task,
            _dir: dir,
        }
    }

    /// Imports `n_wats` WATs named by [`wat_url`], in order: `2 n_wats` jobs.
    pub(crate) async fn import(&self, n_wats: usize) {
        let urls: Vec<String> = (0..n_wats).map(wat_url).collect();
        let db = Db::connect(&self.database_url, 2).await.expect("db");
        let summary = tracker_d::import::import(&db, &urls, false, |_| {})
            .await
            .expect("import");
        assert_eq!(summary.jobs_created, 2 * n_wats as u64);
        db.close().await;
    }

    /// `http://127.0.0.1:PORT` followed by `path`, as the tracker writes its own URLs.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.as_str().trim_end_matches('/'))
    }

    /// A client without retries, so every test sees the tracker's first answer.
    pub(crate) fn client(&self) -> TrackerClient {
        self.client_with(RetryPolicy::none())
    }

    /// A client with the given retry policy.
    pub(crate) fn client_with(&self, retry: RetryPolicy) -> TrackerClient {
        let mut config = ClientConfig::new(self.base_url.clone());
        config.retry = retry;
        config.request_timeout = Duration::from_secs(10);
        TrackerClient::new(config).expect("client builds")
    }

    /// Registers `nickname` as `client_type` through a client of [`RealTracker::client`].
    pub(crate) async fn register(&self, nickname: &str, client_type: ClientType) -> Session {
        self.client()
            .register(nickname, client_type)
            .await
            .unwrap_or_else(|error| panic!("register {nickname}: {error}"))
    }

    /// Stops the server gracefully and checks that it stopped without error.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

/// Calls `probe` every 50 ms until it returns `Some`, for states the tracker reaches on a
/// timer (the reaper, the once-a-second write of client touches); panics after 10 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
