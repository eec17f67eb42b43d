//! The one bundle key a job's holder may upload to now: each upload URL supersedes the last.
//!
//! A scraper asks for an upload URL, `PUT`s its bundle and completes the job. Recording the
//! key of the latest URL on the job bounds what one held job can leave in the staging store
//! to a single blob, and makes every earlier URL of the job useless.

use crate::db::{Db, DbError, to_i64};

/// Where a job stands for an upload to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// The key of the latest upload URL issued for the job, if any.
    pub key: Option<String>,
    /// The job is held in the CPU queue (`cpu/pending`): its bundle is still being produced.
    pub scraping: bool,
}

/// Makes `key` the job's upload key if `holder` holds it in the CPU queue; returns whether it did.
pub async fn issue(db: &Db, holder: &str, number: u64, key: &str) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE jobs SET upload_key = $1 \
         WHERE number = $2 AND holder = $3 AND status = 'pending' AND stage = 'cpu'",
    )
    .bind(key)
    .bind(to_i64(number))
    .bind(holder)
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The job's upload key and whether it is being scraped; `None` when there is no such job.
pub async fn state(db: &Db, number: u64) -> Result<Option<UploadState>, DbError> {
    let row: Option<(Option<String>, String, String)> =
        sqlx::query_as("SELECT upload_key, stage, status FROM jobs WHERE number = $1")
            .bind(to_i64(number))
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|(key, stage, status)| UploadState {
        key,
        scraping: stage == "cpu" && status == "pending",
    }))
}
