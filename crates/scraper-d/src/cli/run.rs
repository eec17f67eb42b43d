//! Flags of `scraper-d run` (each also a `SCRAPER_*` variable, so systemd's
//! `EnvironmentFile=/etc/cah/scraper-d.env` configures it) and their validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Node name prefixed to progress strings (`NODE: job 17 ...`); the nickname when unset or
    /// empty.
    #[arg(long, env = "SCRAPER_NODE_NAME")]
    pub node_name: Option<String>,
    /// Swarm label written by swarm-ctl (logged only).
    #[arg(long, env = "SCRAPER_SWARM")]
    pub swarm: Option<String>,
    /// Enrollment token written by swarm-ctl (accepted; the tracker protocol does not use it yet).
    #[arg(long, env = "SCRAPER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Folder for bundles (the unit's WorkingDirectory, /var/lib/scraper-d); created when
    /// missing, but only as the last component of the path: its parent must exist.
    #[arg(long, env = "SCRAPER_WORK_DIR", default_value = ".")]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Heartbeat period, at least 1s (well below the tracker's lease).
    #[arg(long, env = "SCRAPER_HEARTBEAT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Wait after an empty claim, a failed claim or a tracker failure, at least 1s.
    #[arg(long, env = "SCRAPER_IDLE_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_wait: Duration,
    /// On SIGTERM, time to finish the current jobs before releasing them (0s releases at once;
    /// keep it 10s below the unit's TimeoutStopSec).
    #[arg(long, env = "SCRAPER_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Compressed bytes read from one WAT before its claim fails (an endless body would grow
    /// memory for ever; a Common Crawl WAT is a few hundred MB).
    #[arg(long, env = "SCRAPER_MAX_WAT_BYTES", default_value_t = crate::source::DEFAULT_MAX_WAT_BYTES)]
    pub max_wat_bytes: u64,
    /// Exit when the tracker has no job.
    #[arg(long, env = "SCRAPER_EXIT_WHEN_IDLE", value_parser = super::EnvBool::off())]
    pub exit_when_idle: bool,
    /// Skip pairs the tracker's `parsed` dedup set already holds (other jobs scraped them), and
    /// add a job's pairs to it once the job is completed. `false` (or `0`, `no`, `off`) scrapes
    /// every pair of a job.
    #[arg(long, env = "SCRAPER_TRACKER_DEDUP", default_value_t = true, action = clap::ArgAction::Set, value_parser = super::EnvBool::on())]
    pub tracker_dedup: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9102).
    #[arg(long, env = "SCRAPER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The shortest `--idle-wait` and `--heartbeat`: at 0 an idle node (or a claim's heartbeat
/// task) calls the tracker in a tight loop, hundreds of times a second.
const MIN_TRACKER_INTERVAL: Duration = Duration::from_secs(1);

/// Refuses a `value` of `--flag` (`variable`) below [`MIN_TRACKER_INTERVAL`]; `otherwise`
/// says what would happen.
fn check_interval(
    flag: &str,
    variable: &str,
    value: Duration,
    otherwise: &str,
) -> Result<(), ScraperError> {
    if value >= MIN_TRACKER_INTERVAL {
        return Ok(());
    }
    Err(ScraperError::Config(format!(
        "--{flag} ({variable}) is {}: it must be at least {}, or {otherwise}",
        humantime::format_duration(value),
        humantime::format_duration(MIN_TRACKER_INTERVAL)
    )))
}

/// Refuses a `--work-dir` that is not a folder, or that is missing and could not be created
/// because its parent is missing too: a typo (`/var/lib/scarper-d/x`) must not grow a tree.
fn check_work_dir(work_dir: &Path) -> Result<(), ScraperError> {
    let refuse = |detail: String| {
        Err(ScraperError::Config(format!(
            "--work-dir (SCRAPER_WORK_DIR) {} {detail}",
            work_dir.display()
        )))
    };
    match std::fs::metadata(work_dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => refuse(
            "is not a folder: point it at a folder (the unit uses /var/lib/scraper-d)".into(),
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // `Path::parent` of a bare name is "", the current folder.
            let parent = work_dir
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match std::fs::metadata(parent) {
                Ok(metadata) if metadata.is_dir() => Ok(()),
                _ => refuse(format!(
                    "does not exist, nor does the folder {} it would be created in: create it, \
                     or fix the path (only the last component is created)",
                    parent.display()
                )),
            }
        }
        Err(error) => refuse(format!("cannot be read: {error}")),
    }
}

/// An optional text flag, trimmed; empty (an env file's `SCRAPER_NODE_NAME=`) is unset: an
/// empty node name made every progress string start with `: `, which swarm-ctl matches to no
/// node.
fn unless_blank(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl TryFrom<RunArgs> for RunConfig {
    type Error = ScraperError;

    fn try_from(args: RunArgs) -> Result<Self, Self::Error> {
        if args.nickname.trim().is_empty() {
            return Err(ScraperError::Config(
                "--nickname (SCRAPER_NICKNAME) must not be empty: it names this scraper on the \
                 tracker's leaderboard"
                    .into(),
            ));
        }
        check_interval(
            "idle-wait",
            "SCRAPER_IDLE_WAIT",
            args.idle_wait,
            "an idle node asks the tracker for jobs in a tight loop (default 30s)",
        )?;
        check_interval(
            "heartbeat",
            "SCRAPER_HEARTBEAT",
            args.heartbeat,
            "every claim heartbeats the tracker in a tight loop (default 30s)",
        )?;
        check_work_dir(&args.work_dir)?;
        let mut settings = args.download.settings()?;
        let filters = args.filters.config()?;
        // Redirects must not lead where the WAT's own links may not.
        settings.fetch.blocklist = filters.blocklist.clone();
        let node_name = unless_blank(args.node_name).unwrap_or_else(|| args.nickname.clone());
        if let Some(swarm) = &unless_blank(args.swarm) {
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
            tail: settings.tail,
            heartbeat_interval: args.heartbeat,
            idle_wait: args.idle_wait,
            shutdown_grace: args.shutdown_grace,
            exit_when_idle: args.exit_when_idle,
            tracker_dedup: args.tracker_dedup,
            metrics_listen: args.metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn run_config(flags: &[&str]) -> Result<RunConfig, ScraperError> {
        run_config_of("test", flags)
    }

    fn run_config_of(nickname: &str, flags: &[&str]) -> Result<RunConfig, ScraperError> {
        let start = [
            "scraper-d",
            "run",
            "--tracker",
            "http://127.0.0.1:9/",
            "--nickname",
            nickname,
        ];
        let argv = start.iter().chain(flags).copied();
        let args = crate::cli::Args::try_parse_from(argv).expect("flags parse");
        let crate::cli::Command::Run(run) = args.command else {
            panic!("not a run command");
        };
        RunConfig::try_from(*run)
    }

    #[test]
    fn blank_text_flags_are_unset() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "test"),
            (&["--node-name", ""], "test"),
            (&["--node-name", "  "], "test"),
            (&["--node-name", " node-7 "], "node-7"),
            (&["--node-name", "node-7", "--swarm", ""], "node-7"),
        ];
        for (flags, node_name) in cases {
            let config = run_config(flags).expect("valid");
            assert_eq!(config.node_name, *node_name, "{flags:?}");
        }
        let config = run_config(&["--contact-url", " "]).expect("valid");
        assert!(
            config.fetch.user_agent.ends_with(&format!(
                "+{})",
                super::super::download::DEFAULT_CONTACT_URL
            )),
            "{}",
            config.fetch.user_agent
        );
        let refused = run_config_of(" ", &[]).expect_err("blank nickname");
        assert!(
            refused
                .to_string()
                .contains("--nickname (SCRAPER_NICKNAME)"),
            "{refused}"
        );
    }

    #[test]
    fn opt_outs_are_honoured_unless_a_flag_says_otherwise() {
        let config = run_config(&[]).expect("valid");
        assert!(config.fetch.politeness.respect_robots);
        assert!(config.fetch.politeness.respect_tdm_reservation);
        let config = run_config(&["--ignore-tdm-reservation"]).expect("valid");
        assert!(!config.fetch.politeness.respect_tdm_reservation);
        assert!(config.fetch.politeness.respect_robots);
    }

    #[test]
    fn tracker_intervals_below_a_second_are_refused() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["--idle-wait", "1s", "--heartbeat", "1s"], None),
            (&["--shutdown-grace", "0s"], None),
            (
                &["--idle-wait", "0s"],
                Some("--idle-wait (SCRAPER_IDLE_WAIT) is 0s"),
            ),
            (
                &["--idle-wait", "999ms"],
                Some("--idle-wait (SCRAPER_IDLE_WAIT) is 999ms"),
            ),
            (
                &["--heartbeat", "0s"],
                Some("--heartbeat (SCRAPER_HEARTBEAT) is 0s"),
            ),
            (
                &["--heartbeat", "200ms"],
                Some("--heartbeat (SCRAPER_HEARTBEAT) is 200ms"),
            ),
        ];
        for (flags, refusal) in cases {
            match (run_config(flags), refusal) {
                (Ok(_), None) => {}
                (Err(ScraperError::Config(message)), Some(start)) => {
                    assert!(message.starts_with(start), "{flags:?}: {message}");
                    assert!(message.contains("at least 1s"), "{flags:?}: {message}");
                }
                (got, _) => panic!("{flags:?}: {got:?}"),
            }
        }
    }
}
