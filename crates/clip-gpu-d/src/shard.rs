//! Dataset shards in a local folder, in img2dataset's and clip-retrieval's layout:
//! `NNNNN.tar` (webdataset: `key.{jpg,png,webp}`, `key.txt`, `key.json`), `NNNNN.parquet`,
//! `img_emb/img_emb_NNNNN.npy`, `text_emb/text_emb_NNNNN.npy` (float32 or float16, parquet
//! row order),
//! optionally `NNNNN.tfrecord` (`tf.train.Example` records), and `NNNNN_stats.json`.
//!
//! **Visibility.** Files are written under `*.tmp` names and renamed in a fixed order
//! ([`shard_files`]): the two `.npy`, the parquet, the tar, the tfrecord, and
//! `NNNNN_stats.json` last. As in img2dataset's incremental mode, a shard is complete exactly
//! when its `_stats.json` exists. The S3 output uploads in the same order from a local spool
//! folder, so there too a shard is complete exactly when its stats object exists.
//!
//! **Restart.** Before the first rename, `NNNNN.pending` records the shard's pair hashes. It is
//! removed once the hashes are in the tracker's `main` set and the shard's jobs are completed.
//! At start, [`recover`] deletes temporary files; a pending shard without its stats file (here
//! or, for the S3 output, in the bucket) is deleted (its jobs were never completed, so the
//! tracker hands them out again), and a pending shard with it is returned so its hashes are
//! added to `main` again: the re-issued jobs then drop those pairs as duplicates. So a crash
//! anywhere loses no pair and writes none twice.

mod parquet;
mod recovery;
mod tfrecord;
mod withdrawal;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use cah_protocol::bundle::BundleSample;
use serde_json::json;

use crate::bundle::image_extension;
use crate::npy::EmbeddingDtype;
use crate::tags::NsfwTag;
use withdrawal::{Counting, copy_without};

pub use recovery::{Recovery, has_uncommitted, mark_committed, recover, shard_number};

/// A pair that passed every filter, with its image and embeddings.
#[derive(Debug, Clone)]
pub struct KeptPair {
    pub sample: BundleSample,
    pub image: Vec<u8>,
    pub hash: u64,
    pub job: u64,
    /// The daemon's own id of the claim it came from, so that a claim the tracker took back
    /// can be taken out of the open shard ([`ShardWriter::take_out`]).
    pub claim: u64,
    pub similarity: f32,
    pub nsfw: NsfwTag,
    pub image_embedding: Vec<f32>,
    pub text_embedding: Vec<f32>,
}

/// A shard that became visible; its hashes still go to `main` and its jobs to the tracker.
#[derive(Debug, Clone)]
pub struct FinishedShard {
    pub number: u32,
    pub hashes: Vec<u64>,
    pub jobs: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("failed to write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write parquet {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("pending marker {path} is unreadable")]
    Marker { path: PathBuf },
}

/// One row of the parquet, without the image bytes.
#[derive(Debug, Clone)]
struct Row {
    key: String,
    sample: BundleSample,
    hash: u64,
    job: u64,
    claim: u64,
    similarity: f32,
    nsfw: NsfwTag,
    /// Where its three entries lie in the tar, and its record in the tfrecord.
    tar: Range<u64>,
    tfrecord: Option<Range<u64>>,
}

/// What each shard holds.
#[derive(Debug, Clone, Copy)]
pub struct ShardFormat {
    /// Rows per shard (the last one before a flush may be shorter).
    pub shard_size: usize,
    /// Also write `NNNNN.tfrecord`.
    pub tfrecord: bool,
    /// How the `.npy` embeddings are stored.
    pub embedding_dtype: EmbeddingDtype,
}

/// Appends kept pairs to the open shard and closes it at `shard_size` rows.
pub struct ShardWriter {
    dir: PathBuf,
    shard_size: usize,
    write_tfrecord: bool,
    embedding_dtype: EmbeddingDtype,
    number: u32,
    /// The index in the next key: rows taken out leave their keys unused.
    next_index: usize,
    rows: Vec<Row>,
    image_embeddings: Vec<f32>,
    text_embeddings: Vec<f32>,
    dim: usize,
    tar: Option<tar::Builder<Counting<BufWriter<File>>>>,
    tfrecord: Option<Counting<BufWriter<File>>>,
    /// Byte ranges of rows taken out, left out of the files when the shard closes.
    withdrawn_tar: Vec<Range<u64>>,
    withdrawn_tfrecord: Vec<Range<u64>>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("number", &self.number)
            .field("open_rows", &self.rows.len())
            .finish()
    }
}

impl ShardWriter {
    pub fn new(dir: &Path, format: ShardFormat, next_number: u32) -> Self {
        Self {
            dir: dir.to_owned(),
            shard_size: format.shard_size.max(1),
            write_tfrecord: format.tfrecord,
            embedding_dtype: format.embedding_dtype,
            number: next_number,
            next_index: 0,
            rows: Vec::new(),
            image_embeddings: Vec::new(),
            text_embeddings: Vec::new(),
            dim: 0,
            tar: None,
            tfrecord: None,
            withdrawn_tar: Vec::new(),
            withdrawn_tfrecord: Vec::new(),
        }
    }

    /// The number of the open shard.
    pub fn number(&self) -> u32 {
        self.number
    }

    pub fn open_rows(&self) -> usize {
        self.rows.len()
    }

    /// Rows the open shard takes before it closes.
    pub fn room(&self) -> usize {
        self.shard_size.saturating_sub(self.rows.len())
    }

    /// Appends a pair; returns the shard it completed, if it filled one.
    pub fn push(&mut self, pair: KeptPair) -> Result<Option<FinishedShard>, ShardError> {
        let width = digits(self.shard_size.saturating_sub(1)).max(4);
        let key = format!("{:05}{:0width$}", self.number, self.next_index);
        if self.tar.is_none() {
            let path = self.path(&format!("{:05}.tar.tmp", self.number));
            let file = File::create(&path).map_err(|source| ShardError::Io { path, source })?;
            self.tar = Some(tar::Builder::new(Counting::new(BufWriter::new(file))));
        }
        if self.write_tfrecord && self.tfrecord.is_none() {
            let path = self.path(&format!("{:05}.tfrecord.tmp", self.number));
            let file = File::create(&path).map_err(|source| ShardError::Io { path, source })?;
            self.tfrecord = Some(Counting::new(BufWriter::new(file)));
        }
        let ext = image_extension(&pair.sample.file).to_owned();
        let metadata = json!({
            "key": key,
            "sample_id": pair.sample.sample_id,
            "url": pair.sample.url,
            "caption": pair.sample.alt,
            "page_url": pair.sample.page_url,
            "license": pair.sample.license,
            "language": pair.sample.language,
            "width": pair.sample.width,
            "height": pair.sample.height,
            "original_width": pair.sample.original_width,
            "original_height": pair.sample.original_height,
            "similarity": pair.similarity,
            "NSFW": pair.nsfw.as_str(),
            "sha256": pair.sample.sha256,
            "hash": pair.hash,
            "job": pair.job,
            "status": "success",
        });
        let tar_path = self.path(&format!("{:05}.tar.tmp", self.number));
        let io = |source| ShardError::Io {
            path: tar_path.clone(),
            source,
        };
        let tar = self
            .tar
            .as_mut()
            .ok_or_else(|| io(std::io::Error::other("tar not open")))?;
        let tar_start = tar.get_ref().written();
        append(tar, &format!("{key}.{ext}"), &pair.image).map_err(io)?;
        append(tar, &format!("{key}.txt"), pair.sample.alt.as_bytes()).map_err(io)?;
        append(tar, &format!("{key}.json"), metadata.to_string().as_bytes()).map_err(io)?;
        let tar_range = tar_start..tar.get_ref().written();
        let mut tfrecord_range = None;
        if let Some(records) = self.tfrecord.as_mut() {
            let example = tfrecord::pair_example(&key, &ext, &pair);
            let start = records.written();
            tfrecord::write_record(records, &example).map_err(|source| ShardError::Io {
                path: self.dir.join(format!("{:05}.tfrecord.tmp", self.number)),
                source,
            })?;
            tfrecord_range = Some(start..records.written());
        }
        self.next_index += 1;
        self.dim = pair.image_embedding.len();
        self.image_embeddings.extend(&pair.image_embedding);
        self.text_embeddings.extend(&pair.text_embedding);
        self.rows.push(Row {
            key,
            sample: pair.sample,
            hash: pair.hash,
            job: pair.job,
            claim: pair.claim,
            similarity: pair.similarity,
            nsfw: pair.nsfw,
            tar: tar_range,
            tfrecord: tfrecord_range,
        });
        if self.rows.len() >= self.shard_size {
            return self.finish();
        }
        Ok(None)
    }

    /// Takes the rows of `claim` out of the open shard (the tracker took the claim back, so
    /// another daemon may write these pairs now); returns their hashes. Rows of shards already
    /// closed stay where they are.
    pub fn take_out(&mut self, claim: u64) -> Vec<u64> {
        let dim = self.dim;
        let mut index = 0;
        let mut hashes = Vec::new();
        let mut keep = Vec::with_capacity(self.rows.len());
        for row in std::mem::take(&mut self.rows) {
            if row.claim == claim {
                hashes.push(row.hash);
                self.withdrawn_tar.push(row.tar.clone());
                self.withdrawn_tfrecord.extend(row.tfrecord.clone());
                for embeddings in [&mut self.image_embeddings, &mut self.text_embeddings] {
                    embeddings.drain(index * dim..(index + 1) * dim);
                }
            } else {
                keep.push(row);
                index += 1;
            }
        }
        self.rows = keep;
        hashes
    }

    /// Closes the open shard, however short, and makes it visible; `None` when it is empty.
    pub fn finish(&mut self) -> Result<Option<FinishedShard>, ShardError> {
        if self.rows.is_empty() {
            // Nothing, or only rows taken out: no shard to show.
            self.discard()?;
            return Ok(None);
        }
        let Some(tar) = self.tar.take() else {
            return Ok(None);
        };
        let number = self.number;
        let dir = self.dir.clone();
        let name = |suffix: &str| dir.join(format!("{number:05}{suffix}"));
        let tar_tmp = name(".tar.tmp");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ShardError::Io { path, source }
        };
        let inner = tar.into_inner().map_err(io(&tar_tmp))?.into_inner();
        let file = inner
            .into_inner()
            .map_err(|error| error.into_error())
            .map_err(io(&tar_tmp))?;
        file.sync_all().map_err(io(&tar_tmp))?;
        drop(file);
        copy_without(&tar_tmp, &mut std::mem::take(&mut self.withdrawn_tar))
            .map_err(io(&tar_tmp))?;
        let tfrecord_tmp = name(".tfrecord.tmp");
        let has_tfrecord = match self.tfrecord.take() {
            Some(records) => {
                let file = records
                    .into_inner()
                    .into_inner()
                    .map_err(|error| error.into_error())
                    .map_err(io(&tfrecord_tmp))?;
                file.sync_all().map_err(io(&tfrecord_tmp))?;
                drop(file);
                copy_without(
                    &tfrecord_tmp,
                    &mut std::mem::take(&mut self.withdrawn_tfrecord),
                )
                .map_err(io(&tfrecord_tmp))?;
                true
            }
            None => false,
        };

        let rows = std::mem::take(&mut self.rows);
        let hashes: Vec<u64> = rows.iter().map(|row| row.hash).collect();
        let mut jobs: Vec<u64> = rows.iter().map(|row| row.job).collect();
        jobs.sort_unstable();
        jobs.dedup();
        let marker = name(".pending");
        let marker_text = json!({ "hashes": hashes, "jobs": jobs }).to_string();
        write_synced(&marker, marker_text.as_bytes()).map_err(io(&marker))?;
        // The marker's name must be on disk before any file of the shard gets its final name.
        sync_dir(&dir).map_err(io(&dir))?;

        let parquet_tmp = name(".parquet.tmp");
        parquet::write(&parquet_tmp, &rows).map_err(|source| ShardError::Parquet {
            path: parquet_tmp.clone(),
            source,
        })?;
        let mut nsfw_counts = BTreeMap::new();
        for row in &rows {
            *nsfw_counts.entry(row.nsfw.as_str()).or_insert(0u64) += 1;
        }
        let stats = json!({
            "shard": format!("{number:05}"),
            "count": rows.len(),
            "successes": rows.len(),
            "jobs": jobs,
            "nsfw": nsfw_counts,
            "embedding_dim": self.dim,
            "embedding_dtype": self.embedding_dtype.numpy_name(),
        });
        let stats_tmp = name("_stats.json.tmp");
        write_synced(
            &stats_tmp,
            &serde_json::to_vec_pretty(&stats).unwrap_or_default(),
        )
        .map_err(io(&stats_tmp))?;

        // The fixed order of `shard_files`: embeddings, parquet, tar, tfrecord, stats last.
        for (kind, values) in [
            ("img_emb", std::mem::take(&mut self.image_embeddings)),
            ("text_emb", std::mem::take(&mut self.text_embeddings)),
        ] {
            let folder = self.dir.join(kind);
            std::fs::create_dir_all(&folder).map_err(io(&folder))?;
            let path = folder.join(format!("{kind}_{number:05}.npy"));
            crate::npy::write(&path, rows.len(), self.dim, &values, self.embedding_dtype)
                .map_err(io(&path))?;
        }
        let mut renames = vec![(parquet_tmp, name(".parquet")), (tar_tmp, name(".tar"))];
        if has_tfrecord {
            renames.push((tfrecord_tmp, name(".tfrecord")));
        }
        renames.push((stats_tmp, name("_stats.json")));
        for (from, to) in renames {
            std::fs::rename(&from, &to).map_err(io(&to))?;
        }
        // Durable before the caller adds the hashes to `main` and completes the jobs: after a
        // power loss, a shard whose jobs the tracker counts as done is on disk, complete.
        for folder in [
            self.dir.join("img_emb"),
            self.dir.join("text_emb"),
            dir.clone(),
        ] {
            sync_dir(&folder).map_err(io(&folder))?;
        }
        self.number += 1;
        self.next_index = 0;
        Ok(Some(FinishedShard {
            number,
            hashes,
            jobs,
        }))
    }

    /// Deletes the open shard's temporary files and forgets its rows: nothing of it is ever
    /// visible (the drain deadline, when its jobs are released instead of completed).
    pub fn discard(&mut self) -> Result<(), ShardError> {
        self.tar = None;
        self.tfrecord = None;
        self.next_index = 0;
        self.withdrawn_tar.clear();
        self.withdrawn_tfrecord.clear();
        self.rows.clear();
        self.image_embeddings.clear();
        self.text_embeddings.clear();
        for suffix in [".tar.tmp", ".tfrecord.tmp"] {
            let path = self.path(&format!("{:05}{suffix}", self.number));
            match std::fs::remove_file(&path) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ShardError::Io { path, source });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Shard `number`'s files relative to the output folder, in the order they become visible:
/// the stats file is last. The tfrecord exists only when the shard was written with it.
pub fn shard_files(number: u32) -> [String; 6] {
    [
        format!("img_emb/img_emb_{number:05}.npy"),
        format!("text_emb/text_emb_{number:05}.npy"),
        format!("{number:05}.parquet"),
        format!("{number:05}.tar"),
        format!("{number:05}.tfrecord"),
        format!("{number:05}_stats.json"),
    ]
}

/// Deletes shard `number`'s files from `dir` (not its pending marker), the stats file first so
/// that the shard stops being complete before any of its data goes; missing files are fine.
pub fn remove_shard_files(dir: &Path, number: u32) -> Result<(), ShardError> {
    let mut names = shard_files(number);
    names.rotate_right(1);
    for name in names {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(ShardError::Io { path, source });
            }
            _ => {}
        }
    }
    Ok(())
}

fn digits(mut value: usize) -> usize {
    let mut count = 1;
    while value >= 10 {
        value /= 10;
        count += 1;
    }
    count
}

fn append(
    tar: &mut tar::Builder<Counting<BufWriter<File>>>,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, data)
}

/// Writes `bytes` to `path` and flushes them to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Flushes a folder's entries (names created, renamed or removed in it) to the disk.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
