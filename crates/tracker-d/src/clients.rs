//! Registered clients: registration, the touch that every call makes, lookups and the idle reaper.

use cah_protocol::ClientType;
use cah_protocol::ext::ClientInfo;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, Dialect, to_u64};
use crate::names;

/// A registered client, as the handlers need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// The secret token.
    pub token: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub client_type: ClientType,
    /// Leaderboard name.
    pub nickname: String,
    /// Address it registered from.
    pub address: String,
}

/// A client as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSummary {
    /// Display name.
    pub display_name: String,
    /// Role.
    pub client_type: ClientType,
    /// Leaderboard name.
    pub nickname: String,
    /// Last progress string.
    pub progress: String,
    /// Jobs completed.
    pub jobs_completed: u64,
    /// Registration time, unix milliseconds.
    pub first_seen: i64,
    /// Last call, unix milliseconds.
    pub last_seen: i64,
    /// The job it holds, if any.
    pub job: Option<u64>,
}

/// Registers a client and returns it.
pub async fn register(
    db: &Db,
    nickname: &str,
    client_type: ClientType,
    address: &str,
    now: i64,
) -> Result<Client, DbError> {
    let client = Client {
        token: uuid::Uuid::new_v4().simple().to_string(),
        display_name: names::display_name(),
        client_type,
        nickname: nickname.to_owned(),
        address: address.to_owned(),
    };
    sqlx::query(
        "INSERT INTO clients (token, display_name, kind, nickname, progress, first_seen, last_seen, address) \
         VALUES ($1, $2, $3, $4, 'Initialized', $5, $5, $6)",
    )
    .bind(&client.token)
    .bind(&client.display_name)
    .bind(client.client_type.as_str())
    .bind(&client.nickname)
    .bind(now)
    .bind(&client.address)
    .execute(db.pool())
    .await?;
    Ok(client)
}

/// The client behind `token` and the jobs it completed, straight from the database (no touch).
pub async fn lookup(db: &Db, token: &str) -> Result<Option<(Client, u64)>, DbError> {
    let row = sqlx::query(
        "SELECT token, display_name, kind, nickname, address, jobs_completed FROM clients WHERE token = $1",
    )
    .bind(token)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref()
        .map(|row| Ok((client(row)?, to_u64(row.try_get("jobs_completed")?))))
        .transpose()
}

/// A touch not yet written: when the client was last seen, and its newest progress string.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTouch {
    /// The client's token.
    pub token: String,
    /// Last call, unix milliseconds.
    pub last_seen: i64,
    /// Newest progress string, if one arrived since the last write.
    pub progress: Option<String>,
    /// Jobs completed since the last write, less the handoffs taken back since (negative when
    /// more were taken back than completed).
    pub jobs_completed: i64,
}

/// Touches written per statement (four parameters each).
const TOUCHES_PER_STATEMENT: usize = 200;

/// Writes batched touches, and renews the leases of the touched clients to `last_seen + lease_ms`,
/// in one transaction of a few statements (an `UPDATE … FROM (VALUES …)` per 200 clients;
/// VALUES columns are named `column1…` in both dialects).
pub async fn flush(db: &Db, touches: &[PendingTouch], lease_ms: i64) -> Result<(), DbError> {
    if touches.is_empty() {
        return Ok(());
    }
    let mut transaction = db.relaxed_pool().begin().await?;
    for chunk in touches.chunks(TOUCHES_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 4 * i;
                format!(
                    "(${}, CAST(${} AS BIGINT), ${}, CAST(${} AS BIGINT))",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect();
        let sql = format!(
            "UPDATE clients SET last_seen = v.column2, progress = COALESCE(v.column3, clients.progress), \
             jobs_completed = clients.jobs_completed + v.column4 FROM (VALUES {}) AS v \
             WHERE clients.token = v.column1",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for touch in chunk {
            query = query
                .bind(touch.token.as_str())
                .bind(touch.last_seen)
                .bind(touch.progress.as_deref())
                .bind(touch.jobs_completed);
        }
        query.execute(&mut *transaction).await?;
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, CAST(${} AS BIGINT))", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "UPDATE jobs SET lease_until = v.column2 FROM (VALUES {}) AS v \
             WHERE jobs.holder = v.column1 AND jobs.status = 'pending' AND jobs.lease_until < v.column2",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for touch in chunk {
            query = query
                .bind(touch.token.as_str())
                .bind(touch.last_seen + lease_ms);
        }
        query.execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Registered clients.
pub async fn count(db: &Db) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM clients")
        .fetch_one(db.pool())
        .await?)
}

/// Forgets a client; whether it was registered.
pub async fn remove(db: &Db, token: &str) -> Result<bool, DbError> {
    let removed = sqlx::query("DELETE FROM clients WHERE token = $1")
        .bind(token)
        .execute(db.pool())
        .await?
        .rows_affected();
    db.held_jobs().drop_client(token);
    Ok(removed > 0)
}

/// The most recently seen CPU client at `address` that holds no job: the 2021 full-WAT client
/// registers one and then calls `lookup-wat` without its token.
pub async fn idle_cpu_client_at(db: &Db, address: &str) -> Result<Option<String>, DbError> {
    let token: Option<String> = sqlx::query_scalar(idle_cpu_client_sql(db.dialect()))
        .bind(address)
        .fetch_optional(db.pool())
        .await?;
    Ok(token)
}

/// The statement of [`idle_cpu_client_at`]: the clients of one address, through its index.
///
/// SQLite, without statistics, preferred the type's index because it also gives the order,
/// and so read every CPU client on each tokenless `lookup-wat`; `+` keeps it off that index.
pub(crate) fn idle_cpu_client_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT token FROM clients c WHERE address = $1 AND +kind = 'CPU' AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.holder = c.token AND j.status = 'pending') \
             ORDER BY last_seen DESC LIMIT 1"
        }
        Dialect::Postgres => {
            "SELECT token FROM clients c WHERE address = $1 AND kind = 'CPU' AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.holder = c.token AND j.status = 'pending') \
             ORDER BY last_seen DESC LIMIT 1"
        }
    }
}

/// Releases the jobs of clients idle since before `cutoff`, forgets those clients and
/// returns their tokens.
pub async fn reap_idle(db: &Db, cutoff: i64) -> Result<Vec<String>, DbError> {
    let mut transaction = db.pool().begin().await?;
    let reopened = sqlx::query(
        "UPDATE jobs SET status = 'open', holder = NULL, lease_until = NULL WHERE status = 'pending' \
         AND holder IN (SELECT token FROM clients WHERE last_seen < $1)",
    )
    .bind(cutoff)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let removed: Vec<String> =
        sqlx::query_scalar("DELETE FROM clients WHERE last_seen < $1 RETURNING token")
            .bind(cutoff)
            .fetch_all(&mut *transaction)
            .await?;
    transaction.commit().await?;
    if reopened > 0 {
        db.open_floor().reset();
        db.held_jobs().forget_all();
    }
    for token in &removed {
        db.held_jobs().drop_client(token);
    }
    Ok(removed)
}

/// Clients, most recently seen first, at most `limit` per type (all if `None`).
///
/// With a limit, each type's most recent clients are read from its range of the
/// `clients_kind_last_seen` index, so the query (and the held-job lookup of each row) costs
/// the rows listed, not the whole table.
pub async fn list(db: &Db, limit: Option<u32>) -> Result<Vec<ClientSummary>, DbError> {
    let rows = match limit {
        None => {
            sqlx::query(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM clients c ORDER BY c.last_seen DESC"
            ))
            .fetch_all(db.read_pool())
            .await?
        }
        Some(limit) => {
            let per_type: Vec<String> = CLIENT_TYPES
                .iter()
                .map(|client_type| {
                    let kind = client_type.as_str();
                    format!(
                        "SELECT token FROM (SELECT token FROM clients WHERE kind = '{kind}' \
                         ORDER BY last_seen DESC LIMIT $1) AS latest_{kind}"
                    )
                })
                .collect();
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM clients c WHERE c.token IN ({}) ORDER BY c.last_seen DESC",
                per_type.join(" UNION ALL ")
            );
            sqlx::query(&sql)
                .bind(i64::from(limit))
                .fetch_all(db.read_pool())
                .await?
        }
    };
    rows.iter().map(summary).collect()
}

/// The `limit` most recently seen clients, most recent first, as `GET /api/ext/clients` lists
/// them (`last_seen` in seconds): one range of the `clients_last_seen` index, no per-row
/// lookup.
pub async fn recent(db: &Db, limit: u32) -> Result<Vec<ClientInfo>, DbError> {
    let rows = sqlx::query(
        "SELECT display_name, kind, nickname, progress, last_seen FROM clients \
         ORDER BY last_seen DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(db.read_pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ClientInfo {
                display_name: row.try_get("display_name")?,
                client_type: parse_type(row)?,
                nickname: row.try_get("nickname")?,
                progress: row.try_get("progress")?,
                last_seen: row.try_get::<i64, _>("last_seen")? / 1000,
            })
        })
        .collect()
}

/// The client of `client_type` shown as `display_name`, if one is registered (the 2021
/// per-worker page).
pub async fn find(
    db: &Db,
    client_type: ClientType,
    display_name: &str,
) -> Result<Option<ClientSummary>, DbError> {
    let row = sqlx::query(&find_sql(db.dialect()))
        .bind(display_name)
        .bind(client_type.as_str())
        .fetch_optional(db.read_pool())
        .await?;
    row.as_ref().map(summary).transpose()
}

/// The statement of [`find`], through the display name's index (`+`: not through every client
/// of the type, which SQLite preferred for the order it gives).
pub(crate) fn find_sql(dialect: Dialect) -> String {
    let kind = match dialect {
        Dialect::Sqlite => "+c.kind",
        Dialect::Postgres => "c.kind",
    };
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM clients c WHERE c.display_name = $1 AND {kind} = $2 \
         ORDER BY c.last_seen DESC LIMIT 1"
    )
}

/// Registered clients per type.
pub async fn count_by_type(db: &Db) -> Result<Vec<(ClientType, u64)>, DbError> {
    let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM clients GROUP BY kind")
        .fetch_all(db.read_pool())
        .await?;
    rows.iter()
        .map(|row| Ok((parse_type(row)?, to_u64(row.try_get("n")?))))
        .collect()
}

/// What [`summary`] reads, from `clients c`.
const SUMMARY_COLUMNS: &str = "c.display_name, c.kind, c.nickname, c.progress, c.jobs_completed, \
     c.first_seen, c.last_seen, \
     (SELECT MIN(number) FROM jobs j WHERE j.holder = c.token AND j.status = 'pending') AS job";

const CLIENT_TYPES: [ClientType; 3] = [ClientType::Hybrid, ClientType::Cpu, ClientType::Gpu];

fn summary(row: &AnyRow) -> Result<ClientSummary, DbError> {
    let job: Option<i64> = row.try_get("job")?;
    Ok(ClientSummary {
        display_name: row.try_get("display_name")?,
        client_type: parse_type(row)?,
        nickname: row.try_get("nickname")?,
        progress: row.try_get("progress")?,
        jobs_completed: to_u64(row.try_get("jobs_completed")?),
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        job: job.map(to_u64),
    })
}

fn client(row: &AnyRow) -> Result<Client, DbError> {
    Ok(Client {
        token: row.try_get("token")?,
        display_name: row.try_get("display_name")?,
        client_type: parse_type(row)?,
        nickname: row.try_get("nickname")?,
        address: row.try_get("address")?,
    })
}

fn parse_type(row: &AnyRow) -> Result<ClientType, DbError> {
    let kind: String = row.try_get("kind")?;
    ClientType::parse(&kind).ok_or_else(|| {
        DbError::Sql(sqlx::Error::Decode(
            format!("unknown client kind {kind:?} in database").into(),
        ))
    })
}
