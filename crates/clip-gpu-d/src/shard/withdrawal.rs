//! Taking rows back out of the open shard: the byte ranges of their tar entries and tfrecord
//! records are noted as they are written, and left out when the shard closes.
//!
//! The tar and the tfrecord are streamed to `*.tmp` files as pairs arrive (a shard's images do
//! not stay in memory), so a row cannot simply be forgotten like its parquet row and its
//! embeddings: [`copy_without`] rewrites the file without the withdrawn ranges before the
//! shard becomes visible.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

/// A writer that counts the bytes written through it: the offset where the next entry starts.
#[derive(Debug)]
pub(super) struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W> Counting<W> {
    pub(super) fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }

    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Rewrites `path` without the byte ranges in `withdrawn` (sorted or not, not overlapping),
/// through `NAME.cut.tmp` (removed at start like every `*.tmp`) renamed over it, flushed to the
/// disk. A no-op when none are given.
pub(super) fn copy_without(path: &Path, withdrawn: &mut [Range<u64>]) -> io::Result<()> {
    if withdrawn.is_empty() {
        return Ok(());
    }
    withdrawn.sort_unstable_by_key(|range| range.start);
    let mut source = BufReader::new(File::open(path)?);
    let length = source.get_ref().metadata()?.len();
    let cut = path.with_extension("cut.tmp");
    let mut target = BufWriter::new(File::create(&cut)?);
    let mut at = 0;
    for range in withdrawn.iter().chain(std::iter::once(&(length..length))) {
        if range.start < at || range.end > length {
            return Err(io::Error::other(format!(
                "withdrawn range {range:?} overlaps or lies outside the {length} bytes written"
            )));
        }
        source.seek(SeekFrom::Start(at))?;
        io::copy(&mut (&mut source).take(range.start - at), &mut target)?;
        at = range.end;
    }
    let file = target
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&cut, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_without_leaves_out_exactly_the_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.tar.tmp");
        std::fs::write(&path, b"aaabbbcccddd").expect("write");
        copy_without(&path, &mut [9..12, 3..6]).expect("copy");
        assert_eq!(std::fs::read(&path).expect("read"), b"aaaccc");
        assert!(!dir.path().join("x.tar.cut.tmp").exists());
        copy_without(&path, &mut []).expect("nothing withdrawn");
        assert_eq!(std::fs::read(&path).expect("read"), b"aaaccc");
        let error = copy_without(&path, &mut [0..2, 1..3]).expect_err("overlap");
        assert!(error.to_string().contains("overlaps"), "{error}");
        assert!(
            copy_without(&path, std::slice::from_mut(&mut (4..9))).is_err(),
            "past the end"
        );
    }

    #[test]
    fn counting_counts_what_went_through() {
        let mut writer = Counting::new(Vec::new());
        writer.write_all(b"hello").expect("write");
        writer.write_all(b"!").expect("write");
        assert_eq!(writer.written(), 6);
        assert_eq!(writer.into_inner(), b"hello!");
    }
}
