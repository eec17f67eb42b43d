//! Command-line flags (each also an `SCRAPER_*` environment variable) and their validation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

mod download;
mod env_bool;
mod fetch;
mod filters;
mod run;

pub use download::DownloadArgs;
use env_bool::{BOOLEAN_VARIABLES_HELP, EnvBool};
pub use fetch::FetchArgs;
pub use filters::FilterArgs;
pub use run::RunArgs;

use crate::error::ScraperError;
use crate::extract::{DEFAULT_MAX_RECORD_BYTES, ExtractConfig};
use crate::halves::{HalfJob, IdRange};
use crate::output::OutputFormat;
use crate::source::HttpConfig;
use crate::telemetry::LogFormat;

/// Crawling@Home CPU worker: Common Crawl WAT files to image–text candidates.
#[derive(Debug, Parser)]
#[command(name = "scraper-d", version)]
pub struct Args {
    /// Log line format on stderr (`RUST_LOG` sets the level, default info).
    #[arg(
        long,
        env = "SCRAPER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream one WAT file (path or http(s) URL) and write its image–text candidates.
    #[command(after_help = BOOLEAN_VARIABLES_HELP)]
    Extract(Box<ExtractArgs>),
    /// Run as the worker daemon: claim jobs, download images, upload bundles (systemd service).
    #[command(after_help = BOOLEAN_VARIABLES_HELP)]
    Run(Box<RunArgs>),
    /// Download a list of image URLs (one per line) into one bundle, without a tracker (benchmarks, checks).
    #[command(after_help = BOOLEAN_VARIABLES_HELP)]
    Fetch(Box<FetchArgs>),
}

/// Which halves of the WAT to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HalfChoice {
    /// Records with an even index.
    #[value(name = "0")]
    Zero,
    /// Records with an odd index.
    #[value(name = "1")]
    One,
    /// Both, each candidate tagged with its half and numbered from that half's range.
    Both,
}

#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// The `.warc.wat.gz` to read: a local path, or an http:// or https:// URL (streamed, resumed with Range requests when the connection breaks).
    #[arg(env = "SCRAPER_WAT")]
    pub source: String,
    /// Output format.
    #[arg(long, env = "SCRAPER_FORMAT", value_enum, default_value = "jsonl")]
    pub format: OutputFormat,
    /// Output file, written as PATH.tmp and renamed when complete; JSON lines go to stdout without it.
    #[arg(long, env = "SCRAPER_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Print the final summary as one JSON object on stderr instead of text.
    #[arg(long, env = "SCRAPER_SUMMARY_JSON", value_parser = EnvBool::off())]
    pub summary_json: bool,
    /// Which half: record i of the file belongs to half i mod 2.
    #[arg(long, env = "SCRAPER_HALF", value_enum, default_value = "both")]
    pub half: HalfChoice,
    /// Sample-ID range START..END (end exclusive) of half 0.
    #[arg(long, env = "SCRAPER_HALF0_IDS", default_value = "0..1000000000")]
    pub half0_ids: IdRange,
    /// Sample-ID range START..END (end exclusive) of half 1.
    #[arg(
        long,
        env = "SCRAPER_HALF1_IDS",
        default_value = "1000000000..2000000000"
    )]
    pub half1_ids: IdRange,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Records inflating to more than this many bytes are skipped (counted as record_too_large).
    #[arg(long, env = "SCRAPER_MAX_RECORD_BYTES", default_value_t = DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Failed download attempts in a row before giving up.
    #[arg(long, env = "SCRAPER_HTTP_ATTEMPTS", default_value_t = 8)]
    pub http_attempts: u32,
    /// First retry delay of a download, doubled per failure in a row (e.g. 500ms, 2s).
    #[arg(long, env = "SCRAPER_HTTP_RETRY_DELAY", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub http_retry_delay: Duration,
}

/// A validated `extract` command.
#[derive(Debug, Clone)]
pub struct ExtractCommand {
    pub source: crate::source::WatSource,
    pub format: OutputFormat,
    pub output: Option<PathBuf>,
    pub summary_json: bool,
    pub extract: ExtractConfig,
    pub http: HttpConfig,
}

impl TryFrom<ExtractArgs> for ExtractCommand {
    type Error = ScraperError;

    fn try_from(args: ExtractArgs) -> Result<Self, Self::Error> {
        if args.format == OutputFormat::Parquet && args.output.is_none() {
            return Err(ScraperError::Config("parquet output needs --output".into()));
        }
        if args.max_record_bytes < 1024 {
            return Err(ScraperError::Config(
                "--max-record-bytes must be at least 1024".into(),
            ));
        }
        let halves = match args.half {
            HalfChoice::Zero => vec![HalfJob::new(0, args.half0_ids)?],
            HalfChoice::One => vec![HalfJob::new(1, args.half1_ids)?],
            HalfChoice::Both => {
                let (half0, half1) = (args.half0_ids, args.half1_ids);
                // Sample IDs are never reused: the two halves of one file must not share any.
                let overlap = half0.start < half1.end && half1.start < half0.end;
                if overlap && half0.start < half0.end && half1.start < half1.end {
                    return Err(ScraperError::Config(format!(
                        "--half0-ids {}..{} and --half1-ids {}..{} overlap",
                        half0.start, half0.end, half1.start, half1.end
                    )));
                }
                vec![HalfJob::new(0, half0)?, HalfJob::new(1, half1)?]
            }
        };
        if args.source.trim().is_empty() {
            return Err(ScraperError::Config(
                "the wat source (SOURCE, SCRAPER_WAT) is empty: give a .warc.wat.gz path or an \
                 http(s) URL"
                    .into(),
            ));
        }
        let filters = args.filters.config()?;
        let mut http = HttpConfig::standard();
        http.max_attempts = args.http_attempts.max(1);
        http.retry_delay = args.http_retry_delay;
        Ok(Self {
            source: crate::source::WatSource::parse(&args.source)?,
            format: args.format,
            output: args.output,
            summary_json: args.summary_json,
            extract: ExtractConfig {
                halves,
                filters,
                max_record_bytes: args.max_record_bytes,
            },
            http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract_command(flags: &[&str]) -> Result<ExtractCommand, ScraperError> {
        let argv = ["scraper-d", "extract", "file.warc.wat.gz"]
            .iter()
            .chain(flags)
            .copied();
        let args = Args::try_parse_from(argv).expect("flags parse");
        let Command::Extract(extract) = args.command else {
            panic!("not an extract command");
        };
        ExtractCommand::try_from(*extract)
    }

    #[test]
    fn half_id_ranges_must_not_overlap() {
        let cases: &[(&[&str], bool)] = &[
            (&["--half0-ids", "0..100", "--half1-ids", "50..150"], false),
            (&["--half0-ids", "50..150", "--half1-ids", "0..100"], false),
            (&["--half0-ids", "0..100", "--half1-ids", "10..20"], false),
            (&["--half0-ids", "0..100", "--half1-ids", "0..100"], false),
            (&["--half0-ids", "0..100", "--half1-ids", "99..100"], false),
            (&["--half0-ids", "0..100", "--half1-ids", "100..200"], true),
            (&["--half0-ids", "100..200", "--half1-ids", "0..100"], true),
            (&["--half0-ids", "50..50", "--half1-ids", "0..100"], true),
            (&[], true),
            // One half uses one range only: the other does not matter.
            (
                &[
                    "--half",
                    "0",
                    "--half0-ids",
                    "0..100",
                    "--half1-ids",
                    "50..150",
                ],
                true,
            ),
            (
                &[
                    "--half",
                    "1",
                    "--half0-ids",
                    "0..100",
                    "--half1-ids",
                    "50..150",
                ],
                true,
            ),
        ];
        for (flags, ok) in cases {
            let got = extract_command(flags);
            assert_eq!(got.is_ok(), *ok, "{flags:?}: {got:?}");
            if let Err(error) = got {
                assert!(matches!(error, ScraperError::Config(_)), "{error:?}");
                assert!(error.to_string().contains("overlap"), "{error}");
            }
        }
    }
}
