//! What the staging store fails with; the HTTP layer maps each variant to a status.

use std::path::PathBuf;

use crate::db::DbError;

/// Errors of the staging store.
///
/// The IO variants name the server's path in their text, for the tracker's own logs: the HTTP
/// layer never sends that text to a client.
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
    /// The upload sent nothing for longer than the body timeout (408); its part was deleted.
    #[error("the upload stopped sending; PUT it again")]
    TimedOut,
    /// The upload may not be stored: the key already holds a different blob, the URL was
    /// superseded by a newer one, or the job's bundle was already handed off (409).
    #[error("{0}")]
    Conflict(String),
    /// The store's filesystem is full, or the tracker's disk quota is spent (507).
    #[error("staging store full writing {path}: {cause}")]
    Full {
        /// The file.
        path: PathBuf,
        /// The cause (`StorageFull` or `QuotaExceeded`).
        cause: std::io::Error,
    },
    /// Any other disk trouble.
    #[error("staging store io error on {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Database trouble.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl StagingError {
    /// An IO failure on `path`: [`StagingError::Full`] when the disk or quota is full, else
    /// [`StagingError::Io`].
    pub fn io(path: PathBuf, cause: std::io::Error) -> StagingError {
        if is_storage_full(&cause) {
            StagingError::Full { path, cause }
        } else {
            StagingError::Io { path, cause }
        }
    }
}

/// Whether `error` says there is no room left: `ENOSPC` or `EDQUOT`.
fn is_storage_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn a_full_disk_or_quota_is_its_own_variant() {
        for kind in [ErrorKind::StorageFull, ErrorKind::QuotaExceeded] {
            let error = StagingError::io(PathBuf::from("/srv/staging/x"), Error::from(kind));
            assert!(matches!(error, StagingError::Full { .. }), "{kind:?}");
        }
        for kind in [ErrorKind::PermissionDenied, ErrorKind::Other] {
            let error = StagingError::io(PathBuf::from("/srv/staging/x"), Error::from(kind));
            assert!(matches!(error, StagingError::Io { .. }), "{kind:?}");
        }
        // What the kernel says on a full disk (ENOSPC = 28, EDQUOT = 122 on Linux).
        #[cfg(target_os = "linux")]
        for errno in [28, 122] {
            let error = StagingError::io(PathBuf::new(), Error::from_raw_os_error(errno));
            assert!(matches!(error, StagingError::Full { .. }), "errno {errno}");
        }
    }
}
