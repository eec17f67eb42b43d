//! The bundle a scraper hands to a GPU daemon: a tar of resized images plus one metadata file.
//!
//! Layout of `job-N.tar` (plain tar, entries in this order):
//! - `{sample_id}.{jpg|png|webp}` for every kept image, resized by the scraper;
//! - [`SAMPLES_FILE`]: JSON lines, one [`BundleSample`] per image, in tar order;
//! - [`STATS_FILE`]: one [`BundleStats`] object.
//!
//! A GPU daemon treats bundles as hostile: it accepts only these names (no paths, no links),
//! checks sizes and SHA-256 against the metadata, and reports the job invalid otherwise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the metadata file inside a bundle.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// Name of the per-job statistics file inside a bundle.
pub const STATS_FILE: &str = "stats.json";
/// Version of this layout, in [`BundleStats::format_version`].
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// One image–text pair in a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleSample {
    /// Unique across the whole crawl (from the job's ID range).
    pub sample_id: u64,
    /// Name of the image entry in the tar.
    pub file: String,
    /// Image URL as found on the page (resolved).
    pub url: String,
    /// URL after redirects.
    pub final_url: String,
    /// Alt text after cleanup.
    pub alt: String,
    /// The page the image was on.
    pub page_url: String,
    /// Creative Commons license URL found on the page, if any.
    #[serde(default)]
    pub license: Option<String>,
    /// Language tag of the alt text (ISO 639-3).
    #[serde(default)]
    pub language: Option<String>,
    /// Width of the image as downloaded.
    pub original_width: u32,
    /// Height of the image as downloaded.
    pub original_height: u32,
    /// Width of the stored (resized) image.
    pub width: u32,
    /// Height of the stored (resized) image.
    pub height: u32,
    /// Bytes of the stored image.
    pub bytes: u64,
    /// Hex SHA-256 of the stored image.
    pub sha256: String,
}

/// Outcome counts of one job, like img2dataset's `_stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BundleStats {
    /// [`BUNDLE_FORMAT_VERSION`].
    pub format_version: u32,
    /// The job.
    pub job: u64,
    /// Candidates extracted from the WAT half.
    pub candidates: u64,
    /// Images stored in the bundle.
    pub stored: u64,
    /// Count per outcome class (`ok`, `dns_failure`, `timeout`, `http_4xx`, `robots`, ...).
    pub outcomes: BTreeMap<String, u64>,
}
