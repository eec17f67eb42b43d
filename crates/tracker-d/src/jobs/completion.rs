//! Completions of held jobs: a CPU client's handoff and a HYBRID or GPU client's close, each
//! one guarded `UPDATE` together with its leaderboard credit; a batch of them all or none.

use super::Stage;
use crate::db::{Db, DbError, Dialect, now_ms, to_i64, to_u64};

/// What a completion does to a held job.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// A CPU client handed off a bundle: the job becomes an open GPU job.
    HandOff {
        /// Where the GPU client finds the bundle (`blob:<key>` or a legacy handoff string).
        gpu_url: String,
    },
    /// A HYBRID client (on a CPU job) or a GPU client (on a GPU job) closed it.
    Close {
        /// The stage the job must be in.
        stage: Stage,
        /// Pairs kept; zero is fine, and more than the job's sample IDs (`end_id - start_id`)
        /// is refused: the close does not apply (see [`pair_room`]).
        pairs: u64,
    },
}

/// Applies `completion` to job `number` if `holder` still holds it, crediting `nickname`
/// on the right leaderboard atomically with it. Returns whether it applied.
pub async fn complete(
    db: &Db,
    holder: &str,
    nickname: &str,
    number: u64,
    completion: &Completion,
) -> Result<bool, DbError> {
    let item = Pending {
        holder,
        nickname,
        number,
        completion,
    };
    let key = match db.dialect() {
        // One statement, so no transaction around it.
        Dialect::Postgres => {
            let mut connection = db.pool().acquire().await?;
            apply(&mut connection, Dialect::Postgres, &item, now_ms()).await?
        }
        Dialect::Sqlite => {
            let mut transaction = db.pool().begin().await?;
            let key = apply(&mut transaction, Dialect::Sqlite, &item, now_ms()).await?;
            if key.is_some() {
                transaction.commit().await?;
            } else {
                transaction.rollback().await?;
            }
            key
        }
    };
    Ok(completed(db, &item, key))
}

/// One completion of a batch for [`complete_all`].
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The client that must hold the job.
    pub holder: &'a str,
    /// Who is credited on the leaderboard.
    pub nickname: &'a str,
    /// The job.
    pub number: u64,
    /// What happens to it.
    pub completion: &'a Completion,
}

/// Applies every completion of `batch` or none of them, in one transaction: returns `None`
/// when all applied, else the index of the first that did not (its holder no longer holds
/// the job, or its count does not fit), with nothing changed. A database error changes
/// nothing either. For requests that complete several jobs at once (`markasdone-cpu`), so a
/// lease expiring between the request's checks and its completions cannot leave it half done.
pub async fn complete_all(db: &Db, batch: &[Pending<'_>]) -> Result<Option<usize>, DbError> {
    let now = now_ms();
    let mut transaction = db.pool().begin().await?;
    let mut keys = Vec::with_capacity(batch.len());
    for (index, item) in batch.iter().enumerate() {
        match apply(&mut transaction, db.dialect(), item, now).await? {
            Some(key) => keys.push(key),
            None => {
                transaction.rollback().await?;
                return Ok(Some(index));
            }
        }
    }
    transaction.commit().await?;
    for (item, key) in batch.iter().zip(keys) {
        completed(db, item, Some(key));
    }
    Ok(None)
}

/// Runs one completion's guarded update and its credit on `connection` (a transaction for
/// SQLite, where they are two statements); returns the job's `shuffle_key` if it applied.
async fn apply(
    connection: &mut sqlx::AnyConnection,
    dialect: Dialect,
    item: &Pending<'_>,
    now: i64,
) -> Result<Option<i64>, DbError> {
    let (update, credit) = completion_sql(item.completion);
    let bound = |sql| bind_completion(sqlx::query_scalar(sql), item, now);
    match dialect {
        // One statement: the credit happens only for the row the update returned.
        Dialect::Postgres => {
            // Data-modifying CTEs run to completion whether or not the outer query reads them.
            let sql = format!(
                "WITH done AS ({update} RETURNING shuffle_key), credit AS ({credit}) \
                 SELECT shuffle_key FROM done"
            );
            Ok(bound(&sql).fetch_optional(&mut *connection).await?)
        }
        Dialect::Sqlite => {
            let sql = format!("{update} RETURNING shuffle_key");
            let key: Option<i64> = bound(&sql).fetch_optional(&mut *connection).await?;
            if key.is_none() {
                return Ok(None);
            }
            // SQLite's upsert needs a WHERE after INSERT … SELECT to parse.
            let credit = credit.replace(" FROM done", " WHERE true");
            let query = sqlx::query(&credit).bind(item.nickname);
            let query = match item.completion {
                Completion::HandOff { .. } => query,
                Completion::Close { pairs, .. } => query.bind(to_i64(*pairs)),
            };
            query.execute(&mut *connection).await?;
            Ok(key)
        }
    }
}

/// Whether a completion applied (its update returned the job's key); the holder let go of
/// the job, and a handoff opened a GPU job.
fn completed(db: &Db, item: &Pending<'_>, key: Option<i64>) -> bool {
    let Some(key) = key else {
        return false;
    };
    db.held_jobs().remove(item.holder, item.number);
    if let Completion::HandOff { .. } = item.completion {
        db.open_floor().lower(Stage::Gpu, key);
    }
    true
}

/// The guarded update of a completion and the leaderboard credit that goes with it: `$1`
/// nickname, `$2` gpu_url or pairs, `$3` now, `$4` number, `$5` holder, `$6` stage (the
/// credit uses only `$1` and, for a close, `$2`).
///
/// A `blob:<key>` handoff applies only while `key` is still the job's upload key: a new upload
/// URL issued meanwhile superseded it and deleted its blob, so the handoff would point GPU
/// clients at nothing. The key is checked in the same statement, so of a handoff and a new
/// upload URL racing for one job exactly one wins, in either order.
fn completion_sql(completion: &Completion) -> (&'static str, &'static str) {
    match completion {
        Completion::HandOff { .. } => (
            "UPDATE jobs SET stage = 'gpu', status = 'open', holder = NULL, lease_until = NULL, \
             gpu_url = $2, cpu_completor = $1, cpu_holder = $5, cpu_done_at = $3, scraped_before = 1 \
             WHERE number = $4 AND holder = $5 AND status = 'pending' AND stage = $6 \
             AND ($2 NOT LIKE 'blob:%' OR upload_key = substr($2, 6))",
            "INSERT INTO cpu_leaderboard (nickname, jobs_completed) SELECT $1, 1 FROM done \
             ON CONFLICT (nickname) DO UPDATE SET jobs_completed = cpu_leaderboard.jobs_completed + 1 \
             RETURNING nickname",
        ),
        Completion::Close { .. } => (
            "UPDATE jobs SET status = 'closed', holder = NULL, lease_until = NULL, \
             completor = $1, pairs = $2, closed_at = $3, scraped_before = 1 \
             WHERE number = $4 AND holder = $5 AND status = 'pending' AND stage = $6 \
             AND $2 BETWEEN 0 AND end_id - start_id",
            "INSERT INTO leaderboard (nickname, jobs_completed, pairs_scraped) SELECT $1, 1, $2 FROM done \
             ON CONFLICT (nickname) DO UPDATE SET jobs_completed = leaderboard.jobs_completed + 1, \
             pairs_scraped = leaderboard.pairs_scraped + excluded.pairs_scraped RETURNING nickname",
        ),
    }
}

fn bind_completion<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    item: &Pending<'q>,
    now: i64,
) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    let query = query.bind(item.nickname);
    let (query, stage) = match item.completion {
        Completion::HandOff { gpu_url } => (query.bind(gpu_url.as_str()), Stage::Cpu),
        Completion::Close { stage, pairs } => (query.bind(to_i64(*pairs)), *stage),
    };
    query
        .bind(now)
        .bind(to_i64(item.number))
        .bind(item.holder)
        .bind(stage.as_str())
}

/// How many pairs job `number` can hold (its sample IDs, `end_id - start_id`), if `holder`
/// holds it; tells a close refused for its count from one refused for a lost lease.
pub async fn pair_room(db: &Db, holder: &str, number: u64) -> Result<Option<u64>, DbError> {
    let room: Option<i64> = sqlx::query_scalar(
        "SELECT end_id - start_id FROM jobs WHERE number = $1 AND holder = $2 AND status = 'pending'",
    )
    .bind(to_i64(number))
    .bind(holder)
    .fetch_optional(db.pool())
    .await?;
    Ok(room.map(to_u64))
}
