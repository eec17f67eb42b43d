//! Where a WAT comes from: a local file or an HTTP(S) URL, always read as a compressed stream.

mod http;

use std::path::PathBuf;

pub use http::{DEFAULT_MAX_WAT_BYTES, DownloadError, HttpConfig, HttpReader, spawn_download};

use crate::error::ScraperError;

/// A WAT location given on the command line or by the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatSource {
    File(PathBuf),
    Http(url::Url),
}

impl WatSource {
    /// `http://` and `https://` are URLs; anything else is a path.
    pub fn parse(text: &str) -> Result<Self, ScraperError> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let url = url::Url::parse(text)
                .map_err(|error| ScraperError::Config(format!("bad wat url {text}: {error}")))?;
            Ok(Self::Http(url))
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

/// Opens a local WAT file for streaming (nothing is read ahead or decompressed to disk); a
/// folder is refused here, not at the first read.
pub fn open_file(path: &std::path::Path) -> Result<std::fs::File, ScraperError> {
    let wat_file = |detail: String| ScraperError::WatFile {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::open(path)
        .map_err(|cause| wat_file(format!("cannot be opened: {cause}; check the path")))?;
    let metadata = file
        .metadata()
        .map_err(|cause| wat_file(format!("cannot be read: {cause}")))?;
    if metadata.is_dir() {
        return Err(wat_file(
            "is a folder: give a .warc.wat.gz file or an http(s) URL".to_owned(),
        ));
    }
    Ok(file)
}
