//! The testkit's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building or starting a piece of the test world.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("failed to bind or use a socket")]
    Socket(#[source] std::io::Error),
    #[error("failed to read or write {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write a WAT file")]
    Write(#[source] std::io::Error),
    #[error("failed to encode a test image")]
    Image(#[from] image::ImageError),
    #[error("invalid photo corpus manifest {path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl TestkitError {
    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { path, source }
    }
}
