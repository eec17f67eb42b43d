//! What a restart finds in the shard folder: temporary files to delete, half-written shards to
//! delete, complete shards whose commit to the tracker may not have finished, and the next
//! shard number (see the restart paragraph of the `shard` module doc).

use std::collections::BTreeSet;
use std::path::Path;

use super::{FinishedShard, ShardError, remove_shard_files};

/// What [`recover`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The number of the next shard.
    pub next_number: u32,
    /// Complete shards whose commit to the tracker may not have finished.
    pub uncommitted: Vec<FinishedShard>,
    /// Incomplete shards that were deleted.
    pub deleted: Vec<u32>,
    /// Complete shards in the folder, in order (for the S3 output: those still to upload).
    pub complete: Vec<u32>,
}

/// Marks shard `number` as committed to the tracker (removes its pending marker).
pub fn mark_committed(dir: &Path, number: u32) -> Result<(), ShardError> {
    let path = dir.join(format!("{number:05}.pending"));
    std::fs::remove_file(&path).map_err(|source| ShardError::Io { path, source })?;
    super::sync_dir(dir).map_err(|source| ShardError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Whether a shard in `dir` is complete (its stats file exists) but not committed (its pending
/// marker is still there); an unreadable folder counts as yes, the cautious answer.
pub fn has_uncommitted(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        shard_number(&name, ".pending")
            .is_some_and(|number| dir.join(format!("{number:05}_stats.json")).is_file())
    })
}

/// Cleans the shard folder after a crash and finds the next shard number.
///
/// `published` are the shards complete elsewhere: for the S3 output, those whose stats object
/// exists in the bucket (their local copies may already be gone). A pending shard is complete
/// when its stats file is in `dir` or its number is in `published`.
pub fn recover(dir: &Path, published: &BTreeSet<u32>) -> Result<Recovery, ShardError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ShardError::Io { path, source }
    };
    for folder in [dir.to_owned(), dir.join("img_emb"), dir.join("text_emb")] {
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    }
    let mut recovery = Recovery {
        next_number: published.last().map_or(0, |last| last + 1),
        ..Recovery::default()
    };
    let mut pending = Vec::new();
    for folder in [dir.to_owned(), dir.join("img_emb"), dir.join("text_emb")] {
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let path = entry.map_err(io(&folder))?.path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            } else if let Some(number) = shard_number(&name, "_stats.json") {
                recovery.next_number = recovery.next_number.max(number + 1);
                recovery.complete.push(number);
            } else if let Some(number) = shard_number(&name, ".pending") {
                pending.push(number);
            }
        }
    }
    recovery.complete.sort_unstable();
    pending.sort_unstable();
    for number in pending {
        let marker = dir.join(format!("{number:05}.pending"));
        if recovery.complete.binary_search(&number).is_ok() || published.contains(&number) {
            let text = std::fs::read(&marker).map_err(io(&marker))?;
            let value: serde_json::Value =
                serde_json::from_slice(&text).map_err(|_| ShardError::Marker {
                    path: marker.clone(),
                })?;
            let hashes = value["hashes"]
                .as_array()
                .ok_or_else(|| ShardError::Marker {
                    path: marker.clone(),
                })?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            recovery.uncommitted.push(FinishedShard {
                number,
                hashes,
                jobs: Vec::new(),
            });
        } else {
            remove_shard_files(dir, number)?;
            std::fs::remove_file(&marker).map_err(io(&marker))?;
            recovery.deleted.push(number);
        }
    }
    Ok(recovery)
}

/// The number of a shard file named `NNNNN{suffix}` (at least five digits).
pub fn shard_number(name: &str, suffix: &str) -> Option<u32> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() >= 5 && stem.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}
