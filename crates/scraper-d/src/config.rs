//! The configuration of `scraper-d run`, built from flags and `SCRAPER_*` variables
//! (see `cli/run.rs`) or directly by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::fetch::FetchConfig;
use crate::filters::FilterConfig;
use crate::job::TailPolicy;
use crate::resize::ResizeConfig;
use crate::resolver::ResolverSettings;
use crate::safety::AddressPolicy;
use crate::source::HttpConfig;
use crate::validate::ValidateConfig;

/// Everything the daemon needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URL of tracker-d.
    pub tracker: url::Url,
    /// The nickname registered with the tracker (leaderboard).
    pub nickname: String,
    /// Prefix of every progress string (`{node}: job 17 downloading 12/34`); swarm-ctl matches
    /// nodes by it.
    pub node_name: String,
    /// Folder for bundles being written and uploaded.
    pub work_dir: PathBuf,
    pub resolver: ResolverSettings,
    pub policy: AddressPolicy,
    pub fetch: FetchConfig,
    pub validate: ValidateConfig,
    pub resize: ResizeConfig,
    pub filters: FilterConfig,
    /// Retry settings of the WAT download.
    pub wat_http: HttpConfig,
    /// Images decoded and resized at once (default: available CPUs).
    pub decode_threads: usize,
    /// Images downloaded at once per job half.
    pub concurrency: usize,
    /// How long the last images of a half may take.
    pub tail: TailPolicy,
    /// Heartbeat period (default 30 s); a heartbeat is also sent on every phase change.
    pub heartbeat_interval: Duration,
    /// Wait after an empty claim or a tracker failure (default 30 s).
    pub idle_wait: Duration,
    /// On SIGTERM, time to finish the current jobs before releasing them (default 20 s, below
    /// the unit's `TimeoutStopSec=30`).
    pub shutdown_grace: Duration,
    /// Stop when a claim finds no job (tests and one-shot runs).
    pub exit_when_idle: bool,
    /// Cross-job dedup through the tracker's `parsed` set (see [`crate::dedup`]).
    pub tracker_dedup: bool,
    /// Serve Prometheus metrics here.
    pub metrics_listen: Option<SocketAddr>,
}

/// The image download part of a configuration, shared by `run` and `fetch`.
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    pub resolver: ResolverSettings,
    pub policy: AddressPolicy,
    pub fetch: FetchConfig,
    pub validate: ValidateConfig,
    pub resize: ResizeConfig,
    pub decode_threads: usize,
    pub concurrency: usize,
    /// How long the last images of a half may take.
    pub tail: TailPolicy,
}
