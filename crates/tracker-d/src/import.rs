//! `tracker-d import`: turns a Common Crawl `wat.paths.gz` (or a plain list of WAT URLs) into jobs.
//!
//! Each WAT becomes two jobs, one per half, numbered as in 2021 (WAT k gives jobs 2k-1 and 2k).
//! Unlike 2021, the halves do not share an ID range: WAT k owns `[(k-1)·10^6, k·10^6)` and each
//! half owns its own 500,000 IDs of it, so no two jobs can ever hand out the same sample ID.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use rand::seq::SliceRandom;
use url::Url;

use crate::db::{Db, DbError, Dialect, to_i64};

/// Sample IDs owned by one WAT.
pub const IDS_PER_WAT: u64 = 1_000_000;
/// Sample IDs owned by one job (half a WAT).
pub const IDS_PER_JOB: u64 = IDS_PER_WAT / 2;

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source file could not be read.
    #[error("failed to read {path}: {cause}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The source URL could not be fetched (the cause chain says why: refused, DNS, status).
    #[error("failed to fetch {url}")]
    Fetch {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        cause: reqwest::Error,
    },
    /// The source is gzip but corrupt, or not UTF-8.
    #[error("{source_name} is not a readable list of WAT paths: {reason}")]
    Format {
        /// The source.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A line is neither an absolute http(s) URL nor a path relative to the base URL.
    #[error("line {line} of the source is not a WAT URL or path: {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Storing the jobs failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How to read and order the source.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Base for relative paths, such as `https://data.commoncrawl.org/`.
    pub base_url: Url,
    /// Import at most this many WATs.
    pub limit: Option<usize>,
    /// Shuffle the WATs, so consecutive claims spread over crawl segments.
    pub shuffle: bool,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    /// WATs read from the source (after `--limit`).
    pub wats_read: u64,
    /// Jobs created.
    pub jobs_created: u64,
    /// WATs already present, skipped.
    pub wats_skipped: u64,
}

/// Reads `source` (a local path or an http(s) URL; gzip or plain text) into absolute WAT URLs.
pub async fn read_source(
    source: &str,
    options: &ImportOptions,
) -> Result<Vec<String>, ImportError> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        let fetch_error = |source_error| ImportError::Fetch {
            url: source.to_owned(),
            cause: source_error,
        };
        let response = reqwest::get(source).await.map_err(fetch_error)?;
        let response = response.error_for_status().map_err(fetch_error)?;
        response.bytes().await.map_err(fetch_error)?.to_vec()
    } else {
        tokio::fs::read(source)
            .await
            .map_err(|error| ImportError::Read {
                path: source.to_owned(),
                cause: error,
            })?
    };
    let text = decode(source, bytes)?;
    let mut urls = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        urls.push(
            absolute(line, &options.base_url).ok_or_else(|| ImportError::BadLine {
                line: index + 1,
                text: line.chars().take(200).collect(),
            })?,
        );
    }
    if options.shuffle {
        urls.shuffle(&mut rand::rng());
    }
    if let Some(limit) = options.limit {
        urls.truncate(limit);
    }
    Ok(urls)
}

/// Stores `urls` as jobs, skipping WATs already imported; `progress` gets the WATs done so far.
pub async fn import(
    db: &Db,
    urls: &[String],
    shuffle: bool,
    progress: impl Fn(u64),
) -> Result<ImportSummary, ImportError> {
    let mut summary = ImportSummary {
        wats_read: urls.len() as u64,
        ..ImportSummary::default()
    };
    let next: Option<i64> = sqlx::query_scalar("SELECT MAX(wat_index) FROM jobs")
        .fetch_one(db.pool())
        .await
        .map_err(DbError::from)?;
    let mut wat_index = next.map_or(0, |max| max + 1);
    for (chunk_index, chunk) in urls.chunks(1000).enumerate() {
        let mut transaction = db.pool().begin().await.map_err(DbError::from)?;
        for url in chunk {
            // Both halves share a shuffle key, so a whole-WAT claim finds them together.
            let shuffle_key = if shuffle {
                rand::random::<i64>() & i64::MAX
            } else {
                wat_index
            };
            let mut created = 0;
            for shard in 0..2_i64 {
                let start_id = wat_index * to_i64(IDS_PER_WAT) + shard * to_i64(IDS_PER_JOB);
                let result = sqlx::query(
                    "INSERT INTO jobs (number, url, wat_index, shard, start_id, end_id, shuffle_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (url, shard) DO NOTHING",
                )
                .bind(2 * wat_index + 1 + shard)
                .bind(url)
                .bind(wat_index)
                .bind(shard)
                .bind(start_id)
                .bind(start_id + to_i64(IDS_PER_JOB))
                .bind(shuffle_key)
                .execute(&mut *transaction)
                .await
                .map_err(DbError::from)?;
                created += result.rows_affected();
            }
            summary.jobs_created += created;
            if created == 0 {
                summary.wats_skipped += 1;
            }
            wat_index += 1;
        }
        transaction.commit().await.map_err(DbError::from)?;
        progress(((chunk_index * 1000) + chunk.len()) as u64);
    }
    if db.dialect() == Dialect::Postgres && summary.jobs_created > 0 {
        // PostgreSQL plans by its statistics, and until autovacuum gets to the new rows they
        // describe a table a fraction of the size: a lookup by url then walked every open job.
        // SQLite keeps none; its statements say which index to use (see `jobs::wat_by_url`).
        sqlx::query("ANALYZE jobs")
            .execute(db.pool())
            .await
            .map_err(DbError::from)?;
    }
    Ok(summary)
}

fn decode(source: &str, bytes: Vec<u8>) -> Result<String, ImportError> {
    let format_error = |reason: String| ImportError::Format {
        source_name: source.to_owned(),
        reason,
    };
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut text)
            .map_err(|error| format_error(format!("corrupt gzip: {error}")))?;
        text
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|error| format_error(format!("not UTF-8: {error}")))
}

fn absolute(line: &str, base: &Url) -> Option<String> {
    if line.starts_with("http://") || line.starts_with("https://") {
        return Url::parse(line).ok().map(String::from);
    }
    if line.contains("://") || line.contains(char::is_whitespace) {
        return None;
    }
    base.join(line.trim_start_matches('/'))
        .ok()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_base() {
        let base = Url::parse("https://data.commoncrawl.org/").unwrap();
        assert_eq!(
            absolute(
                "crawl-data/CC-MAIN-2024-51/segments/1/wat/a.warc.wat.gz",
                &base
            )
            .unwrap(),
            "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-51/segments/1/wat/a.warc.wat.gz"
        );
        assert_eq!(
            absolute("http://x.test/a.gz", &base).unwrap(),
            "http://x.test/a.gz"
        );
        assert!(absolute("ftp://x/a", &base).is_none());
        assert!(absolute("two words", &base).is_none());
    }

    #[test]
    fn gzip_and_plain_text_both_decode() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"a\nb\n").unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(decode("x", gz).unwrap(), "a\nb\n");
        assert_eq!(decode("x", b"plain".to_vec()).unwrap(), "plain");
        assert!(decode("x", vec![0x1f, 0x8b, 0, 1, 2]).is_err());
        assert!(decode("x", vec![0xff, 0xfe]).is_err());
    }
}
