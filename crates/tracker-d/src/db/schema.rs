//! Embedded migrations, one list per dialect, applied in order and recorded in `schema_version`.

use sqlx::Executor;

use super::{Db, DbError, Dialect};

/// Migrations in order. `{bigint}`, `{without_rowid}` and `{fillfactor}` are filled per dialect.
///
/// `lease_until` is deliberately in no index: a heartbeat changes only it, so on PostgreSQL the
/// update is HOT (no index is touched; the table keeps 20 % free space per page for it). The
/// other indexes are partial, so they hold only the rows their queries look for.
///
/// Version 2: `upload_key` is the one bundle key a job's holder may upload to now (a new upload
/// URL supersedes the previous key), and `reserved_from` marks a job that a tokenless 2021
/// `lookup-wat` reserved for a client at that address (see `tracker::full_wat`). Every claim
/// clears both; neither is indexed, so heartbeats stay HOT on PostgreSQL.
///
/// Version 3: `clients_kind_last_seen` lets the dashboard read each type's most recent
/// clients without reading them all.
///
/// Version 4: `failures` counts the reports that a CPU job's WAT cannot be used, and
/// `failure_reason` keeps the last one (capped); a job reported `--max-wat-failures` times
/// gets status `failed` (see `jobs::broken`). `jobs_failed` lets the dashboard list those few
/// jobs without reading the table; neither column is indexed, so heartbeats stay HOT.
///
/// Version 5: `cpu_holder` is the token of the CPU client that handed the job off (set by the
/// handoff, cleared when the job goes back to scraping), so that a bundle reported invalid
/// takes back that client's credit (`jobs::invalidate`); not indexed.
///
/// Version 6: `dedup_sizes` keeps each dedup set's size as counters, updated in the
/// transaction that adds the hashes, so the dashboard reads a few rows instead of counting a
/// set of a billion entries. A set's size is the sum of its `slot`s: each addition updates
/// one slot drawn at random, so concurrent additions to a set on PostgreSQL seldom wait for
/// each other's row lock. The migration counts the existing entries once, into slot 0.
///
/// Version 7: `clients_address` finds the clients of one address (a tokenless `lookup-wat`
/// picks one) without reading every CPU client. An address never changes, so touches do not
/// write this index.
///
/// Version 8: `scraped_before` is set by every completion (a handoff or a close) and never
/// cleared, so a job that goes back to scraping (its bundle reported invalid, an admin reset)
/// tells its next scraper that the `parsed` dedup set may hold the job's own pairs
/// (`ext::Job::scraped_before`): before it, that scraper dropped them all as seen and the job
/// came back empty. Jobs completed before the migration are marked by their stage and status;
/// jobs already sent back before it cannot be told apart. Not indexed.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    number {bigint} PRIMARY KEY,
    url TEXT NOT NULL,
    wat_index {bigint} NOT NULL,
    shard {bigint} NOT NULL,
    start_id {bigint} NOT NULL,
    end_id {bigint} NOT NULL,
    stage TEXT NOT NULL DEFAULT 'cpu',
    status TEXT NOT NULL DEFAULT 'open',
    holder TEXT,
    lease_until {bigint},
    gpu_url TEXT,
    cpu_completor TEXT,
    completor TEXT,
    pairs {bigint},
    shuffle_key {bigint} NOT NULL,
    attempts {bigint} NOT NULL DEFAULT 0,
    cpu_done_at {bigint},
    closed_at {bigint},
    UNIQUE (url, shard)
){fillfactor};
CREATE INDEX jobs_open ON jobs (stage, shuffle_key, number) WHERE status = 'open';
CREATE INDEX jobs_holder ON jobs (holder) WHERE holder IS NOT NULL;
CREATE INDEX jobs_gpu_url ON jobs (gpu_url) WHERE gpu_url IS NOT NULL;
CREATE INDEX jobs_closed_at ON jobs (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX jobs_cpu_done_at ON jobs (cpu_done_at) WHERE cpu_done_at IS NOT NULL;
CREATE INDEX jobs_wat ON jobs (wat_index);
CREATE TABLE clients (
    token TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    nickname TEXT NOT NULL,
    progress TEXT NOT NULL,
    jobs_completed {bigint} NOT NULL DEFAULT 0,
    first_seen {bigint} NOT NULL,
    last_seen {bigint} NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX clients_last_seen ON clients (last_seen);
CREATE INDEX clients_display_name ON clients (display_name);
CREATE TABLE leaderboard (
    nickname TEXT PRIMARY KEY,
    jobs_completed {bigint} NOT NULL DEFAULT 0,
    pairs_scraped {bigint} NOT NULL DEFAULT 0
);
CREATE TABLE cpu_leaderboard (
    nickname TEXT PRIMARY KEY,
    jobs_completed {bigint} NOT NULL DEFAULT 0
);
CREATE TABLE blobs (
    key TEXT PRIMARY KEY,
    job_number {bigint} NOT NULL,
    size {bigint} NOT NULL,
    sha256 TEXT NOT NULL,
    created_at {bigint} NOT NULL
);
CREATE TABLE dedup (
    set_id {bigint} NOT NULL,
    hash {bigint} NOT NULL,
    PRIMARY KEY (set_id, hash)
){without_rowid};
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE jobs ADD COLUMN upload_key TEXT;
ALTER TABLE jobs ADD COLUMN reserved_from TEXT;
"#,
    r#"
CREATE INDEX clients_kind_last_seen ON clients (kind, last_seen);
"#,
    r#"
ALTER TABLE jobs ADD COLUMN failures {bigint} NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN failure_reason TEXT;
CREATE INDEX jobs_failed ON jobs (number) WHERE status = 'failed';
"#,
    r#"
ALTER TABLE jobs ADD COLUMN cpu_holder TEXT;
"#,
    r#"
CREATE TABLE dedup_sizes (
    set_id {bigint} NOT NULL,
    slot {bigint} NOT NULL,
    entries {bigint} NOT NULL,
    PRIMARY KEY (set_id, slot)
);
INSERT INTO dedup_sizes (set_id, slot, entries) SELECT set_id, 0, COUNT(*) FROM dedup GROUP BY set_id;
"#,
    r#"
CREATE INDEX clients_address ON clients (address);
"#,
    r#"
ALTER TABLE jobs ADD COLUMN scraped_before {bigint} NOT NULL DEFAULT 0;
UPDATE jobs SET scraped_before = 1 WHERE stage = 'gpu' OR status = 'closed';
"#,
];

pub(super) async fn migrate(db: &Db) -> Result<(), DbError> {
    migrate_to(db, MIGRATIONS.len()).await
}

/// Applies the migrations not yet applied, up to version `last`.
async fn migrate_to(db: &Db, last: usize) -> Result<(), DbError> {
    let pool = db.pool();
    pool.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await?;
    let applied = applied.unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().take(last) {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version <= applied {
            continue;
        }
        let sql = render(migration, db.dialect());
        let mut transaction = pool.begin().await?;
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            transaction.execute(statement).await?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

fn render(migration: &str, dialect: Dialect) -> String {
    let (bigint, without_rowid, fillfactor) = match dialect {
        Dialect::Sqlite => ("INTEGER", " WITHOUT ROWID", ""),
        Dialect::Postgres => ("BIGINT", "", " WITH (fillfactor = 80)"),
    };
    migration
        .replace("{bigint}", bigint)
        .replace("{without_rowid}", without_rowid)
        .replace("{fillfactor}", fillfactor)
}

#[cfg(test)]
mod tests {
    use cah_protocol::ext::DedupSet;

    use super::*;

    #[tokio::test]
    async fn version_6_counts_the_dedup_entries_a_database_held() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.sqlite", dir.path().display());
        let db = Db::open(&url, 1).await.unwrap();
        migrate_to(&db, 5).await.unwrap();
        sqlx::query("INSERT INTO dedup (set_id, hash) VALUES (1, 1), (1, -2), (3, 7)")
            .execute(db.pool())
            .await
            .unwrap();
        migrate(&db).await.unwrap();
        let sizes = crate::dedup::sizes(&db).await.unwrap();
        let expected = [
            (DedupSet::Parsed, 2),
            (DedupSet::Clipped, 0),
            (DedupSet::Main, 1),
        ];
        assert_eq!(sizes, expected);
        db.close().await;
    }

    #[tokio::test]
    async fn version_8_marks_the_jobs_completed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.sqlite", dir.path().display());
        let db = Db::open(&url, 1).await.unwrap();
        migrate_to(&db, 7).await.unwrap();
        for (number, stage, status) in [
            (1, "cpu", "open"),
            (2, "cpu", "pending"),
            (3, "gpu", "open"),
            (4, "gpu", "pending"),
            (5, "gpu", "closed"),
            (6, "cpu", "closed"),
            (7, "cpu", "failed"),
        ] {
            sqlx::query(
                "INSERT INTO jobs (number, url, wat_index, shard, start_id, end_id, stage, status, shuffle_key) \
                 VALUES ($1, 'u' || $1, 0, 0, 0, 1, $2, $3, $1)",
            )
            .bind(number)
            .bind(stage)
            .bind(status)
            .execute(db.pool())
            .await
            .unwrap();
        }
        migrate(&db).await.unwrap();
        let marked: Vec<i64> =
            sqlx::query_scalar("SELECT number FROM jobs WHERE scraped_before = 1 ORDER BY number")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(marked, [3, 4, 5, 6]);
        db.close().await;
    }
}
