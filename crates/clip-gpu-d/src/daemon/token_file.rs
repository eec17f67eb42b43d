//! The tracker tokens this daemon has not said bye for, kept in the output folder, so that a
//! start after a crash says bye for the registration the crash left: its jobs go back to the
//! tracker's queue at once instead of when their leases run out (30 minutes by default).
//!
//! One token per line in `<shard dir>/.clip-gpu-d.tokens`, written to a temporary file (mode
//! 0600: a token lets its holder act as this daemon until the tracker forgets it) and renamed.
//! The file is gone once the daemon said bye for every token in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most bytes read from the file: a few tokens; anything longer is not this daemon's.
const MAX_FILE_BYTES: u64 = 4096;

pub(super) struct TokenFile {
    path: PathBuf,
    /// The tokens in the file, in the order they were added.
    tokens: Mutex<Vec<String>>,
}

impl TokenFile {
    /// Reads the file in `shard_dir` (no file, or one that cannot be read, holds no token).
    pub(super) fn open(shard_dir: &Path) -> Self {
        let path = shard_dir.join(".clip-gpu-d.tokens");
        let tokens = read_tokens(&path).unwrap_or_default();
        Self {
            path,
            tokens: Mutex::new(tokens),
        }
    }

    /// The tokens in the file.
    pub(super) fn tokens(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Adds a token this daemon registered with.
    pub(super) fn add(&self, token: &str) -> std::io::Result<()> {
        let mut tokens = self.lock();
        if !tokens.iter().any(|known| known == token) {
            tokens.push(token.to_owned());
        }
        self.write(&tokens)
    }

    /// Takes out a token the tracker no longer knows (bye said, or forgotten by the tracker).
    pub(super) fn forget(&self, token: &str) -> std::io::Result<()> {
        let mut tokens = self.lock();
        tokens.retain(|known| known != token);
        self.write(&tokens)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, tokens: &[String]) -> std::io::Result<()> {
        if tokens.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        }
        let temporary = self.path.with_extension("tokens.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        for token in tokens {
            writeln!(file, "{token}")?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }
}

fn read_tokens(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_a_reopening_and_the_file_goes_with_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = TokenFile::open(dir.path());
        assert!(file.tokens().is_empty());
        file.add("first").expect("add");
        file.add("second").expect("add");
        file.add("first").expect("add again");
        let again = TokenFile::open(dir.path());
        assert_eq!(again.tokens(), ["first", "second"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(".clip-gpu-d.tokens"))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        again.forget("first").expect("forget");
        assert_eq!(TokenFile::open(dir.path()).tokens(), ["second"]);
        again.forget("second").expect("forget");
        assert!(!dir.path().join(".clip-gpu-d.tokens").exists());
        assert!(TokenFile::open(dir.path()).tokens().is_empty());
        again.forget("never there").expect("nothing to remove");
    }
}
