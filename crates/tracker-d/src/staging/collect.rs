//! Garbage collection of the staging store: bundles nobody will read again, and abandoned parts.
//!
//! It is what frees the disk when the disk is full, so it does as much as it can: a blob whose
//! row cannot be deleted (a database that cannot write either) still loses its file, and one
//! failure does not stop the blobs after it. What failed is tried again next round.

use std::time::Duration;

use super::{Staging, StagingError};
use crate::db::{Db, DbError, now_ms};

impl Staging {
    /// Deletes blobs of jobs closed more than `grace` ago, and blobs no job refers to that are
    /// older than the URL lifetime plus `grace` (uploads of lost leases, invalidated bundles).
    /// Also removes temporary files of abandoned uploads. Returns how many blobs went; blobs
    /// that could not be deleted in full are logged and left for the next round.
    pub async fn collect_garbage(&self, db: &Db, grace: Duration) -> Result<u64, StagingError> {
        self.sweep_parts(self.url_ttl + grace).await;
        let now = now_ms();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 4);
        let ttl_ms = i64::try_from(self.url_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT b.key FROM blobs b LEFT JOIN jobs j ON j.gpu_url = 'blob:' || b.key \
             WHERE (j.number IS NULL AND b.created_at < $1) \
             OR (j.status = 'closed' AND j.closed_at < $2)",
        )
        .bind(now - ttl_ms - grace_ms)
        .bind(now - grace_ms)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        let mut collected = 0_u64;
        let mut failed = 0_u64;
        let mut first_failure = None;
        for key in &keys {
            match self.delete(db, key).await {
                Ok(()) => {
                    collected += 1;
                    tracing::debug!(%key, "collected staged blob");
                }
                Err(error) => {
                    failed += 1;
                    first_failure.get_or_insert((key, error));
                }
            }
        }
        if let Some((key, error)) = first_failure {
            tracing::warn!(collected, failed, %key, error = %error, "could not delete every staged blob, retrying next round");
        }
        Ok(collected)
    }

    async fn sweep_parts(&self, older_than: Duration) {
        let Ok(mut entries) = tokio::fs::read_dir(self.dir.join("tmp")).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = entry
                .metadata()
                .await
                .ok()
                .and_then(|metadata| metadata.modified().ok())
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > older_than);
            if stale {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}
