//! The staging blob store: signed, expiring URLs to PUT a job's bundle and GET it back.
//!
//! URLs are capabilities: `/blobs/{key}?expires={unix ms}&signature={hex HMAC-SHA256}` over the
//! method, key and expiry, so a volunteer node never holds storage credentials. The same
//! issuance (`put_url`/`get_url`) is what an S3 backend would answer with presigned URLs.
//! A PUT streams to a temporary file (size cap, SHA-256, fsync) and renames it into place,
//! so a blob is either complete or absent. Which PUTs may be stored is the tracker's call
//! (`tracker::upload`): this store receives one upload per job at a time (`receiving`) and
//! never replaces a stored blob.

mod collect;
mod error;
mod receiving;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedMutexGuard;
use url::Url;

use cah_protocol::ext::StoredBlob;

use crate::db::{Db, DbError, now_ms, to_i64, to_u64};
use crate::keyed_locks::KeyedLocks;
use receiving::Receiving;

/// Bytes gathered before each write of an upload to its file.
const WRITE_BUFFER: usize = 1024 * 1024;

pub use error::StagingError;

/// A folder of blobs plus the key that signs their URLs.
#[derive(Clone)]
pub struct Staging {
    dir: PathBuf,
    signing_key: Vec<u8>,
    url_ttl: Duration,
    max_bytes: u64,
    receiving: Arc<Receiving>,
    commits: Arc<KeyedLocks<u64>>,
}

/// A body received in full into a temporary file, not yet a blob.
#[derive(Debug)]
pub struct Part {
    tmp: PathBuf,
    /// Bytes received.
    pub size: u64,
    /// Hex SHA-256 of what was received.
    pub sha256: String,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging")
            .field("dir", &self.dir)
            .field("signing_key", &"***")
            .field("url_ttl", &self.url_ttl)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Staging {
    /// Opens (creating) the store in `dir`.
    pub async fn open(
        dir: PathBuf,
        signing_key: Vec<u8>,
        url_ttl: Duration,
        max_bytes: u64,
    ) -> Result<Staging, StagingError> {
        let tmp = dir.join("tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|source| StagingError::io(tmp, source))?;
        Ok(Staging {
            dir,
            signing_key,
            url_ttl,
            max_bytes,
            receiving: Arc::default(),
            commits: Arc::default(),
        })
    }

    /// Largest accepted body.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// A signed URL to PUT blob `key`, and when it expires.
    pub fn put_url(&self, public_url: &Url, key: &str) -> (String, i64) {
        self.signed_url("PUT", public_url, key)
    }

    /// A signed URL to GET blob `key`.
    pub fn get_url(&self, public_url: &Url, key: &str) -> String {
        self.signed_url("GET", public_url, key).0
    }

    fn signed_url(&self, method: &str, public_url: &Url, key: &str) -> (String, i64) {
        let expires = now_ms() + i64::try_from(self.url_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let signature = self.signature(method, key, expires);
        let base = public_url.as_str().trim_end_matches('/');
        (
            format!("{base}/blobs/{key}?expires={expires}&signature={signature}"),
            expires,
        )
    }

    fn signature(&self, method: &str, key: &str, expires: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.signing_key)
            .expect("hmac accepts keys of any length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a signed URL's parameters.
    pub fn verify(
        &self,
        method: &str,
        key: &str,
        expires: i64,
        signature: &str,
    ) -> Result<(), StagingError> {
        if !valid_key(key) {
            return Err(StagingError::BadSignature);
        }
        let given = hex::decode(signature).map_err(|_| StagingError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.signing_key)
            .expect("hmac accepts keys of any length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        mac.verify_slice(&given)
            .map_err(|_| StagingError::BadSignature)?;
        if expires < now_ms() {
            return Err(StagingError::Expired);
        }
        Ok(())
    }

    /// Path of a complete blob.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Streams `body` into a temporary part for blob `key` of job `number`. A newer upload to
    /// the same job cancels this one (its client retried, or asked for a new URL), so one job
    /// never has more than one body in flight.
    pub async fn receive<S, E>(
        &self,
        key: &str,
        number: u64,
        mut body: S,
    ) -> Result<Part, StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + 'static,
    {
        let slot = self.receiving.begin(number, key);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{key}.{}.part", uuid::Uuid::new_v4().simple()));
        match self.write_part(&tmp, &mut body, slot.cancelled()).await {
            Ok((size, sha256)) => Ok(Part { tmp, size, sha256 }),
            Err(error) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(error)
            }
        }
    }

    /// Cancels the upload to job `number` in flight, if any (its URL was superseded).
    pub fn cancel_receiving(&self, number: u64) {
        self.receiving.cancel(number, None);
    }

    /// The uploads in flight, as (job number, key).
    pub fn uploads_in_flight(&self) -> Vec<(u64, String)> {
        self.receiving.in_flight()
    }

    /// Cancels the upload in flight to blob `key` of job `number`, if it is still the job's.
    pub fn cancel_upload(&self, number: u64, key: &str) {
        self.receiving.cancel(number, Some(key));
    }

    /// Serializes what decides and changes job `number`'s blobs (commits, supersessions).
    pub async fn commit_lock(&self, number: u64) -> OwnedMutexGuard<()> {
        self.commits.lock(&number).await
    }

    /// Makes `part` blob `key` of job `number`, never replacing a stored blob; the caller holds
    /// the job's [`commit_lock`](Self::commit_lock) and checked that the key may be stored.
    ///
    /// The row comes first and claims the key; the file is renamed into place after it. A crash
    /// in between leaves a row without a file, which the client's retried PUT (same bytes)
    /// mends through [`settle_retry`](Self::settle_retry).
    pub async fn commit(
        &self,
        db: &Db,
        part: Part,
        key: &str,
        number: u64,
    ) -> Result<StoredBlob, StagingError> {
        let inserted = sqlx::query(
            "INSERT INTO blobs (key, job_number, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(to_i64(number))
        .bind(to_i64(part.size))
        .bind(&part.sha256)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map_err(DbError::from);
        match inserted {
            Ok(result) if result.rows_affected() == 1 => {}
            Ok(_) => {
                self.discard(part).await;
                return Err(StagingError::Conflict(format!(
                    "blob {key} is already stored and cannot be replaced"
                )));
            }
            Err(error) => {
                self.discard(part).await;
                return Err(error.into());
            }
        }
        let stored = StoredBlob {
            key: key.to_owned(),
            size: part.size,
            sha256: part.sha256.clone(),
        };
        if let Err(error) = self.place(part, key).await {
            let _ = sqlx::query("DELETE FROM blobs WHERE key = $1")
                .bind(key)
                .execute(db.pool())
                .await;
            return Err(error);
        }
        Ok(stored)
    }

    /// A part identical to stored blob `key` (a PUT retried after its answer was lost): put in
    /// place if the blob's file is missing, else dropped.
    pub async fn settle_retry(&self, part: Part, key: &str) -> Result<(), StagingError> {
        if tokio::fs::try_exists(self.path(key)).await.unwrap_or(false) {
            self.discard(part).await;
            Ok(())
        } else {
            self.place(part, key).await
        }
    }

    /// Renames a part into blob `key`'s place, durably.
    async fn place(&self, part: Part, key: &str) -> Result<(), StagingError> {
        let path = self.path(key);
        if let Err(source) = tokio::fs::rename(&part.tmp, &path).await {
            self.discard(part).await;
            return Err(StagingError::io(path, source));
        }
        sync_dir(&self.dir)
            .await
            .map_err(|source| StagingError::io(self.dir.clone(), source))
    }

    /// Deletes a part that will not become a blob.
    pub async fn discard(&self, part: Part) {
        let _ = tokio::fs::remove_file(&part.tmp).await;
    }

    /// Deletes the blobs of job `number` other than `keep` that no handoff refers to (bundles
    /// of superseded upload URLs); returns how many went.
    pub async fn delete_superseded(
        &self,
        db: &Db,
        number: u64,
        keep: &str,
    ) -> Result<u64, StagingError> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT b.key FROM blobs b WHERE b.job_number = $1 AND b.key <> $2 \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.gpu_url = 'blob:' || b.key)",
        )
        .bind(to_i64(number))
        .bind(keep)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        for key in &keys {
            self.delete(db, key).await?;
        }
        Ok(keys.len() as u64)
    }

    /// Deletes blob `key`: its file, then its row.
    async fn delete(&self, db: &Db, key: &str) -> Result<(), StagingError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StagingError::io(path, source)),
        }
        sqlx::query("DELETE FROM blobs WHERE key = $1")
            .bind(key)
            .execute(db.pool())
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    async fn write_part<S, E>(
        &self,
        tmp: &Path,
        body: &mut S,
        cancelled: impl std::future::Future<Output = ()>,
    ) -> Result<(u64, String), StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + 'static,
    {
        let io = |source| StagingError::io(tmp.to_path_buf(), source);
        let file = match tokio::fs::File::create(tmp).await {
            // The folder was removed under the running server (an operator cleaning up):
            // make it again rather than fail every upload until a restart.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = tmp.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io)?;
                    tracing::warn!(dir = %parent.display(), "the bundle store's folder was gone; made it again");
                }
                tokio::fs::File::create(tmp).await.map_err(io)?
            }
            created => created.map_err(io)?,
        };
        // Body chunks are a few kilobytes; each write to a `tokio::fs::File` is a trip through
        // the blocking pool, so they are gathered first.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let mut size = 0_u64;
        let mut cancelled = std::pin::pin!(cancelled);
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                () = &mut cancelled => {
                    return Err(StagingError::Conflict(
                        "this upload was stopped: a newer upload to this job started, or the job is no longer held (its lease expired)".to_owned(),
                    ));
                }
            };
            let Some(chunk) = chunk else {
                break;
            };
            let chunk = chunk.map_err(|error| {
                if crate::connections::is_body_timeout(&error) {
                    StagingError::TimedOut
                } else {
                    StagingError::Interrupted(error.to_string())
                }
            })?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(StagingError::TooLarge {
                    max_bytes: self.max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.get_ref().sync_all().await.map_err(io)?;
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// Size and SHA-256 of a stored blob.
    pub async fn describe(&self, db: &Db, key: &str) -> Result<Option<(u64, String)>, DbError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, sha256 FROM blobs WHERE key = $1")
                .bind(key)
                .fetch_optional(db.pool())
                .await?;
        Ok(row.map(|(size, sha256)| (to_u64(size), sha256)))
    }
}

/// A fresh blob key for job `number`.
pub fn new_key(number: u64) -> String {
    format!("job-{number}-{}", uuid::Uuid::new_v4().simple())
}

/// Keys are our own `job-N-hex` names: nothing that could climb out of the folder.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_traverse() {
        assert!(valid_key(&new_key(7)));
        for bad in ["", "../etc/passwd", "a/b", "a.b", "tmp/x", &"a".repeat(101)] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
