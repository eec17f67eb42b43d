//! The `extract` command: open the source, run the extractor, write the output, summarize
//! (`command/fetch.rs`: the `fetch` command).

pub mod fetch;

use std::time::Instant;

use crate::candidates::Candidate;
use crate::cli::ExtractCommand;
use crate::error::ScraperError;
use crate::extract::Extractor;
use crate::output::CandidateWriter;
use crate::source::{self, WatSource};
use crate::summary::Summary;
use crate::terminal::Progress;

/// Runs `extract` on the calling thread (which must not be a tokio worker); an HTTP source is
/// downloaded by a task on `runtime`.
pub fn run_extract(
    command: &ExtractCommand,
    runtime: &tokio::runtime::Handle,
) -> Result<Summary, ScraperError> {
    let started = Instant::now();
    let mut writer = match &command.output {
        Some(path) => CandidateWriter::create(path, command.format)?,
        None => CandidateWriter::jsonl_stream(Box::new(std::io::stdout())),
    };
    let result = extract_into(command, runtime, &mut writer);
    let (counts, label) = match result {
        Ok((counts, label)) if counts.records == 0 => {
            // An output with no candidates would look like a WAT without images.
            writer.abandon();
            let detail = if counts.skipped.is_empty() {
                format!("{} bytes read", counts.bytes_compressed)
            } else {
                let skipped: Vec<String> = counts
                    .skipped
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect();
                format!(
                    "{} bytes read, skipped: {}",
                    counts.bytes_compressed,
                    skipped.join(", ")
                )
            };
            return Err(ScraperError::NotAWat {
                source_name: label,
                detail,
            });
        }
        Ok(done) => done,
        Err(error) => {
            writer.abandon();
            return Err(error);
        }
    };
    writer.finish()?;
    let summary = Summary::new(label, counts, started.elapsed());
    tracing::info!(
        n_candidates = summary.counts.candidates,
        n_records = summary.counts.records,
        elapsed_s = summary.elapsed_s,
        "extraction finished"
    );
    Ok(summary)
}

fn extract_into(
    command: &ExtractCommand,
    runtime: &tokio::runtime::Handle,
    writer: &mut CandidateWriter,
) -> Result<(crate::Counts, String), ScraperError> {
    Ok(match &command.source {
        WatSource::File(path) => {
            let file = source::open_file(path)?;
            let size = file.metadata().ok().map(|metadata| metadata.len());
            let progress = Progress::bytes("extracting", size);
            let extractor = Extractor::new(file, command.extract.clone())?;
            let counts = drain(extractor, writer, &progress, &|| None)?;
            (counts, path.display().to_string())
        }
        WatSource::Http(url) => {
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .read_timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(|error| ScraperError::Download {
                    url: url.to_string(),
                    detail: error.to_string(),
                })?;
            let reader = source::spawn_download(runtime, client, url.clone(), command.http.clone());
            let resumes = reader.resume_counter();
            let length = reader.length_handle();
            let progress = Progress::bytes("extracting", None);
            let extractor = Extractor::new(reader, command.extract.clone())?;
            let mut counts = drain(extractor, writer, &progress, &|| {
                Some(length.load(std::sync::atomic::Ordering::Relaxed)).filter(|&n| n > 0)
            })?;
            counts.resumes = resumes.load(std::sync::atomic::Ordering::Relaxed);
            (counts, url.to_string())
        }
    })
}

/// Candidates between two progress updates.
const PROGRESS_EVERY: u64 = 1024;

/// Writes every candidate; `total` tells the source's length once it is known.
fn drain<R: std::io::Read>(
    mut extractor: Extractor<R>,
    writer: &mut CandidateWriter,
    progress: &Progress,
    total: &dyn Fn() -> Option<u64>,
) -> Result<crate::Counts, ScraperError> {
    let mut n_written = 0u64;
    while let Some(candidate) = extractor.next() {
        let candidate: Candidate = candidate?;
        writer.write(&candidate)?;
        n_written += 1;
        if n_written.is_multiple_of(PROGRESS_EVERY) {
            report(progress, total, extractor.compressed_bytes(), n_written);
        }
    }
    Ok(extractor.into_counts())
}

/// Moves the bar; kept out of the hot loop above.
#[inline(never)]
fn report(progress: &Progress, total: &dyn Fn() -> Option<u64>, bytes: u64, n_written: u64) {
    if let Some(total) = total() {
        progress.set_total(total);
    }
    progress.set_position(bytes);
    progress.set_detail(format!("{n_written} candidates"));
}
