//! A real S3 server for the S3 output tests: s3s-fs (SigV4, path-style) over a temporary folder,
//! on a port the kernel picks. It stores each object as a file, `ROOT/BUCKET/KEY`, so the
//! dataset checker reads the bucket straight from disk.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use url::Url;

pub(crate) const ACCESS_KEY: &str = "clip-test-key";
pub(crate) const SECRET_KEY: &str = "clip-test-secret";
pub(crate) const BUCKET: &str = "laion";
const INSTALL: &str = "cargo install s3s-fs@0.14.1 --features binary --locked";

/// A running s3s-fs; killed on drop.
pub(crate) struct S3sServer {
    pub(crate) endpoint: Url,
    root: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl S3sServer {
    /// Starts s3s-fs with the bucket [`BUCKET`]; `None` (after printing `SKIPPED`) when it is
    /// not installed, unless `CAH_REQUIRE_S3S=1`, where that is a failure.
    pub(crate) async fn start(test: &str) -> Option<S3sServer> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var("CAH_REQUIRE_S3S").as_deref() != Ok("1"),
                "s3s-fs is not installed (CAH_REQUIRE_S3S=1): {INSTALL}"
            );
            eprintln!("SKIPPED {test}: s3s-fs is not installed ({INSTALL})");
            return None;
        };
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket folder");
        let mut child = tokio::process::Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            // Its only way to tell the port it bound is the startup log line.
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("s3s-fs output") {
                if let Some((_, address)) = line.split_once("server is running at ") {
                    return address.trim().to_owned();
                }
            }
            panic!("s3s-fs exited before it listened");
        })
        .await
        .expect("s3s-fs starts within 30 s");
        // Keep reading its log so that a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(S3sServer {
            endpoint: Url::parse(&address).expect("s3s-fs address"),
            root,
            _child: child,
        })
    }

    /// The folder holding the objects under `prefix` of [`BUCKET`].
    pub(crate) fn folder(&self, prefix: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(prefix)
    }

    /// The `--s3-*` flags that reach this server.
    pub(crate) fn flags(&self) -> Vec<String> {
        [
            "--s3-endpoint",
            self.endpoint.as_str(),
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            ACCESS_KEY,
            "--s3-secret-access-key",
            SECRET_KEY,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// s3s-fs on `PATH` or in cargo's bin folder.
fn binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin"));
    }
    candidates
        .into_iter()
        .map(|folder| folder.join("s3s-fs"))
        .find(|path| path.is_file())
}
