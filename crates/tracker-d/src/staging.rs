//! The staging blob store: signed, expiring URLs to PUT a job's bundle and GET it back.
//!
//! URLs are capabilities: `/blobs/{key}?expires={unix ms}&signature={hex HMAC-SHA256}` over the
//! method, key and expiry, so a volunteer node never holds storage credentials. The same
//! issuance (`put_url`/`get_url`) is what an S3 backend would answer with presigned URLs.
//! A PUT streams to a temporary file (size cap, SHA-256, fsync) and renames it into place,
//! so a blob is either complete or absent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;

use cah_protocol::ext::StoredBlob;

use crate::db::{Db, DbError, now_ms, to_i64, to_u64};

/// Errors of the staging store.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The URL's signature does not match, or its key is malformed.
    #[error("invalid upload or download signature")]
    BadSignature,
    /// The URL expired.
    #[error("the signed url expired; ask the tracker for a new one")]
    Expired,
    /// The body is larger than the cap.
    #[error("bundle larger than the {max_bytes}-byte limit")]
    TooLarge {
        /// The cap.
        max_bytes: u64,
    },
    /// No such blob.
    #[error("no blob {0}")]
    NotFound(String),
    /// The upload broke off.
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// Disk trouble.
    #[error("staging store io error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Database trouble.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A folder of blobs plus the key that signs their URLs.
#[derive(Clone)]
pub struct Staging {
    dir: PathBuf,
    signing_key: Vec<u8>,
    url_ttl: Duration,
    max_bytes: u64,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging")
            .field("dir", &self.dir)
            .field("signing_key", &"***")
            .field("url_ttl", &self.url_ttl)
            .field("max_bytes", &self.max_bytes)
            .finish()
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
            .map_err(|source| StagingError::Io { path: tmp, source })?;
        Ok(Staging {
            dir,
            signing_key,
            url_ttl,
            max_bytes,
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

    /// Streams `body` into blob `key` for job `number`: all of it, or nothing visible.
    pub async fn store<S, E>(
        &self,
        db: &Db,
        key: &str,
        number: u64,
        mut body: S,
    ) -> Result<StoredBlob, StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{key}.{}.part", uuid::Uuid::new_v4().simple()));
        let result = self.write_part(&tmp, &mut body).await;
        let (size, sha256) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(error);
            }
        };
        let path = self.path(key);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StagingError::Io { path, source }
        };
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
        sync_dir(&self.dir).await.map_err(io(&self.dir))?;
        sqlx::query(
            "INSERT INTO blobs (key, job_number, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET size = $3, sha256 = $4, created_at = $5",
        )
        .bind(key)
        .bind(to_i64(number))
        .bind(to_i64(size))
        .bind(&sha256)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
        Ok(StoredBlob {
            key: key.to_owned(),
            size,
            sha256,
        })
    }

    async fn write_part<S, E>(
        &self,
        tmp: &Path,
        body: &mut S,
    ) -> Result<(u64, String), StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let io = |source| StagingError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0_u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| StagingError::Interrupted(error.to_string()))?;
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
        file.sync_all().await.map_err(io)?;
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

    /// Deletes blobs of jobs closed more than `grace` ago, and blobs no job refers to that are
    /// older than the URL lifetime plus `grace` (uploads of lost leases, invalidated bundles).
    /// Also removes temporary files of abandoned uploads. Returns how many blobs went.
    pub async fn collect_garbage(&self, db: &Db, grace: Duration) -> Result<u64, StagingError> {
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
        for key in &keys {
            let path = self.path(key);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StagingError::Io { path, source }),
            }
            sqlx::query("DELETE FROM blobs WHERE key = $1")
                .bind(key)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            tracing::debug!(%key, "collected staged blob");
        }
        self.sweep_parts(self.url_ttl + grace).await;
        Ok(keys.len() as u64)
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
