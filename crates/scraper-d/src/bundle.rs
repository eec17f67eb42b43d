//! Writes one job's bundle (cah-protocol's layout): `{sample_id}.jpg` entries streamed to a
//! `.tmp` file, then `samples.jsonl` and `stats.json`, then a rename, so a half-written bundle
//! never looks complete.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use cah_protocol::bundle::{BundleSample, BundleStats, SAMPLES_FILE, STATS_FILE};

use crate::output::destination;

/// A failure writing a bundle file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("bundle metadata: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A bundle being written.
pub struct BundleWriter {
    builder: tar::Builder<BufWriter<File>>,
    temp_path: PathBuf,
    final_path: PathBuf,
    samples: Vec<BundleSample>,
}

impl std::fmt::Debug for BundleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("final_path", &self.final_path)
            .field("samples", &self.samples.len())
            .finish()
    }
}

impl BundleWriter {
    /// Starts `final_path` (written as `final_path.tmp` until [`finish`](Self::finish)); an
    /// existing device or pipe (`fetch --output /dev/null`) is written in place.
    pub fn create(final_path: &Path) -> Result<Self, BundleError> {
        let in_place = destination::is_special(final_path);
        let temp_path = if in_place {
            final_path.to_path_buf()
        } else {
            temp_path_of(final_path)
        };
        let file = if in_place {
            destination::open_in_place(&temp_path)
        } else {
            File::create(&temp_path)
        }
        .map_err(|source| BundleError::Io {
            path: temp_path.clone(),
            cause: source,
        })?;
        let mut builder = tar::Builder::new(BufWriter::with_capacity(256 * 1024, file));
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(BundleWriter {
            builder,
            temp_path,
            final_path: final_path.to_path_buf(),
            samples: Vec::new(),
        })
    }

    /// Appends one image; `sample.file` names its entry.
    pub fn add(&mut self, sample: BundleSample, image: &[u8]) -> Result<(), BundleError> {
        self.append(&sample.file.clone(), image)?;
        self.samples.push(sample);
        Ok(())
    }

    /// Images added so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), BundleError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|source| BundleError::Io {
                path: self.temp_path.clone(),
                cause: source,
            })
    }

    /// Writes the metadata, flushes, syncs and renames; returns the final path. On failure the
    /// temporary file is removed (a full disk keeps no half bundle).
    pub fn finish(self, stats: BundleStats) -> Result<PathBuf, BundleError> {
        let temp_path = (self.temp_path != self.final_path).then(|| self.temp_path.clone());
        let result = self.write_out(stats);
        if result.is_err()
            && let Some(temp_path) = temp_path
        {
            let _ = std::fs::remove_file(temp_path);
        }
        result
    }

    fn write_out(mut self, mut stats: BundleStats) -> Result<PathBuf, BundleError> {
        let mut samples = Vec::new();
        for sample in &self.samples {
            serde_json::to_writer(&mut samples, sample)?;
            samples.push(b'\n');
        }
        self.append(SAMPLES_FILE, &samples)?;
        stats.stored = self.samples.len() as u64;
        let stats_bytes = serde_json::to_vec_pretty(&stats)?;
        self.append(STATS_FILE, &stats_bytes)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io {
                path,
                cause: source,
            }
        };
        let writer = self.builder.into_inner().map_err(io(&self.temp_path))?;
        let file = writer
            .into_inner()
            .map_err(|error| error.into_error())
            .map_err(io(&self.temp_path))?;
        destination::sync_if_regular(&file).map_err(io(&self.temp_path))?;
        drop(file);
        if self.temp_path != self.final_path {
            std::fs::rename(&self.temp_path, &self.final_path).map_err(io(&self.final_path))?;
        }
        Ok(self.final_path)
    }
}

/// Where a bundle is written until it is complete: `final_path` + `.tmp`.
pub fn temp_path_of(final_path: &Path) -> PathBuf {
    let mut temp_name = final_path.as_os_str().to_owned();
    temp_name.push(".tmp");
    PathBuf::from(temp_name)
}

/// Removes the `.tmp` file of an abandoned bundle (best effort).
pub fn discard(final_path: &Path) {
    let _ = std::fs::remove_file(temp_path_of(final_path));
    if !destination::is_special(final_path) {
        let _ = std::fs::remove_file(final_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_that_cannot_be_finished_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let final_path = dir.path().join("job-1.tar");
        let writer = BundleWriter::create(&final_path).expect("create");
        assert!(temp_path_of(&final_path).is_file());
        // The final name becomes a folder that is not empty: the rename fails, as a full disk
        // makes the flush or the sync fail.
        std::fs::create_dir(&final_path).expect("folder");
        std::fs::write(final_path.join("x"), b"x").expect("file");
        let stats = BundleStats {
            format_version: 1,
            job: 1,
            candidates: 0,
            stored: 0,
            outcomes: Default::default(),
        };
        let error = writer.finish(stats).expect_err("the rename fails");
        assert!(error.to_string().contains("job-1.tar"), "{error}");
        assert!(
            !temp_path_of(&final_path).exists(),
            "temporary file removed"
        );
        assert!(final_path.join("x").is_file(), "the folder is untouched");
    }
}
