//! Image download flags shared by `scraper-d run` and `scraper-d fetch` (each also a
//! `SCRAPER_*` variable).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::DownloadSettings;
use crate::error::ScraperError;
use crate::fetch::FetchConfig;
use crate::job::TailPolicy;
use crate::resize::{ResizeConfig, ResizeFilter};
use crate::resolver::ResolverSettings;
use crate::safety::AddressPolicy;
use crate::validate::ValidateConfig;

/// The contact URL of the User-Agent unless `--contact-url` names the operator's.
pub(crate) const DEFAULT_CONTACT_URL: &str = "https://github.com/crawling-at-home/cah-swarm";

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// Nameserver IP:PORT (repeatable, or comma-separated); the system's resolv.conf when unset.
    #[arg(
        long = "nameserver",
        env = "SCRAPER_NAMESERVERS",
        value_name = "IP:PORT",
        value_delimiter = ','
    )]
    pub nameservers: Vec<SocketAddr>,
    /// Connect to private, loopback, link-local and metadata addresses too (never on a public node).
    #[arg(long, env = "SCRAPER_ALLOW_PRIVATE_ADDRESSES", value_parser = super::EnvBool::off())]
    pub allow_private_addresses: bool,
    /// Networks allowed although special (repeatable, comma-separated), e.g. 127.0.0.1/32.
    #[arg(
        long = "allow-cidr",
        env = "SCRAPER_ALLOW_CIDRS",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub allow_cidrs: Vec<IpNet>,
    /// Contact URL put in the User-Agent, so site owners can reach the operator (the default
    /// when empty).
    #[arg(long, env = "SCRAPER_CONTACT_URL", default_value = DEFAULT_CONTACT_URL)]
    pub contact_url: String,
    /// Time budget of one image: its name lookups, its wait for the host's robots.txt and every
    /// request of its redirect chain (connect, headers, body); waits for a host slot or a
    /// host's backoff are not counted.
    #[arg(long, env = "SCRAPER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Largest image body in bytes.
    #[arg(long, env = "SCRAPER_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Image downloads in flight at once (1-vCPU default).
    #[arg(long, env = "SCRAPER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Once 95 % of a job half's images are done, the rest get at most this percentage of the
    /// time the half has taken so far (and at least --timeout); those still waiting then
    /// (usually queued behind one slow host's --per-host slots) are abandoned, counted as
    /// `abandoned`. 0: wait for every image.
    #[arg(
        long,
        env = "SCRAPER_MAX_TAIL",
        value_name = "PERCENT",
        default_value_t = 10
    )]
    pub max_tail: u32,
    /// Requests to one host at once.
    #[arg(long, env = "SCRAPER_PER_HOST", default_value_t = 2)]
    pub per_host: usize,
    /// Image bodies over 1 MiB held in memory at once, from their first byte past 1 MiB (or a
    /// Content-Length over it) until decoded; others wait within their --timeout. Bounds the
    /// bodies' memory at this times --max-body-bytes (160 MiB by default).
    #[arg(long, env = "SCRAPER_MAX_LARGE_BODIES", default_value_t = 16)]
    pub max_large_bodies: usize,
    /// Do not fetch or obey robots.txt.
    #[arg(long, env = "SCRAPER_IGNORE_ROBOTS", value_parser = super::EnvBool::off())]
    pub ignore_robots: bool,
    /// Store images whose response reserves text and data mining rights with TDMRep's
    /// `tdm-reservation: 1` header (by default they are `opt_out`, as `X-Robots-Tag: noai`).
    #[arg(long, env = "SCRAPER_IGNORE_TDM_RESERVATION", value_parser = super::EnvBool::off())]
    pub ignore_tdm_reservation: bool,
    /// Consecutive failures that stop requests to a host (0: never).
    #[arg(long, env = "SCRAPER_BREAKER_THRESHOLD", default_value_t = 8)]
    pub breaker_threshold: u32,
    /// Smallest image accepted, in bytes.
    #[arg(long, env = "SCRAPER_MIN_IMAGE_BYTES", default_value_t = 5000)]
    pub min_image_bytes: usize,
    /// Largest pixel count accepted (read from the header before decoding).
    #[arg(long, env = "SCRAPER_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Most scans a progressive JPEG may have (encoders write about 10): a hostile file of
    /// thousands of empty scans costs minutes of CPU to decode, so more is `decode_error`.
    #[arg(long, env = "SCRAPER_MAX_JPEG_SCANS", default_value_t = 100)]
    pub max_jpeg_scans: usize,
    /// Decode every scan of a progressive JPEG. By default a progressive JPEG that is decoded at
    /// 1/2, 1/4 or 1/8 scale (for the thumbnail) is decoded without its refinement scans, which
    /// carry the lowest bit or two of each coefficient and most of the decoding time: 3 to 6
    /// times faster on such files, and the thumbnail differs less than its own JPEG encoding
    /// changes it.
    #[arg(long, env = "SCRAPER_ALL_PROGRESSIVE_SCANS", value_parser = super::EnvBool::off())]
    pub all_progressive_scans: bool,
    /// Stored images are resized so their shorter side is this long (never enlarged), 16 to 8192.
    #[arg(long, env = "SCRAPER_RESIZE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub resize: u32,
    /// Downscaling filter: `area` (mean of the covered pixels, as img2dataset's OpenCV
    /// INTER_AREA) or `lanczos3` (sharper, slower).
    #[arg(long, env = "SCRAPER_RESIZE_FILTER", value_enum, default_value_t = ResizeFilter::Area)]
    pub resize_filter: ResizeFilter,
    /// JPEG quality of stored images.
    #[arg(long, env = "SCRAPER_JPEG_QUALITY", default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
}

impl DownloadArgs {
    /// Validates the flags into download settings.
    pub fn settings(&self) -> Result<DownloadSettings, ScraperError> {
        if self.concurrency == 0 || self.per_host == 0 {
            return Err(ScraperError::Config(
                "--concurrency and --per-host must be at least 1".into(),
            ));
        }
        if self.max_large_bodies == 0 {
            return Err(ScraperError::Config(
                "--max-large-bodies (SCRAPER_MAX_LARGE_BODIES) must be at least 1: no image over 1 MiB could be downloaded".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ScraperError::Config(
                "--timeout must be more than 0 (e.g. 10s)".into(),
            ));
        }
        // An empty SCRAPER_CONTACT_URL would leave site owners no one to reach.
        let contact_url = match self.contact_url.trim() {
            "" => DEFAULT_CONTACT_URL,
            contact_url => contact_url,
        };
        let user_agent = format!(
            "scraper-d/{} (Crawling@Home image-text crawler; +{contact_url})",
            env!("CARGO_PKG_VERSION"),
        );
        let mut fetch = FetchConfig::standard(user_agent);
        fetch.timeout = self.timeout;
        fetch.max_body_bytes = self.max_body_bytes;
        fetch.max_in_flight = self.concurrency;
        fetch.max_large_bodies = self.max_large_bodies;
        fetch.politeness.per_host = self.per_host;
        fetch.politeness.respect_robots = !self.ignore_robots;
        fetch.politeness.respect_tdm_reservation = !self.ignore_tdm_reservation;
        fetch.politeness.breaker_threshold = self.breaker_threshold;
        let mut resolver = ResolverSettings::standard();
        resolver.nameservers = self.nameservers.clone();
        Ok(DownloadSettings {
            resolver,
            policy: AddressPolicy {
                allow_all: self.allow_private_addresses,
                allowed: self.allow_cidrs.clone(),
            },
            fetch,
            validate: ValidateConfig {
                min_bytes: self.min_image_bytes,
                max_pixels: self.max_pixels,
                max_jpeg_scans: self.max_jpeg_scans,
                skip_refinements: !self.all_progressive_scans,
                ..ValidateConfig::standard()
            },
            resize: ResizeConfig {
                shorter_side: self.resize,
                jpeg_quality: self.jpeg_quality,
                filter: self.resize_filter,
            },
            decode_threads: std::thread::available_parallelism().map_or(1, usize::from),
            concurrency: self.concurrency,
            tail: TailPolicy {
                percent: self.max_tail,
                floor: self.timeout,
            },
        })
    }
}
