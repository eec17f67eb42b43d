//! The tracker's database: one pool over SQLite (embedded default) or PostgreSQL (at scale).
//!
//! Both dialects share the same SQL except where they differ on purpose (the claim's
//! `FOR UPDATE SKIP LOCKED`, column types in the schema). Times are unix milliseconds in
//! `BIGINT` columns, and unsigned numbers are stored as their `i64` bit pattern.
//!
//! On SQLite every write goes through one connection; the reads anyone may make without a
//! token (dashboard figures, counts, listings) have connections of their own (see
//! [`Db::read_pool`]), so they never hold up a claim however long they take.

mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::jobs::floor::OpenFloor;
use crate::jobs::held::HeldJobs;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no database we support.
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://USER@HOST/NAME")]
    UnsupportedUrl(String),
    /// The first connection failed: the server is down or refuses this user, or the SQLite
    /// file cannot be created.
    #[error("cannot open the database {target}: {detail}; {hint}")]
    Unreachable {
        /// The URL without its password, or the SQLite path.
        target: String,
        detail: String,
        hint: String,
    },
    /// The database refused or failed a statement.
    #[error(transparent)]
    Sql(sqlx::Error),
}

/// Longest wait for a database connection before a request is answered 503 with
/// `Retry-After`: well under the 30 s clients wait for an answer, so that during a database
/// outage they get the 503 rather than their own timeout.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Statement failures seen by this process, counted as they become [`DbError::Sql`]: the
/// SQLite pool replaces its connection after one (see [`Db::connect`]).
static SQL_FAILURES: AtomicU64 = AtomicU64::new(0);

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        SQL_FAILURES.fetch_add(1, Ordering::Relaxed);
        DbError::Sql(error)
    }
}

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, one writer connection.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A connected, migrated database, with what this process remembers about its jobs.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    relaxed: AnyPool,
    read: AnyPool,
    dialect: Dialect,
    /// Where claims start their scan of the open jobs (a hint kept in this process).
    open_floor: Arc<OpenFloor>,
    /// Which jobs each client holds, as this process has seen them change.
    held_jobs: Arc<HeldJobs>,
}

impl Db {
    /// Connects to `url`, creating a SQLite file if needed, and runs the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        let db = Db::open(url, max_connections).await?;
        schema::migrate(&db).await?;
        Ok(db)
    }

    /// Connects to `url`, creating a SQLite file if needed.
    async fn open(url: &str, max_connections: u32) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = dialect_of(url)?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        probe(&url, dialect, &options).await?;
        let pool_options = AnyPoolOptions::new().acquire_timeout(POOL_ACQUIRE_TIMEOUT);
        let pool = match dialect {
            // One connection: SQLite has one writer anyway, and a single connection never
            // sees SQLITE_BUSY on a deferred transaction that upgrades to a write.
            Dialect::Sqlite => {
                pool_options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    // After a failed statement the connection is replaced, not reused. When
                    // SQLite rolls a transaction back itself (a full disk, an I/O error, a
                    // trigger's RAISE(ROLLBACK)), sqlx's own ROLLBACK then fails and it keeps
                    // counting the transaction as open: every later `begin` became a savepoint
                    // inside one transaction that never committed, while requests were answered
                    // 200. A new connection starts clean.
                    .after_release({
                        let seen = Arc::new(AtomicU64::new(SQL_FAILURES.load(Ordering::Relaxed)));
                        move |_, _| {
                            let now = SQL_FAILURES.load(Ordering::Relaxed);
                            let clean = seen.swap(now, Ordering::Relaxed) == now;
                            if !clean {
                                tracing::info!(
                                    "a statement failed; replacing the sqlite connection"
                                );
                            }
                            Box::pin(async move { Ok(clean) })
                        }
                    })
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // One statement per call: a multi-statement string may stop after
                            // the first pragma, silently leaving `synchronous = FULL`.
                            for pragma in SQLITE_PRAGMAS {
                                connection.execute(*pragma).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?
            }
            Dialect::Postgres => {
                pool_options
                    .max_connections(max_connections)
                    .connect_with(options.clone())
                    .await?
            }
        };
        let relaxed = match dialect {
            Dialect::Sqlite => pool.clone(),
            // Claims, lease renewals and touches may be lost if PostgreSQL itself crashes: a
            // lost claim or renewal only makes a lease end early, and the completion guard
            // (`holder = token`) still keeps every job completed once. Completions, imports
            // and dedup additions stay on the durable pool.
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                    .max_connections(max_connections)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection.execute("SET synchronous_commit = off").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?
            }
        };
        let read = match dialect {
            // WAL lets these read while the one writer writes; a `:memory:` database is
            // private to its connection, so it has none.
            Dialect::Sqlite if !url.contains(":memory:") => AnyPoolOptions::new()
                .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                .max_connections(SQLITE_READERS)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        for pragma in SQLITE_READER_PRAGMAS {
                            connection.execute(*pragma).await?;
                        }
                        Ok(())
                    })
                })
                .connect_lazy_with(options),
            _ => pool.clone(),
        };
        Ok(Db {
            pool,
            relaxed,
            read,
            dialect,
            open_floor: Arc::default(),
            held_jobs: Arc::default(),
        })
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes that may be lost in a database crash without harm (PostgreSQL
    /// `synchronous_commit = off`; the same pool on SQLite).
    pub fn relaxed_pool(&self) -> &AnyPool {
        &self.relaxed
    }

    /// The pool for reads that may see the database as of a moment ago and must never wait
    /// behind the writer nor hold it up: the tokenless reads. On SQLite, read-only
    /// connections of their own; on PostgreSQL, the main pool.
    pub fn read_pool(&self) -> &AnyPool {
        &self.read
    }

    /// The shuffle-key floors of the open queues (see [`OpenFloor`]).
    pub fn open_floor(&self) -> &OpenFloor {
        &self.open_floor
    }

    /// The held-job sets of the clients (see [`HeldJobs`]).
    pub fn held_jobs(&self) -> &HeldJobs {
        &self.held_jobs
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection, waiting for statements in flight.
    pub async fn close(&self) {
        self.pool.close().await;
        self.relaxed.close().await;
        self.read.close().await;
    }
}

/// WAL with `synchronous = NORMAL`: a commit is durable against a process crash (SIGKILL) at
/// once and against power loss from the next checkpoint; no fsync per commit.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA temp_store = MEMORY",
];

/// Read-only SQLite connections for [`Db::read_pool`]. The cached reads each run one at a time,
/// so a few serve them; more would only take CPU from the writer.
const SQLITE_READERS: u32 = 2;

/// A reader refuses to write, whatever statement it is given.
const SQLITE_READER_PRAGMAS: &[&str] = &[
    "PRAGMA query_only = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA temp_store = MEMORY",
];

/// Opens and closes one connection: a pool that cannot connect reports only that it timed out
/// after 30 s, without the cause.
async fn probe(url: &str, dialect: Dialect, options: &AnyConnectOptions) -> Result<(), DbError> {
    use sqlx::Connection;
    let attempt = tokio::time::timeout(
        Duration::from_secs(30),
        sqlx::AnyConnection::connect_with(options),
    )
    .await;
    let flag = "check --database-url (TRACKER_DATABASE_URL)";
    let detail = match attempt {
        Ok(Ok(mut connection)) => {
            // SQLite opens any file lazily: read the schema, so that a file that is not a
            // database is refused here, with its path, instead of by every pooled connection.
            let read = match dialect {
                Dialect::Sqlite => sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                    .fetch_one(&mut connection)
                    .await
                    .map(drop),
                Dialect::Postgres => Ok(()),
            };
            let _ = connection.close().await;
            match read {
                Ok(()) => return Ok(()),
                Err(error) => {
                    return Err(DbError::Unreachable {
                        target: sqlite_path(url),
                        detail: error.to_string(),
                        hint: format!(
                            "the file exists but is not an SQLite database: point at a new file or a tracker database; {flag}"
                        ),
                    });
                }
            }
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 30 s".to_owned(),
    };
    let (target, hint) = match dialect {
        Dialect::Sqlite => {
            let path = sqlite_path(url);
            let folder = std::path::Path::new(&path)
                .parent()
                .filter(|folder| !folder.as_os_str().is_empty());
            let hint = match folder {
                Some(folder) if !folder.is_dir() => format!(
                    "the folder {} does not exist: create it (mkdir -p) or {flag}",
                    folder.display()
                ),
                _ => format!("is the file and its folder writable by this user? {flag}"),
            };
            (path, hint)
        }
        Dialect::Postgres => (
            without_password(url),
            format!("is PostgreSQL running there and does it accept this user? {flag}"),
        ),
    };
    Err(DbError::Unreachable {
        target,
        detail,
        hint,
    })
}

/// The file of an `sqlite:` URL, for messages.
fn sqlite_path(url: &str) -> String {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    path.split('?').next().unwrap_or(path).to_owned()
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn dialect_of(url: &str) -> Result<Dialect, DbError> {
    if url.starts_with("sqlite:") {
        Ok(Dialect::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Dialect::Postgres)
    } else {
        Err(DbError::UnsupportedUrl(url.to_owned()))
    }
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Stores an unsigned value in a signed `BIGINT` column.
pub fn to_i64(value: u64) -> i64 {
    value as i64
}

/// Reads an unsigned value back from a signed `BIGINT` column.
pub fn to_u64(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_by_scheme() {
        assert_eq!(dialect_of("sqlite://x.db").unwrap(), Dialect::Sqlite);
        assert_eq!(dialect_of("sqlite::memory:").unwrap(), Dialect::Sqlite);
        assert_eq!(dialect_of("postgres://u@h/d").unwrap(), Dialect::Postgres);
        assert!(dialect_of("mysql://h/d").is_err());
    }

    #[tokio::test]
    async fn sqlite_runs_in_wal_without_fsync_per_commit() {
        let dir = std::env::temp_dir().join(format!("cah-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.sqlite", dir.display()), 1)
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 1), "1 is NORMAL");
        db.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_opened_says_why_and_what_to_do() {
        let dir = std::env::temp_dir().join(format!("cah-db-{}", uuid::Uuid::new_v4().simple()));
        let missing = dir.join("missing");
        let error = Db::connect(&format!("sqlite://{}/t.sqlite", missing.display()), 1)
            .await
            .expect_err("no such folder");
        let text = error.to_string();
        assert!(
            text.contains(&format!("the folder {} does not exist", missing.display()))
                && text.contains("TRACKER_DATABASE_URL"),
            "{text}"
        );
        // A file that is not a database: refused at once with its path, not by every
        // pooled connection until the pool times out.
        std::fs::create_dir_all(&dir).unwrap();
        let text_file = dir.join("list.txt");
        std::fs::write(
            &text_file,
            "not a database, just a long enough line of text\n".repeat(100),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let text = Db::connect(&format!("sqlite://{}", text_file.display()), 1)
            .await
            .expect_err("not a database")
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{text}");
        assert!(
            text.contains(&text_file.display().to_string())
                && text.contains("is not an SQLite database")
                && text.contains("TRACKER_DATABASE_URL"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // A port nothing listens on: refused at once, not a pool timeout 30 s later.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let url = format!("postgres://cah:hunter2@127.0.0.1:{port}/tracker");
        let text = Db::connect(&url, 2).await.expect_err("refused").to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        assert!(
            text.contains(&format!("postgres://cah:***@127.0.0.1:{port}/tracker"))
                && !text.contains("hunter2")
                && text.to_lowercase().contains("refused")
                && text.contains("is PostgreSQL running"),
            "{text}"
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("postgres://u:p@h:5/d?x=1"),
            "postgres://u:***@h:5/d?x=1"
        );
        assert_eq!(without_password("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(without_password("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn unsigned_round_trip() {
        for value in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(to_u64(to_i64(value)), value);
        }
    }
}
