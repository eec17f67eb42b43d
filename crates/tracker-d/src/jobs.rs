//! The job table: atomic claims with leases, heartbeats, completions, releases and the reaper's expiry.
//!
//! A job is half of a WAT (`shard` 0 or 1), numbered as in 2021 (WAT k gives jobs 2k-1 and 2k).
//! Its life: `cpu/open` → `cpu/pending` (claimed) → `gpu/open` (bundle handed off) → `gpu/pending`
//! → `gpu/closed`; a HYBRID client closes a `cpu/pending` job directly. A `cpu/pending` job whose
//! WAT cannot be used is reported: `cpu/open` at the back of the queue, and `cpu/failed` (never
//! claimed again) after `--max-wat-failures` reports (see [`broken`]). Every transition out of
//! `pending` is guarded by `holder = token AND status = 'pending'`, so a job is completed at
//! most once and never by a client whose lease was reaped.

pub mod broken;
mod completion;
pub mod floor;
pub mod held;
pub mod reservation;
pub mod upload_key;

pub use completion::{Completion, Pending, complete, complete_all, pair_room};

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, Dialect, to_i64, to_u64};
use floor::{BOTTOM, Ticket};

/// Which queue a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for, or being scraped by, a CPU or HYBRID client.
    Cpu,
    /// Waiting for, or being scored by, a GPU client.
    Gpu,
}

impl Stage {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cpu => "cpu",
            Stage::Gpu => "gpu",
        }
    }
}

/// A claimed job as the handlers need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job's number.
    pub number: u64,
    /// The WAT URL.
    pub url: String,
    /// Half of the WAT.
    pub shard: u8,
    /// First sample ID.
    pub start_id: u64,
    /// One past the last sample ID.
    pub end_id: u64,
    /// The handoff of the bundle, for GPU jobs.
    pub gpu_url: Option<String>,
    /// Lease expiry, unix milliseconds.
    pub lease_until: i64,
    /// A completion happened before: `parsed` may hold the job's pairs (schema version 8).
    pub scraped_before: bool,
}

/// Claims up to `max_jobs` open jobs of `stage` for `holder` in one atomic statement.
pub async fn claim(
    db: &Db,
    holder: &str,
    stage: Stage,
    max_jobs: u32,
    lease_until: i64,
) -> Result<Vec<ClaimedJob>, DbError> {
    let sql = claim_sql(db.dialect(), OPEN_SELECTION);
    claim_above_floor(db, holder, stage, lease_until, &sql, |query| {
        query.bind(stage.as_str()).bind(i64::from(max_jobs.max(1)))
    })
    .await
}

/// The open jobs of stage `$4` from the floor `$3` on, `$5` at most, in queue order.
pub(crate) const OPEN_SELECTION: &str = "SELECT number FROM jobs WHERE stage = $4 AND status = 'open' \
     AND shuffle_key >= $3 ORDER BY shuffle_key, number LIMIT $5";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Runs a claim statement (`$1` holder, `$2` lease expiry, `$3` floor, then what `bind_rest`
/// binds) from the stage's floor, and once more from the bottom if that found nothing.
async fn claim_above_floor<'q>(
    db: &Db,
    holder: &'q str,
    stage: Stage,
    lease_until: i64,
    sql: &'q str,
    bind_rest: impl Fn(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<Vec<ClaimedJob>, DbError> {
    let ticket = db.open_floor().ticket(stage);
    let mut rows = Vec::new();
    for floor in scan_floors(ticket) {
        let query = sqlx::query(sql).bind(holder).bind(lease_until).bind(floor);
        rows = bind_rest(query).fetch_all(db.relaxed_pool()).await?;
        if !rows.is_empty() {
            break;
        }
    }
    claimed(db, holder, ticket, &rows)
}

/// The floor to scan from, then the bottom if that found nothing (see [`floor`]).
fn scan_floors(ticket: Ticket) -> impl Iterator<Item = i64> {
    std::iter::once(ticket.floor).chain((ticket.floor != BOTTOM).then_some(BOTTOM))
}

/// The claimed rows as jobs, lowest number first, after raising the stage's floor past them.
fn claimed(
    db: &Db,
    holder: &str,
    ticket: Ticket,
    rows: &[AnyRow],
) -> Result<Vec<ClaimedJob>, DbError> {
    let mut lowest = None::<i64>;
    for row in rows {
        let key: i64 = row.try_get("shuffle_key")?;
        lowest = Some(lowest.map_or(key, |lowest| lowest.min(key)));
    }
    if let Some(lowest) = lowest {
        db.open_floor().raise(ticket, lowest);
    }
    sorted(db, holder, rows)
}

/// Claims every open CPU half of one WAT for `holder`, so the WAT is streamed once.
///
/// On PostgreSQL the WAT is chosen by locking its lowest open half, with `SKIP LOCKED`: the
/// other half is no candidate while that one is open, so a rival whole-WAT claim skips the
/// whole WAT. Locking whichever open half came first let a rival skip the half it locked and
/// lock the other half of the same WAT, and each claim got one half. Locking the WAT's lower
/// row whatever its state would not do either: a rival whose snapshot predates the winner's
/// commit would lock it afterwards, pick the WAT and claim nothing. SQLite runs one writer at
/// a time.
pub async fn claim_whole_wat(
    db: &Db,
    holder: &str,
    lease_until: i64,
) -> Result<Vec<ClaimedJob>, DbError> {
    let sql = claim_sql(db.dialect(), &whole_wat_selection(db.dialect()));
    claim_above_floor(db, holder, Stage::Cpu, lease_until, &sql, |query| query).await
}

/// The open CPU halves of the WAT whose lowest open half comes first from the floor `$3` on.
pub(crate) fn whole_wat_selection(dialect: Dialect) -> String {
    let wat = match dialect {
        Dialect::Postgres => {
            "SELECT half.wat_index FROM jobs half WHERE half.stage = 'cpu' AND half.status = 'open' \
             AND half.shuffle_key >= $3 AND NOT EXISTS (SELECT 1 FROM jobs lower_half \
             WHERE lower_half.wat_index = half.wat_index AND lower_half.number < half.number \
             AND lower_half.stage = 'cpu' AND lower_half.status = 'open') \
             ORDER BY half.shuffle_key, half.number LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        Dialect::Sqlite => {
            "SELECT wat_index FROM jobs WHERE stage = 'cpu' AND status = 'open' AND shuffle_key >= $3 \
             ORDER BY shuffle_key, number LIMIT 1"
        }
    };
    match dialect {
        // `+`: SQLite goes to the WAT through its index, not through every open CPU job.
        Dialect::Sqlite => format!(
            "SELECT number FROM jobs WHERE wat_index = ({wat}) AND +stage = 'cpu' AND +status = 'open'"
        ),
        Dialect::Postgres => format!(
            "SELECT number FROM jobs WHERE stage = 'cpu' AND status = 'open' AND wat_index = ({wat})"
        ),
    }
}

/// Claims the open CPU halves of the WAT at `url` for `holder` (the full-WAT `lookup-wat`).
pub async fn claim_wat_by_url(
    db: &Db,
    holder: &str,
    url: &str,
    lease_until: i64,
) -> Result<Vec<ClaimedJob>, DbError> {
    let sql = claim_sql(db.dialect(), wat_by_url(db.dialect()));
    let rows = sqlx::query(&sql)
        .bind(holder)
        .bind(lease_until)
        .bind(url)
        .fetch_all(db.relaxed_pool())
        .await?;
    sorted(db, holder, &rows)
}

/// The open CPU halves of the WAT at `$3`, found through the url's index.
///
/// Whichever url is asked, a miss must cost one index lookup: `lookup-wat` is open to every
/// registered client. With plain `stage` and `status` terms SQLite, which keeps no statistics,
/// walked the open-job index instead, every open CPU job (26 ms at 200k jobs, on its only
/// connection); `+` keeps those terms off indexes. PostgreSQL chooses by its statistics,
/// which `import` refreshes.
pub(crate) fn wat_by_url(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT number FROM jobs WHERE url = $3 AND +stage = 'cpu' AND +status = 'open'"
        }
        Dialect::Postgres => {
            "SELECT number FROM jobs WHERE url = $3 AND stage = 'cpu' AND status = 'open'"
        }
    }
}

/// The claim statement around `selection` (which picks job numbers; `$1` is the holder and
/// `$2` the lease expiry). A claim clears the job's upload key and address reservation:
/// both belonged to an earlier holder.
///
/// SQLite runs one writer at a time, so a single `UPDATE … WHERE number IN (selection)` is
/// atomic. PostgreSQL gets a locking CTE: it is evaluated exactly once, and `SKIP LOCKED`
/// lets concurrent claims pass each other instead of queueing (or deadlocking) on the same
/// rows. In both, the `status = 'open'` re-check is what makes a double assignment impossible.
pub(crate) fn claim_sql(dialect: Dialect, selection: &str) -> String {
    const SET: &str = "SET status = 'pending', holder = $1, lease_until = $2, attempts = jobs.attempts + 1, \
         upload_key = NULL, reserved_from = NULL";
    match dialect {
        // `+status` keeps SQLite's planner on the primary key: with a plain `status = 'open'`
        // it walks the status index over every open job (measured: 29 ms instead of 60 µs).
        Dialect::Sqlite => format!(
            "UPDATE jobs {SET} WHERE number IN ({selection}) AND +status = 'open' \
             RETURNING number, url, shard, start_id, end_id, gpu_url, lease_until, shuffle_key, scraped_before"
        ),
        Dialect::Postgres => format!(
            "WITH picked AS ({selection} FOR UPDATE SKIP LOCKED) \
             UPDATE jobs {SET} FROM picked WHERE jobs.number = picked.number AND jobs.status = 'open' \
             RETURNING jobs.number, jobs.url, jobs.shard, jobs.start_id, jobs.end_id, jobs.gpu_url, jobs.lease_until, \
             jobs.shuffle_key, jobs.scraped_before"
        ),
    }
}

/// The claimed rows as jobs, lowest number first, now held by `holder`.
fn sorted(db: &Db, holder: &str, rows: &[AnyRow]) -> Result<Vec<ClaimedJob>, DbError> {
    let mut jobs: Vec<ClaimedJob> = rows.iter().map(claimed_job).collect::<Result<_, _>>()?;
    jobs.sort_by_key(|job| job.number);
    let numbers: Vec<u64> = jobs.iter().map(|job| job.number).collect();
    db.held_jobs().add(holder, &numbers);
    Ok(jobs)
}

/// A random WAT URL whose CPU halves are all still open, for `/custom/get-cpu-wat`.
pub async fn open_wat_url(db: &Db) -> Result<Option<String>, DbError> {
    let url: Option<String> = sqlx::query_scalar(
        "SELECT url FROM jobs j WHERE stage = 'cpu' AND status = 'open' AND NOT EXISTS \
         (SELECT 1 FROM jobs o WHERE o.wat_index = j.wat_index AND o.number <> j.number \
         AND NOT (o.stage = 'cpu' AND o.status = 'open')) ORDER BY shuffle_key, number LIMIT 1",
    )
    .fetch_optional(db.read_pool())
    .await?;
    Ok(url)
}

/// The jobs `holder` holds, lowest number first: from memory when known (see [`held`]).
pub async fn held(db: &Db, holder: &str) -> Result<Vec<u64>, DbError> {
    if let Some(numbers) = db.held_jobs().get(holder) {
        return Ok(numbers);
    }
    let read = db.held_jobs().begin_read(holder);
    // A read: on the relaxed pool it never waits behind completions' durable commits.
    let numbers: Vec<i64> = sqlx::query_scalar(
        "SELECT number FROM jobs WHERE holder = $1 AND status = 'pending' ORDER BY number",
    )
    .bind(holder)
    .fetch_all(db.relaxed_pool())
    .await?;
    let numbers: Vec<u64> = numbers.into_iter().map(to_u64).collect();
    db.held_jobs().finish_read(read, numbers.clone());
    Ok(numbers)
}

/// Puts `holder`'s jobs (or just `number`) back into their open queue; returns how many.
pub async fn release(db: &Db, holder: &str, number: Option<u64>) -> Result<u64, DbError> {
    let result = match number {
        Some(number) => {
            sqlx::query(
                "UPDATE jobs SET status = 'open', holder = NULL, lease_until = NULL \
                 WHERE holder = $1 AND status = 'pending' AND number = $2",
            )
            .bind(holder)
            .bind(to_i64(number))
            .execute(db.pool())
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE jobs SET status = 'open', holder = NULL, lease_until = NULL \
                 WHERE holder = $1 AND status = 'pending'",
            )
            .bind(holder)
            .execute(db.pool())
            .await?
        }
    };
    if result.rows_affected() > 0 {
        db.open_floor().reset();
        match number {
            Some(number) => db.held_jobs().remove(holder, number),
            None => db.held_jobs().forget(holder),
        }
    }
    Ok(result.rows_affected())
}

/// A GPU client could not use the bundle: the job goes back to the CPU queue to be scraped
/// again (the bundle is what was broken, so it must be produced anew), and the handoff's
/// credit is taken back. `None` if `holder` does not hold GPU job `number`.
///
/// In one transaction: the job's CPU completor loses the `cpu_leaderboard` point its handoff
/// earned (the row goes at zero), and, when `uncredit_in_db` says so for the token of the
/// client that handed it off, so does that client's `clients.jobs_completed` (otherwise the
/// caller takes it back in the client cache, which writes it as the credit was written).
/// Before this a rejected bundle kept its credit, so handing off junk and having it reported
/// earned a point, and a dedup allowance, every round.
pub async fn invalidate(
    db: &Db,
    holder: &str,
    number: u64,
    uncredit_in_db: impl FnOnce(&str) -> bool,
) -> Result<Option<Invalidated>, DbError> {
    let lock = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    let guard = "number = $1 AND holder = $2 AND status = 'pending' AND stage = 'gpu'";
    let mut transaction = db.pool().begin().await?;
    let handoff: Option<(Option<String>, Option<String>)> = sqlx::query_as(&format!(
        "SELECT cpu_completor, cpu_holder FROM jobs WHERE {guard}{lock}"
    ))
    .bind(to_i64(number))
    .bind(holder)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((cpu_completor, cpu_holder)) = handoff else {
        transaction.rollback().await?;
        return Ok(None);
    };
    let key: Option<i64> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET stage = 'cpu', status = 'open', holder = NULL, lease_until = NULL, \
         gpu_url = NULL, cpu_completor = NULL, cpu_holder = NULL, cpu_done_at = NULL \
         WHERE {guard} RETURNING shuffle_key"
    ))
    .bind(to_i64(number))
    .bind(holder)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some(key) = key else {
        transaction.rollback().await?;
        return Ok(None);
    };
    if let Some(nickname) = &cpu_completor {
        sqlx::query(
            "UPDATE cpu_leaderboard SET jobs_completed = jobs_completed - 1 \
             WHERE nickname = $1 AND jobs_completed > 0",
        )
        .bind(nickname)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM cpu_leaderboard WHERE nickname = $1 AND jobs_completed <= 0")
            .bind(nickname)
            .execute(&mut *transaction)
            .await?;
    }
    // A handoff from before schema version 5 names no client: only its leaderboard point goes.
    let holder_uncredited = cpu_holder.as_deref().is_some_and(uncredit_in_db);
    if let (true, Some(token)) = (holder_uncredited, cpu_holder.as_deref()) {
        sqlx::query(
            "UPDATE clients SET jobs_completed = jobs_completed - 1 \
             WHERE token = $1 AND jobs_completed > 0",
        )
        .bind(token)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    db.open_floor().lower(Stage::Cpu, key);
    db.held_jobs().remove(holder, number);
    Ok(Some(Invalidated {
        cpu_completor,
        cpu_holder,
        holder_uncredited,
    }))
}

/// Whose handoff a bundle reported invalid took back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidated {
    /// The nickname the handoff credited on the CPU leaderboard.
    pub cpu_completor: Option<String>,
    /// The token of the client that handed it off (unknown for handoffs from before schema
    /// version 5).
    pub cpu_holder: Option<String>,
    /// Whether its `clients.jobs_completed` was taken back in the database; if not, the
    /// caller takes it back in the client cache.
    pub holder_uncredited: bool,
}

/// Returns expired leases to the open queues; returns how many.
pub async fn expire_leases(db: &Db, now: i64) -> Result<u64, DbError> {
    let result = sqlx::query(
        // `holder IS NOT NULL` steers both planners to the partial holder index: only held
        // jobs are looked at, however large the table.
        "UPDATE jobs SET status = 'open', holder = NULL, lease_until = NULL \
         WHERE holder IS NOT NULL AND status = 'pending' AND lease_until < $1",
    )
    .bind(now)
    .execute(db.pool())
    .await?;
    if result.rows_affected() > 0 {
        db.open_floor().reset();
        db.held_jobs().forget_all();
    }
    Ok(result.rows_affected())
}

/// Counts open jobs of `stage`.
pub async fn open_count(db: &Db, stage: Stage) -> Result<u64, DbError> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE stage = $1 AND status = 'open'")
            .bind(stage.as_str())
            .fetch_one(db.read_pool())
            .await?;
    Ok(to_u64(count))
}

/// Of the given handoff addresses, those whose job is closed or that no job carries.
pub async fn completed_addresses(db: &Db, addresses: &[String]) -> Result<Vec<String>, DbError> {
    let mut completed = Vec::new();
    for address in addresses {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE gpu_url = $1 LIMIT 1")
                .bind(address)
                .fetch_optional(db.read_pool())
                .await?;
        if status.is_none_or(|status| status == "closed") {
            completed.push(address.clone());
        }
    }
    Ok(completed)
}

fn claimed_job(row: &AnyRow) -> Result<ClaimedJob, DbError> {
    Ok(ClaimedJob {
        number: to_u64(row.try_get("number")?),
        url: row.try_get("url")?,
        shard: u8::try_from(row.try_get::<i64, _>("shard")?).unwrap_or(0),
        start_id: to_u64(row.try_get("start_id")?),
        end_id: to_u64(row.try_get("end_id")?),
        gpu_url: row.try_get("gpu_url")?,
        lease_until: row.try_get("lease_until")?,
        scraped_before: row.try_get::<i64, _>("scraped_before")? != 0,
    })
}
