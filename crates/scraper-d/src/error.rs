//! Errors of the scraper library: only what stops an extraction, never a bad record.

use std::path::PathBuf;

/// A failure that ends an extraction; damaged input is counted instead (see [`crate::SkipReason`]).
#[derive(Debug, thiserror::Error)]
pub enum ScraperError {
    /// Reading the WAT source failed (file IO, or the download gave up after its retries).
    #[error("failed to read the wat source: {0}")]
    Source(std::io::Error),
    /// The download was refused in a way retrying cannot fix (404, 403, bad URL...).
    #[error("download of {url} failed: {detail}")]
    Download { url: String, detail: String },
    /// A local file could not be opened, written or renamed.
    #[error("file {path}: {cause}")]
    File {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The local WAT file given to `extract` cannot be read: missing, a folder, no permission.
    #[error("the wat source {path} (SOURCE, SCRAPER_WAT) {detail}")]
    WatFile { path: PathBuf, detail: String },
    /// The blocklist file has a line that is neither a URL, a domain nor a hash.
    #[error("blocklist {path} line {line}: {detail}")]
    Blocklist {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    /// The output could not be encoded.
    #[error("failed to write {format} output: {detail}")]
    Output {
        format: &'static str,
        detail: String,
    },
    /// The source held no WARC record at all: not a WAT file (or an empty one).
    #[error("{source_name} holds no WARC record ({detail}): is it a .warc.wat.gz file?")]
    NotAWat { source_name: String, detail: String },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The tracker's dedup service failed.
    #[error("dedup query failed: {0}")]
    Dedup(#[from] cah_tracker_client::TrackerError),
}

impl ScraperError {
    /// A closure that wraps an IO error with the file it concerns.
    pub fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::File {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}
