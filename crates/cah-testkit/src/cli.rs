//! Command line of the `cah-testkit` binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::dns::DnsConfig;
use crate::hetzner::{HetznerConfig, ProjectConfig};
use crate::wat::FaultMix;
use crate::web::WebConfig;
use crate::world::WorldConfig;

/// A miniature Internet, Common Crawl and Hetzner Cloud on loopback.
#[derive(Debug, clap::Parser)]
#[command(name = "cah-testkit", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "CAH_TESTKIT_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start every fake on 127.0.0.1:0, print their addresses as key=value lines, run until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Write one WAT file (and its crawl's wat.paths.gz) for benchmarks; reuses a cached file of the same settings.
    Wat(WatArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatArgs {
    /// Root of the crawl folder to write into.
    #[arg(
        long,
        env = "CAH_TESTKIT_WAT_OUT",
        default_value = "target/testkit-wat"
    )]
    pub out_dir: PathBuf,
    /// Crawl id; it also picks the WAT header style.
    #[arg(long, env = "CAH_TESTKIT_CRAWL", default_value = "CC-MAIN-2024-51")]
    pub crawl: String,
    /// Compressed size to reach, in MB (400 is a realistic Common Crawl WAT).
    #[arg(long, env = "CAH_TESTKIT_WAT_TARGET_MB", default_value_t = 400)]
    pub target_mb: u64,
    /// Port that image URLs in the file point at (that of a running `serve`).
    #[arg(long, env = "CAH_TESTKIT_WEB_PORT", default_value_t = 8080)]
    pub web_port: u16,
    /// Faults in image URLs: none, fast or full.
    #[arg(long, env = "CAH_TESTKIT_FAULTS", default_value = "fast")]
    pub faults: String,
    /// Seed of the generated pages.
    #[arg(long, env = "CAH_TESTKIT_SEED", default_value_t = 2021)]
    pub seed: u64,
    /// Gzip level of each record, 0 to 9.
    #[arg(long, env = "CAH_TESTKIT_WAT_COMPRESSION", default_value_t = 6)]
    pub compression: u32,
}

impl WatArgs {
    /// Validates the flags into a WAT configuration.
    pub fn to_config(&self) -> Result<crate::wat::WatConfig, crate::error::TestkitError> {
        Ok(crate::wat::WatConfig {
            crawl: self.crawl.clone(),
            header_style: crate::wat::HeaderStyle::for_crawl(&self.crawl),
            target_bytes: Some(self.target_mb.max(1) * 1_000_000),
            n_image_hosts: 2_000,
            faults: parse_faults(&self.faults)?,
            compression: self.compression.min(9),
            ..crate::wat::WatConfig::small(self.web_port, self.seed)
        })
    }
}

fn parse_faults(text: &str) -> Result<FaultMix, crate::error::TestkitError> {
    match text {
        "none" => Ok(FaultMix::None),
        "fast" => Ok(FaultMix::Fast),
        "full" => Ok(FaultMix::Full),
        other => Err(crate::error::TestkitError::Config(format!(
            "unknown fault mix {other:?} (none, fast, full)"
        ))),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Folder for the generated crawl (WAT files and wat.paths.gz).
    #[arg(
        long,
        env = "CAH_TESTKIT_CRAWL_DIR",
        default_value = "target/testkit-crawl"
    )]
    pub crawl_dir: PathBuf,
    /// Crawl id of the generated crawl; it also picks the WAT header style.
    #[arg(long, env = "CAH_TESTKIT_CRAWL", default_value = "CC-MAIN-2024-51")]
    pub crawl: String,
    /// Number of WAT files to generate.
    #[arg(long, env = "CAH_TESTKIT_WAT_FILES", default_value_t = 2)]
    pub wat_files: u32,
    /// Pages per WAT file (three records each).
    #[arg(long, env = "CAH_TESTKIT_PAGES_PER_WAT", default_value_t = 200)]
    pub pages_per_wat: usize,
    /// Faults in generated image URLs: none, fast or full.
    #[arg(long, env = "CAH_TESTKIT_FAULTS", default_value = "fast")]
    pub faults: String,
    /// Seed of everything generated.
    #[arg(long, env = "CAH_TESTKIT_SEED", default_value_t = 2021)]
    pub seed: u64,
    /// Prepared photo folder (default: target/testkit-photos, else generated pictures).
    #[arg(long, env = "CAH_TESTKIT_PHOTOS")]
    pub photos_dir: Option<PathBuf>,
    /// Bearer tokens of the fake Hetzner API, one project each (comma-separated).
    #[arg(
        long,
        env = "CAH_TESTKIT_HETZNER_TOKENS",
        value_delimiter = ',',
        default_value = "testkit-token"
    )]
    pub hetzner_tokens: Vec<String>,
    /// Servers allowed per Hetzner project.
    #[arg(long, env = "CAH_TESTKIT_HETZNER_SERVER_LIMIT", default_value_t = 25)]
    pub server_limit: usize,
    /// Hetzner API requests per hour per project.
    #[arg(long, env = "CAH_TESTKIT_HETZNER_RATE_LIMIT", default_value_t = 3600)]
    pub rate_limit: u32,
    /// Duration of each fake Hetzner action, in milliseconds.
    #[arg(long, env = "CAH_TESTKIT_HETZNER_ACTION_MS", default_value_t = 2000)]
    pub action_delay_ms: u64,
    /// Delay of `slow-` DNS answers, in milliseconds.
    #[arg(long, env = "CAH_TESTKIT_DNS_SLOW_MS", default_value_t = 2000)]
    pub dns_slow_ms: u64,
    /// Pause between the 16-byte chunks of `/drip/` bodies, in milliseconds.
    #[arg(long, env = "CAH_TESTKIT_DRIP_INTERVAL_MS", default_value_t = 250)]
    pub drip_interval_ms: u64,
}

impl ServeArgs {
    /// Validates the flags into a world configuration.
    pub fn to_config(&self) -> Result<WorldConfig, crate::error::TestkitError> {
        let faults = parse_faults(&self.faults)?;
        let tokens: Vec<&String> = self
            .hetzner_tokens
            .iter()
            .filter(|token| !token.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(crate::error::TestkitError::Config(
                "at least one hetzner token is needed".into(),
            ));
        }
        Ok(WorldConfig {
            dns: DnsConfig {
                slow_delay: Duration::from_millis(self.dns_slow_ms),
                ttl: 60,
            },
            web: WebConfig {
                drip_interval: Duration::from_millis(self.drip_interval_ms),
                ..WebConfig::standard()
            },
            hetzner: HetznerConfig {
                projects: tokens
                    .iter()
                    .map(|token| ProjectConfig {
                        token: (*token).clone(),
                        server_limit: self.server_limit,
                    })
                    .collect(),
                rate_limit: self.rate_limit,
                action_delay: Duration::from_millis(self.action_delay_ms),
            },
            crawl_root: self.crawl_dir.clone(),
            crawl: self.crawl.clone(),
            n_wat_files: self.wat_files,
            pages_per_wat: self.pages_per_wat,
            faults,
            seed: self.seed,
        })
    }
}

/// Waits for SIGINT or SIGTERM and logs which arrived.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for sigterm; waiting for sigint only");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!(signal = "SIGINT", "shutting down");
    }
}
