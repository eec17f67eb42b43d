//! The whole test world at once: DNS, image hosts, a Common Crawl copy and the Hetzner API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::commoncrawl::{self, CommonCrawlServer, CrawlFixture};
use crate::dns::{DnsConfig, DnsServer, LoopbackOnlyResolve};
use crate::error::TestkitError;
use crate::hetzner::{HetznerConfig, HetznerServer};
use crate::photos::{CorpusSource, PhotoCorpus};
use crate::wat::{FaultMix, HeaderStyle, WatConfig};
use crate::web::{WebConfig, WebServer};

/// What to start.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub dns: DnsConfig,
    pub web: WebConfig,
    pub hetzner: HetznerConfig,
    /// Folder for the crawl's WAT files and `wat.paths.gz`.
    pub crawl_root: PathBuf,
    /// Crawl id, e.g. `CC-MAIN-2024-51`.
    pub crawl: String,
    pub n_wat_files: u32,
    pub pages_per_wat: usize,
    pub faults: FaultMix,
    pub seed: u64,
}

/// A running test world; dropping it stops every server.
pub struct TestWorld {
    pub dns: DnsServer,
    pub web: WebServer,
    pub commoncrawl: CommonCrawlServer,
    pub hetzner: HetznerServer,
    pub crawl: CrawlFixture,
}

impl TestWorld {
    /// Starts every server on `127.0.0.1:0` and writes the crawl (its URLs carry the web server's port).
    pub async fn start(
        config: WorldConfig,
        corpus: Arc<PhotoCorpus>,
    ) -> Result<Self, TestkitError> {
        let dns = DnsServer::start_local(config.dns.clone()).await?;
        let web = WebServer::start_local(config.web.clone(), corpus).await?;
        let wat_configs: Vec<WatConfig> = (0..config.n_wat_files)
            .map(|file_index| WatConfig {
                crawl: config.crawl.clone(),
                file_index,
                header_style: HeaderStyle::for_crawl(&config.crawl),
                seed: config.seed.wrapping_add(u64::from(file_index)),
                n_pages: config.pages_per_wat,
                faults: config.faults,
                ..WatConfig::small(web.port(), config.seed)
            })
            .collect();
        let root = config.crawl_root.clone();
        let crawl =
            tokio::task::spawn_blocking(move || commoncrawl::write_crawl(&root, &wat_configs))
                .await
                .map_err(|error| {
                    TestkitError::Config(format!("crawl writer panicked: {error}"))
                })??;
        let commoncrawl = CommonCrawlServer::start_local(&config.crawl_root).await?;
        let hetzner = HetznerServer::start_local(config.hetzner.clone()).await?;
        Ok(Self {
            dns,
            web,
            commoncrawl,
            hetzner,
            crawl,
        })
    }

    /// A client that resolves through the test DNS server, only ever connects to loopback, and
    /// does not follow redirects.
    pub fn http_client(&self, timeout: Duration) -> reqwest::Client {
        http_client_for(&self.dns, timeout)
    }

    /// `key=value` lines describing the world (what `cah-testkit serve` prints).
    pub fn describe(&self) -> Vec<String> {
        let photos = match self.web.corpus().source() {
            CorpusSource::Prepared { dir, n_photos } => {
                format!("prepared:{} ({n_photos} photos)", dir.display())
            }
            CorpusSource::Generated { reason } => format!("generated ({reason})"),
        };
        let n_candidates = self.crawl.candidates().count();
        vec![
            format!("dns={}", self.dns.addr()),
            format!(
                "dns_tcp={}",
                self.dns
                    .tcp_addr()
                    .map(|addr| addr.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
            format!("web={}", self.web.addr()),
            format!(
                "web_example={}",
                self.web.url("img-0001.photos.test", "/ok/example.jpg")
            ),
            format!("commoncrawl={}", self.commoncrawl.base_url()),
            format!(
                "wat_paths={}{}",
                self.commoncrawl.base_url(),
                self.crawl.listing_path()
            ),
            format!("wat_files={}", self.crawl.files.len()),
            format!("expected_candidates={n_candidates}"),
            format!("hetzner={}", self.hetzner.base_url()),
            format!("photos={photos}"),
        ]
    }
}

/// A `reqwest` client over the test DNS server (loopback answers only, no redirects followed).
pub fn http_client_for(dns: &DnsServer, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(LoopbackOnlyResolve(dns.resolver(timeout))))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .no_proxy()
        .build()
        .expect("a client with a custom resolver and no TLS settings always builds")
}
