//! `scraper-d`: the Crawling@Home CPU worker. Part 1: Common Crawl WAT files to image–text candidates.
//!
//! Layout:
//! - `wat.rs` (+ `wat/gzip.rs`, `wat/warc.rs`): a WAT byte stream as WARC records, member by
//!   member, with damage counted and skipped.
//! - `record.rs` (+ `record/nesting.rs`): the JSON envelope of a record, parsed into a DOM after
//!   a nesting-depth check, read only along the paths we use.
//! - `urls.rs`, `filters.rs` (+ `filters/alt.rs`, `filters/blocklist.rs`), `license.rs`,
//!   `language.rs`: what makes a link a candidate.
//! - `dedup.rs`: the pair hash, per-job dedup, and cross-job dedup through the tracker.
//! - `halves.rs`: halves of a WAT and the sample-ID rule.
//! - `extract.rs`: [`Extractor`], an iterator of [`Candidate`]s over any `Read`.
//! - `source.rs` (+ `source/http.rs`): files and resumable HTTP downloads.
//! - `output.rs` (+ `output/parquet.rs`): JSON lines and Parquet files, written atomically.
//! - `cli.rs`, `command.rs`, `summary.rs`, `telemetry.rs`: the binary's flags and glue.

pub mod body;
pub mod bundle;
pub mod candidates;
pub mod cli;
pub mod command;
pub mod config;
pub mod daemon;
pub mod dedup;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod filters;
pub mod halves;
pub mod job;
mod jpeg;
pub mod language;
pub mod license;
pub mod metrics;
pub mod output;
pub mod politeness;
pub mod record;
pub mod resize;
pub mod resolver;
pub mod robots;
pub mod safety;
pub mod shutdown;
pub mod source;
pub mod stats;
pub mod summary;
pub mod systemd;
pub mod telemetry;
pub mod terminal;
pub mod urls;
pub mod validate;
pub mod wat;
mod webp;

pub use candidates::{Candidate, Counts, SkipReason};
pub use error::ScraperError;
pub use extract::{ExtractConfig, Extractor};
pub use filters::FilterConfig;
pub use halves::{HalfJob, IdRange};
