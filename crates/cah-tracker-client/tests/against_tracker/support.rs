//! A real tracker-d on `127.0.0.1:0` over a fresh SQLite or PostgreSQL database, for contract tests.
//!
//! The tracker itself comes from `tracker_d::testing` (feature `test-support`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cah_protocol::ClientType;
use cah_tracker_client::{ClientConfig, RetryPolicy, Session, TrackerClient};
use tracker_d::db::Db;
use tracker_d::testing::{InProcess, SmallDisk, fresh_database};
use url::Url;

pub(crate) use tracker_d::testing::Backend;

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

/// A tracker-d serving in this test's runtime until [`RealTracker::stop`].
pub(crate) struct RealTracker {
    base_url: Url,
    database_url: String,
    server: InProcess,
    // Dropped in this order, after the server stopped: the disk is unmounted, then the folder goes.
    _disk: Option<SmallDisk>,
    _dir: tempfile::TempDir,
}

impl RealTracker {
    /// Starts a tracker on a fresh database; `extra` serve flags override the defaults here.
    pub(crate) async fn start(backend: Backend, extra: &[&str]) -> RealTracker {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        let server = InProcess::start(&database_url, &dir.path().join("staging"), extra).await;
        RealTracker {
            base_url: Url::parse(&format!("{}/", server.base())).expect("base url"),
            database_url,
            server,
            _disk: None,
            _dir: dir,
        }
    }

    /// Starts a tracker whose staging store is a tmpfs of `disk_bytes`, a disk that really
    /// fills up; `None` where this process may not mount one (see [`SmallDisk::mount`]).
    pub(crate) async fn start_on_small_disk(
        backend: Backend,
        disk_bytes: u64,
    ) -> Option<RealTracker> {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join("staging");
        let disk = SmallDisk::mount(&staging, disk_bytes)?;
        let database_url = fresh_database(backend, dir.path()).await;
        let server = InProcess::start(&database_url, &staging, &[]).await;
        Some(RealTracker {
            base_url: Url::parse(&format!("{}/", server.base())).expect("base url"),
            database_url,
            server,
            _disk: Some(disk),
            _dir: dir,
        })
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
        self.server.stop().await;
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
