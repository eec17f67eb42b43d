//! Deterministic synthetic crawls: pages that link to the test web's image hosts.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::pages::page_for;
use super::{ExpectedCandidate, HeaderStyle, Hostility, WatWriter};
use crate::error::TestkitError;
use crate::names::{self, DnsBehaviour};

/// Which faults generated image URLs may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMix {
    /// Only `/ok/` images on ordinary hosts.
    None,
    /// Faults that answer at once (statuses, redirects, damaged images, robots, fast DNS failures).
    Fast,
    /// Everything, including drip, endless bodies, slow answers, resets and dropped DNS queries.
    Full,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct WatConfig {
    /// Crawl id, e.g. `CC-MAIN-2024-51`.
    pub crawl: String,
    /// Position of the file in the crawl (the 5-digit sequence number).
    pub file_index: u32,
    pub header_style: HeaderStyle,
    pub seed: u64,
    /// Port of the [`crate::web::WebServer`] the URLs point at.
    pub web_port: u16,
    /// Pages to write (ignored when `target_bytes` is set).
    pub n_pages: usize,
    /// Keep writing pages until the compressed file reaches this size.
    pub target_bytes: Option<u64>,
    /// Distinct image hosts to link to.
    pub n_image_hosts: usize,
    pub faults: FaultMix,
    /// Hostile records; non-terminal ones are spread through the file, terminal ones end it.
    pub hostile: Vec<Hostility>,
    /// Gzip level, 0 to 9.
    pub compression: u32,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatSummary {
    pub wat_filename: String,
    /// `crawl-data/{crawl}/segments/{segment}/wat/{wat_filename}`.
    pub relative_path: String,
    pub n_pages: u64,
    pub n_records: u64,
    pub n_bytes: u64,
    pub n_candidates: u64,
}

impl WatConfig {
    /// A small fault-free file: 20 pages in the post-2024-51 style.
    pub fn small(web_port: u16, seed: u64) -> Self {
        Self {
            crawl: "CC-MAIN-2024-51".into(),
            file_index: 0,
            header_style: HeaderStyle::Arrays,
            seed,
            web_port,
            n_pages: 20,
            target_bytes: None,
            n_image_hosts: 50,
            faults: FaultMix::None,
            hostile: Vec::new(),
            compression: 6,
        }
    }

    /// Start of the captures: Monday of the crawl's ISO week (approximated from January 1st).
    pub fn capture_start(&self) -> SystemTime {
        let mut parts = self.crawl.trim_start_matches("CC-MAIN-").split('-');
        let year: i64 = parts
            .next()
            .and_then(|year| year.parse().ok())
            .unwrap_or(2024);
        let week: i64 = parts.next().and_then(|week| week.parse().ok()).unwrap_or(1);
        let days = days_from_civil(year, 1, 1) + (week.max(1) - 1) * 7;
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(days.max(0) * 86_400).unwrap_or(0))
    }

    /// `CC-MAIN-{start}-{end}-{index:05}.warc.wat.gz`, as Common Crawl names WAT files.
    pub fn wat_filename(&self) -> String {
        let start = self.capture_start() + Duration::from_secs(u64::from(self.file_index) * 60);
        let stamp = |time: SystemTime| {
            humantime::format_rfc3339_seconds(time)
                .to_string()
                .replace(['-', ':', 'T', 'Z'], "")
        };
        format!(
            "CC-MAIN-{}-{}-{:05}.warc.wat.gz",
            stamp(start),
            stamp(start + Duration::from_secs(3 * 3600)),
            self.file_index
        )
    }

    pub fn relative_path(&self) -> String {
        let start_ms = self
            .capture_start()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let segment = format!(
            "{}.{:02}",
            start_ms + u128::from(self.file_index / 10) * 1_000_000,
            self.file_index % 100
        );
        format!(
            "crawl-data/{}/segments/{segment}/wat/{}",
            self.crawl,
            self.wat_filename()
        )
    }

    /// The image host names links point at (deterministic in `seed`, faults per `faults`).
    pub fn image_hosts(&self) -> Vec<String> {
        let count = self.n_image_hosts.max(1);
        match self.faults {
            FaultMix::None => names::numbered_hosts("img", "photos.test", count),
            FaultMix::Fast => names::image_hosts(count, self.seed)
                .into_iter()
                .map(|host| match names::dns_behaviour(&host) {
                    DnsBehaviour::Slow | DnsBehaviour::Drop => host.replacen('-', "x-", 1),
                    _ => host,
                })
                .collect(),
            FaultMix::Full => names::image_hosts(count, self.seed),
        }
    }
}

/// Writes a whole WAT file to `out`, handing every expected candidate to `on_candidate` (so
/// memory stays bounded for benchmark-sized files).
pub fn generate<W: Write>(
    config: &WatConfig,
    out: W,
    mut on_candidate: impl FnMut(ExpectedCandidate),
) -> Result<(WatSummary, W), TestkitError> {
    let mut writer = WatWriter::new(
        out,
        &config.wat_filename(),
        config.header_style,
        config.capture_start(),
        config.seed,
    )?;
    writer.set_compression(config.compression);
    let hosts = config.image_hosts();
    let (terminal, inline): (Vec<Hostility>, Vec<Hostility>) = config
        .hostile
        .iter()
        .partition(|hostility| hostility.is_terminal());
    let n_pages = if config.target_bytes.is_some() {
        usize::MAX
    } else {
        config.n_pages
    };
    let spacing = if config.target_bytes.is_some() {
        500
    } else {
        (config.n_pages / (inline.len() + 1)).max(1)
    };
    let mut n_candidates = 0u64;
    let mut n_written = 0u64;
    let mut pending_inline = inline.iter();
    for index in 0..n_pages {
        if config
            .target_bytes
            .is_some_and(|target| writer.bytes_written() >= target)
        {
            break;
        }
        if index > 0
            && index % spacing == 0
            && let Some(hostility) = pending_inline.next()
        {
            writer.write_hostile(
                *hostility,
                &format!(
                    "http://site-9999.blog.test:{}/hostile-{index}.html",
                    config.web_port
                ),
            )?;
        }
        let page = page_for(config, index as u64, &hosts);
        for candidate in writer.write_page(&page)? {
            n_candidates += 1;
            on_candidate(candidate);
        }
        n_written += 1;
    }
    for hostility in pending_inline.chain(terminal.iter()) {
        writer.write_hostile(
            *hostility,
            &format!(
                "http://site-9999.blog.test:{}/hostile-end.html",
                config.web_port
            ),
        )?;
    }
    let summary = WatSummary {
        wat_filename: config.wat_filename(),
        relative_path: config.relative_path(),
        n_pages: n_written,
        n_records: writer.records_written(),
        n_bytes: writer.bytes_written(),
        n_candidates,
    };
    let out = writer.finish()?;
    tracing::debug!(file = %summary.wat_filename, n_pages = summary.n_pages, n_bytes = summary.n_bytes, "wat file generated");
    Ok((summary, out))
}

/// [`generate`] into memory, collecting the candidates.
pub fn generate_to_vec(
    config: &WatConfig,
) -> Result<(Vec<u8>, Vec<ExpectedCandidate>, WatSummary), TestkitError> {
    let mut candidates = Vec::new();
    let (summary, bytes) = generate(config, Vec::new(), |candidate| candidates.push(candidate))?;
    Ok((bytes, candidates, summary))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_common_crawl() {
        let config = WatConfig {
            file_index: 7,
            ..WatConfig::small(8080, 1)
        };
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 12, 16), 20_073);
        let name = config.wat_filename();
        assert!(name.starts_with("CC-MAIN-2024121"), "{name}");
        assert!(name.ends_with("-00007.warc.wat.gz"), "{name}");
        let path = config.relative_path();
        assert!(
            path.starts_with("crawl-data/CC-MAIN-2024-51/segments/")
                && path.contains("/wat/CC-MAIN-"),
            "{path}"
        );
    }
}
