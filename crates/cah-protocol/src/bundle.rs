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
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Name of the metadata file inside a bundle.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// Name of the per-job statistics file inside a bundle.
pub const STATS_FILE: &str = "stats.json";
/// Version of this layout, in [`BundleStats::format_version`].
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// Whether a bundle URL must not lead to `ip`: link-local addresses (169.254.0.0/16 with the
/// cloud metadata service at 169.254.169.254, fe80::/10), AWS's fd00:ec2::254, and their
/// IPv4-mapped forms. A bundle URL can come from a CPU client (an external handoff), so
/// tracker-d refuses handoffs naming these and clip-gpu-d never connects to them.
pub fn is_forbidden_bundle_address(ip: IpAddr) -> bool {
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => mapped.is_link_local(),
            None => (ip.segments()[0] & 0xffc0) == 0xfe80 || ip == AWS_METADATA_V6,
        },
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_bundle_addresses() {
        for (text, forbidden) in [
            ("169.254.169.254", true),
            ("fe80::1", true),
            ("fd00:ec2::254", true),
            ("::ffff:169.254.169.254", true),
            ("127.0.0.1", false),
            ("10.0.0.5", false),
            ("192.0.2.7", false),
            ("fd00:ec2::253", false),
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert_eq!(is_forbidden_bundle_address(ip), forbidden, "{text}");
        }
    }
}
