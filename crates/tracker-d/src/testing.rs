//! A real tracker-d started in-process for the tests of this and other crates (feature `test-support`).
//!
//! Test code: failures panic with a message that says what to do.

mod small_disk;

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cli::{Cli, Command};
use crate::db::{Db, Dialect};
use crate::{ServeConfig, import};

pub use small_disk::SmallDisk;

/// The databases a suite can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's folder.
    Sqlite,
    /// A fresh database on the server named by `CAH_TEST_POSTGRES_URL`.
    Postgres,
}

/// Both backends, for suites that run against each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A fresh, empty database URL for `backend` (a file in `dir`, or a new PostgreSQL database).
pub async fn fresh_database(backend: Backend, dir: &Path) -> String {
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

/// A tracker serving on `127.0.0.1:0` in the caller's runtime until [`InProcess::stop`].
#[derive(Debug)]
pub struct InProcess {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Serves `database_url` with blobs in `blob_dir`. Registrations are not rate-limited,
    /// external handoffs (`rsync <id>`, http URLs) are accepted, the tokenless reads are
    /// counted afresh on every call (so a test reads what it just did) and the shutdown grace
    /// is 2 s unless `extra` serve flags say otherwise (later flags win).
    pub async fn start(database_url: &str, blob_dir: &Path, extra: &[&str]) -> InProcess {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        InProcess::start_on(any_port, database_url, blob_dir, extra).await
    }

    /// [`InProcess::start`] on a given address: a tracker restarted where clients know it.
    pub async fn start_on(
        addr: SocketAddr,
        database_url: &str,
        blob_dir: &Path,
        extra: &[&str],
    ) -> InProcess {
        let mut argv: Vec<String> = [
            "tracker-d",
            "serve",
            "--database-url",
            database_url,
            "--register-per-minute",
            "100000",
            "--register-burst",
            "100000",
            "--shutdown-grace",
            "2s",
            "--external-bundles",
            "true",
            "--read-cache-ttl",
            "0s",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        argv.push("--blob-dir".to_owned());
        argv.push(blob_dir.display().to_string());
        argv.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
            unreachable!("serve was given");
        };
        let config = ServeConfig::try_from(*args).expect("valid config");
        let db = Db::connect(database_url, 8).await.expect("database opens");
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::serve(listener, db, config, async move {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully and checks that it ended well.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// Imports `urls` as jobs (two halves each) straight into the database.
pub async fn import_urls(database_url: &str, urls: &[String]) -> import::ImportSummary {
    let db = Db::connect(database_url, 2).await.expect("database opens");
    let summary = import::import(&db, urls, false, |_| {})
        .await
        .expect("import");
    db.close().await;
    summary
}

/// Runs one statement on the database from outside the server, as another process would
/// (an operator's `psql`, a second tool); returns the rows it changed.
pub async fn execute(database_url: &str, sql: &str) -> u64 {
    let db = Db::connect(database_url, 1).await.expect("database opens");
    let changed = sqlx::query(sql)
        .execute(db.pool())
        .await
        .expect("statement runs")
        .rows_affected();
    db.close().await;
    changed
}

/// What the tracker's database says of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `cpu` or `gpu`.
    pub stage: String,
    /// `open`, `pending`, `closed` or `failed`.
    pub status: String,
    /// Reports that the job's WAT cannot be used.
    pub failures: u64,
    /// The last such report's reason.
    pub failure_reason: Option<String>,
}

/// Reads job `number` from the database, as another process would.
pub async fn job_state(database_url: &str, number: u64) -> JobState {
    let db = Db::connect(database_url, 1).await.expect("database opens");
    let (stage, status, failures, failure_reason): (String, String, i64, Option<String>) =
        sqlx::query_as(
            "SELECT stage, status, failures, failure_reason FROM jobs WHERE number = $1",
        )
        .bind(crate::db::to_i64(number))
        .fetch_one(db.pool())
        .await
        .expect("the job exists");
    db.close().await;
    JobState {
        stage,
        status,
        failures: crate::db::to_u64(failures),
        failure_reason,
    }
}

/// A statement any registered client can make the tracker run, with arguments to plan it
/// with, and the index it is written to use: tests read its `EXPLAIN`.
#[derive(Debug, Clone)]
pub struct HotQuery {
    /// What it is for.
    pub name: &'static str,
    /// The statement, in the dialect asked for.
    pub sql: String,
    /// Its arguments, `$1` first.
    pub args: Vec<QueryArg>,
    /// The index its plan must name.
    pub index: &'static str,
}

/// An argument of a [`HotQuery`].
#[derive(Debug, Clone, Copy)]
pub enum QueryArg {
    /// A string.
    Text(&'static str),
    /// A number.
    Int(i64),
}

/// The statements whose plan a missing or stale statistic could turn into a walk over a
/// table: a selective lookup (a url, an address, a name) next to a term with an index of its
/// own that matches many rows (a stage, a status, a client type).
pub fn hot_queries(dialect: Dialect) -> Vec<HotQuery> {
    use QueryArg::{Int, Text};
    let url_index = match dialect {
        Dialect::Sqlite => "sqlite_autoindex_jobs_1",
        Dialect::Postgres => "jobs_url_shard_key",
    };
    let claim_args = vec![Text("holder"), Int(0), Int(i64::MIN)];
    vec![
        HotQuery {
            name: "claim",
            sql: crate::jobs::claim_sql(dialect, crate::jobs::OPEN_SELECTION),
            args: [claim_args.clone(), vec![Text("cpu"), Int(1)]].concat(),
            index: "jobs_open",
        },
        HotQuery {
            name: "whole-WAT claim",
            sql: crate::jobs::claim_sql(dialect, &crate::jobs::whole_wat_selection(dialect)),
            args: claim_args,
            index: "jobs_wat",
        },
        HotQuery {
            name: "lookup-wat claim",
            sql: crate::jobs::claim_sql(dialect, crate::jobs::wat_by_url(dialect)),
            args: vec![
                Text("holder"),
                Int(0),
                Text("http://cc.test/wat/nowhere.warc.wat.gz"),
            ],
            index: url_index,
        },
        HotQuery {
            name: "tokenless lookup-wat's client",
            sql: crate::clients::idle_cpu_client_sql(dialect).to_owned(),
            args: vec![Text("127.0.0.1")],
            index: "clients_address",
        },
        HotQuery {
            name: "worker page",
            sql: crate::clients::find_sql(dialect),
            args: vec![Text("quick-fox-1"), Text("CPU")],
            index: "clients_display_name",
        },
    ]
}
