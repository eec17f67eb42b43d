//! Candidate files: JSON lines or Parquet, written to `NAME.tmp` and renamed when complete.

pub(crate) mod destination;
mod parquet;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::candidates::Candidate;
use crate::error::ScraperError;

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet, snappy-compressed, one row group per 65,536 candidates.
    Parquet,
}

/// One JSON line / Parquet row (the hash stays internal).
#[derive(serde::Serialize)]
struct Row<'a> {
    sample_id: u64,
    half: u8,
    url: &'a str,
    alt: &'a str,
    page_url: &'a str,
    license: Option<&'a str>,
    language: Option<&'a str>,
}

impl<'a> From<&'a Candidate> for Row<'a> {
    fn from(candidate: &'a Candidate) -> Self {
        Self {
            sample_id: candidate.sample_id,
            half: candidate.half,
            url: &candidate.url,
            alt: &candidate.alt,
            page_url: &candidate.page_url,
            license: candidate.license.as_deref(),
            language: candidate.language.as_deref(),
        }
    }
}

/// A candidate sink: a file (through a `.tmp` name) or, for JSON lines, any writer.
pub struct CandidateWriter {
    inner: Inner,
    /// `(tmp, final)` paths for a file output.
    paths: Option<(PathBuf, PathBuf)>,
    /// The file written, to flush it to the disk before the rename.
    file: Option<std::fs::File>,
    /// Where the output goes, for error messages.
    target: String,
}

enum Inner {
    Jsonl(BufWriter<Box<dyn Write + Send>>),
    Parquet(Box<parquet::ParquetSink>),
}

impl CandidateWriter {
    /// Creates `path.tmp`; [`CandidateWriter::finish`] renames it to `path`. An existing device
    /// or pipe (`/dev/null`) is written in place instead (see [`destination`]).
    pub fn create(path: &Path, format: OutputFormat) -> Result<Self, ScraperError> {
        let target = path.display().to_string();
        let (file, paths) = if destination::is_special(path) {
            let file = destination::open_in_place(path).map_err(ScraperError::file(path))?;
            (file, None)
        } else {
            let mut tmp_name = path.as_os_str().to_owned();
            tmp_name.push(".tmp");
            let tmp = PathBuf::from(tmp_name);
            let file = std::fs::File::create(&tmp).map_err(ScraperError::file(&tmp))?;
            (file, Some((tmp, path.to_path_buf())))
        };
        let sync = file.try_clone().ok();
        let inner = match format {
            OutputFormat::Jsonl => Inner::Jsonl(BufWriter::with_capacity(1 << 20, Box::new(file))),
            OutputFormat::Parquet => Inner::Parquet(Box::new(parquet::ParquetSink::new(file)?)),
        };
        Ok(Self {
            inner,
            paths,
            file: sync,
            target,
        })
    }

    /// JSON lines to a stream (e.g. stdout); nothing to rename.
    pub fn jsonl_stream(out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Inner::Jsonl(BufWriter::with_capacity(1 << 20, out)),
            paths: None,
            file: None,
            target: "stdout".to_owned(),
        }
    }

    pub fn write(&mut self, candidate: &Candidate) -> Result<(), ScraperError> {
        let result = match &mut self.inner {
            Inner::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &Row::from(candidate)).map_err(|error| {
                    ScraperError::Output {
                        format: "jsonl",
                        detail: error.to_string(),
                    }
                })?;
                out.write_all(b"\n").map_err(jsonl_error)
            }
            Inner::Parquet(sink) => sink.write(Row::from(candidate)),
        };
        result.map_err(|error| located(error, &self.target))
    }

    /// Drops the output and removes the temporary file (after a failed extraction).
    pub fn abandon(self) {
        if let Some((tmp, _)) = &self.paths {
            let _ = std::fs::remove_file(tmp);
        }
    }

    /// Flushes, syncs and renames the file into place; on failure removes the temporary file
    /// (a full disk keeps no half output).
    pub fn finish(self) -> Result<(), ScraperError> {
        let Self {
            inner,
            paths,
            file,
            target,
        } = self;
        let result = finish_file(inner, paths.as_ref(), file.as_ref())
            .map_err(|error| located(error, &target));
        if result.is_err()
            && let Some((tmp, _)) = &paths
        {
            let _ = std::fs::remove_file(tmp);
        }
        result
    }
}

fn finish_file(
    inner: Inner,
    paths: Option<&(PathBuf, PathBuf)>,
    file: Option<&std::fs::File>,
) -> Result<(), ScraperError> {
    match inner {
        Inner::Jsonl(out) => {
            let mut out = out
                .into_inner()
                .map_err(|error| jsonl_error(error.into_error()))?;
            out.flush().map_err(jsonl_error)?;
            if let Some(file) = file {
                destination::sync_if_regular(file).map_err(jsonl_error)?;
            }
        }
        Inner::Parquet(sink) => sink.finish()?,
    }
    if let Some((tmp, path)) = paths {
        std::fs::rename(tmp, path).map_err(ScraperError::file(path))?;
    }
    Ok(())
}

/// Names the output in a write error.
fn located(error: ScraperError, target: &str) -> ScraperError {
    match error {
        ScraperError::Output { format, detail } => ScraperError::Output {
            format,
            detail: format!("{target}: {detail}"),
        },
        other => other,
    }
}

fn jsonl_error(error: std::io::Error) -> ScraperError {
    ScraperError::Output {
        format: "jsonl",
        detail: error.to_string(),
    }
}
