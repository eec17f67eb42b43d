//! Flags of `scraper-d run` (each also a `SCRAPER_*` variable, so systemd's
//! `EnvironmentFile=/etc/cah/scraper-d.env` configures it) and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{DownloadArgs, FilterArgs};
use crate::config::RunConfig;
use crate::error::ScraperError;
use crate::source::HttpConfig;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Base URL of the tracker.
    #[arg(long, env = "SCRAPER_TRACKER_URL", value_parser = cah_tracker_client::parse_http_url)]
    pub tracker: url::Url,
    /// Nickname shown on the leaderboard.
    #[arg(long, env = "SCRAPER_NICKNAME")]
    pub nickname: String,
    /// Node name prefixed to progress strings (`NODE: job 17 ...`); the nickname when unset.
    #[arg(long, env = "SCRAPER_NODE_NAME")]
    pub node_name: Option<String>,
    /// Swarm label written by swarm-ctl (logged only).
    #[arg(long, env = "SCRAPER_SWARM")]
    pub swarm: Option<String>,
    /// Enrollment token written by swarm-ctl (accepted; the tracker protocol does not use it yet).
    #[arg(long, env = "SCRAPER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Folder for bundles (the unit's WorkingDirectory, /var/lib/scraper-d).
    #[arg(long, env = "SCRAPER_WORK_DIR", default_value = ".")]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Heartbeat period.
    #[arg(long, env = "SCRAPER_HEARTBEAT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Wait after an empty claim or a tracker failure.
    #[arg(long, env = "SCRAPER_IDLE_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_wait: Duration,
    /// On SIGTERM, time to finish the current jobs before releasing them (below TimeoutStopSec).
    #[arg(long, env = "SCRAPER_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Compressed bytes read from one WAT before its claim fails (an endless body would grow
    /// memory for ever; a Common Crawl WAT is a few hundred MB).
    #[arg(long, env = "SCRAPER_MAX_WAT_BYTES", default_value_t = crate::source::DEFAULT_MAX_WAT_BYTES)]
    pub max_wat_bytes: u64,
    /// Exit when the tracker has no job.
    #[arg(long, env = "SCRAPER_EXIT_WHEN_IDLE")]
    pub exit_when_idle: bool,
    /// Skip pairs the tracker's `parsed` dedup set already holds (other jobs scraped them), and
    /// add a job's pairs to it once the job is completed. `false` scrapes every pair of a job.
    #[arg(long, env = "SCRAPER_TRACKER_DEDUP", default_value_t = true, action = clap::ArgAction::Set)]
    pub tracker_dedup: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9102).
    #[arg(long, env = "SCRAPER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl TryFrom<RunArgs> for RunConfig {
    type Error = ScraperError;

    fn try_from(args: RunArgs) -> Result<Self, Self::Error> {
        if args.nickname.trim().is_empty() {
            return Err(ScraperError::Config("--nickname must not be empty".into()));
        }
        let mut settings = args.download.settings()?;
        let filters = args.filters.config()?;
        // Redirects must not lead where the WAT's own links may not.
        settings.fetch.blocklist = filters.blocklist.clone();
        let node_name = args.node_name.unwrap_or_else(|| args.nickname.clone());
        if let Some(swarm) = &args.swarm {
            tracing::info!(swarm = %swarm, node = %node_name, "swarm member");
        }
        Ok(RunConfig {
            tracker: args.tracker,
            nickname: args.nickname,
            node_name,
            work_dir: args.work_dir,
            resolver: settings.resolver,
            policy: settings.policy,
            fetch: settings.fetch,
            validate: settings.validate,
            resize: settings.resize,
            filters,
            wat_http: HttpConfig {
                max_bytes: args.max_wat_bytes,
                ..HttpConfig::standard()
            },
            decode_threads: settings.decode_threads,
            concurrency: settings.concurrency,
            heartbeat_interval: args.heartbeat,
            idle_wait: args.idle_wait,
            shutdown_grace: args.shutdown_grace,
            exit_when_idle: args.exit_when_idle,
            tracker_dedup: args.tracker_dedup,
            metrics_listen: args.metrics_listen,
        })
    }
}
