//! Reports that a CPU job's WAT cannot be used: the job goes to the back of its queue, and
//! after `--max-wat-failures` reports it fails for good.
//!
//! A WAT that is broken for good (an HTML page instead of the file, a file cut inside a gzip
//! member, one over the scraper's size cap, a 404) used to be released, and a release puts the
//! job back at its old place in the claim order: the very next claim got it again, so some
//! scraper was always downloading it. A report instead gives the job a shuffle key above that
//! of every job that is open or may open again without an operator (open jobs of both stages,
//! held jobs), so every other open job is handed out first. Keys of other WATs only: the two
//! halves of a WAT, reported one after the other, keep sharing a key, as an import gives them.
//!
//! The highest keys are read from indexes (the open-jobs index per stage, the partial holder
//! index), never by a scan of the table: on SQLite a scan would hold the one writer.

use sqlx::Row;

use super::Stage;
use crate::db::{Db, DbError, Dialect, to_i64, to_u64};

/// Longest failure reason stored and logged, in characters.
pub const MAX_FAILURE_REASON_CHARS: usize = 200;

/// What a report did to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The WAT URL.
    pub url: String,
    /// Reports so far, this one included.
    pub failures: u64,
    /// The job reached the limit: status `failed`, never handed out again until an admin
    /// reset. Otherwise it is open again, behind every other open job.
    pub failed: bool,
}

/// Job `number`, a CPU job `holder` holds, cannot be used for `reason`: counts the report and
/// reopens the job at the back of the CPU queue, or fails it once `max_failures` reports were
/// made. `None` when `holder` does not hold such a job.
pub async fn report(
    db: &Db,
    holder: &str,
    number: u64,
    reason: &str,
    max_failures: u64,
) -> Result<Option<Reported>, DbError> {
    let sql = report_sql(db.dialect());
    let row = sqlx::query(&sql)
        .bind(to_i64(number))
        .bind(holder)
        .bind(reason)
        .bind(to_i64(max_failures.max(1)))
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let key: i64 = row.try_get("shuffle_key")?;
    let reported = Reported {
        url: row.try_get("url")?,
        failures: to_u64(row.try_get("failures")?),
        failed: status == "failed",
    };
    db.held_jobs().remove(holder, number);
    if !reported.failed {
        // The key is above the floor (a claim raised it to a key it took, and keys it took
        // count here while held), so this lowers nothing; the new generation keeps a claim
        // that read the floor before the report from raising it past the job.
        db.open_floor().lower(Stage::Cpu, key);
    }
    Ok(Some(reported))
}

/// The guarded update of a report: `$1` number, `$2` holder, `$3` reason, `$4` the limit.
fn report_sql(dialect: Dialect) -> String {
    // Both take the largest (or smallest) of their arguments.
    let (greatest, least) = match dialect {
        Dialect::Sqlite => ("MAX", "MIN"),
        Dialect::Postgres => ("GREATEST", "LEAST"),
    };
    // The highest key of each set of jobs of other WATs (the job's own key when the set is
    // empty), at most one below the largest key there is, so one past it still fits: only a
    // random import key can come that close, and then the tie is broken by the job number.
    let last_keys = [
        "stage = 'cpu' AND other.status = 'open'",
        "stage = 'gpu' AND other.status = 'open'",
        "holder IS NOT NULL",
    ]
    .map(|set| {
        format!(
            "{least}(COALESCE((SELECT other.shuffle_key FROM jobs other WHERE other.{set} \
             AND other.wat_index <> jobs.wat_index ORDER BY other.shuffle_key DESC LIMIT 1), jobs.shuffle_key), {below_max})",
            below_max = i64::MAX - 1,
        )
    })
    .join(", ");
    format!(
        "UPDATE jobs SET failures = jobs.failures + 1, failure_reason = $3, holder = NULL, lease_until = NULL, \
         status = CASE WHEN jobs.failures + 1 >= $4 THEN 'failed' ELSE 'open' END, \
         shuffle_key = CASE WHEN jobs.failures + 1 >= $4 THEN jobs.shuffle_key ELSE {greatest}({last_keys}) + 1 END \
         WHERE number = $1 AND holder = $2 AND status = 'pending' AND stage = 'cpu' \
         RETURNING url, failures, status, shuffle_key"
    )
}
