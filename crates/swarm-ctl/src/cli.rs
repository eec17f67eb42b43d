//! Command line of `swarm-ctl`: every flag has a doc comment (its `--help`) and an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

/// Runs a Hetzner Cloud swarm of Crawling@Home scrapers from a laptop: creates labelled servers
/// that install scraper-d with cloud-init, shows their state and tracker heartbeats, reads their
/// logs, restarts and heals them, and deletes them again (only servers carrying our labels).
#[derive(Debug, Parser)]
#[command(name = "swarm-ctl", version, about, long_about = None)]
pub struct Args {
    /// Accounts file (TOML); default `swarm.toml` in the state folder. See deploy/swarm.example.toml.
    #[arg(long, env = "SWARM_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Folder for generated SSH keys, enrollment tokens and known hosts; default the user's config folder plus `swarm-ctl`.
    #[arg(long, env = "SWARM_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Hetzner Cloud API base URL (tests and compatible clouds point elsewhere).
    #[arg(long, env = "HCLOUD_API_URL", default_value = crate::hcloud::DEFAULT_API_URL, global = true, value_parser = parse_api_url)]
    pub api_url: Url,
    /// Swarm name: servers carry the label `swarm=NAME`, several swarms can share accounts.
    #[arg(long, env = "SWARM_NAME", default_value = "default", global = true)]
    pub swarm: String,
    /// Tracker base URL, for heartbeats in `status`, `up --wait-ready` and `heal`.
    #[arg(long, env = "SWARM_TRACKER_URL", global = true, value_parser = cah_tracker_client::parse_http_url)]
    pub tracker: Option<Url>,
    /// Retries of a failed Hetzner API call (429, conflict, timeouts, 502-504).
    #[arg(long, env = "HCLOUD_MAX_RETRIES", default_value_t = 5, global = true)]
    pub api_retries: u32,
    /// First retry delay; doubles per retry (e.g. `1s`, `50ms`); at least 100ms against the
    /// Hetzner API, at most --api-retry-cap.
    #[arg(long, env = "HCLOUD_RETRY_BASE", default_value = "1s", value_parser = humantime::parse_duration, global = true)]
    pub api_retry_base: Duration,
    /// Longest retry delay; at most 10m.
    #[arg(long, env = "HCLOUD_RETRY_CAP", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub api_retry_cap: Duration,
    /// How often to poll actions, servers and the tracker while waiting; at least 1s against the
    /// Hetzner API (each poll is one of a project's 3,600 requests per hour), at most 10m.
    #[arg(long, env = "SWARM_POLL_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    pub poll_interval: Duration,
    /// Give up waiting for servers (and, with `--wait-ready`, tracker heartbeats) after this long;
    /// 1s to 24h.
    #[arg(long, env = "SWARM_WAIT_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub wait_timeout: Duration,
    /// SSH program for `logs`, `restart` and `heal`.
    #[arg(long, env = "SWARM_SSH_COMMAND", default_value = "ssh", global = true)]
    pub ssh_command: String,
    /// SSH port of the nodes.
    #[arg(long, env = "SWARM_SSH_PORT", default_value_t = 22, global = true)]
    pub ssh_port: u16,
    /// SSH user on the nodes (Hetzner installs the swarm key for root).
    #[arg(long, env = "SWARM_SSH_USER", default_value = "root", global = true)]
    pub ssh_user: String,
    /// Connect to this host instead of each node's IPv4 address (a tunnel, a bastion, tests).
    #[arg(long, env = "SWARM_SSH_HOST", global = true)]
    pub ssh_host: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the swarm have N nodes: create only the missing ones, spread over locations and accounts.
    Up(UpArgs),
    /// Delete the swarm's servers (only those carrying our labels); without --yes only show them
    /// (`--yes` must be typed: no environment variable, not even SWARM_YES, arms `down`).
    Down(DownArgs),
    /// Show the swarm's nodes with state, address, cost and tracker heartbeat.
    Status,
    /// Show scraper-d's journal of one node, or of all.
    Logs(LogsArgs),
    /// Restart scraper-d on every node, one node at a time.
    Restart,
    /// Restart, or else recreate, nodes whose tracker heartbeat is stale.
    Heal(HealArgs),
}

/// Flags of `up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Total number of nodes the swarm should have.
    pub count: u32,
    /// Locations to spread over, round-robin (default: every location offering the server type).
    #[arg(long, env = "SWARM_LOCATIONS", value_delimiter = ',')]
    pub location: Vec<String>,
    /// Hetzner server type (validated against /server_types).
    #[arg(long, env = "SWARM_SERVER_TYPE", default_value = "cx22")]
    pub server_type: String,
    /// System image.
    #[arg(long, env = "SWARM_IMAGE", default_value = "debian-12")]
    pub image: String,
    /// Also wait until every new node has reached the tracker (needs --tracker); nodes created
    /// less than --wait-timeout ago by an interrupted `up` count as new.
    #[arg(long, env = "SWARM_WAIT_READY")]
    pub wait_ready: bool,
}

/// Flags of `down`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Really delete; without it, only print what would be deleted.
    /// Command line only: SWARM_YES (which arms `heal`) is ignored here, so a variable exported
    /// for a `heal` cron job never turns a preview `down` into deleting the swarm.
    #[arg(long)]
    pub yes: bool,
}

/// Flags of `logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Node name (as in `status`); or --all.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub node: Option<String>,
    /// Every node, one after another, lines prefixed with the node name.
    #[arg(long, env = "SWARM_LOGS_ALL")]
    pub all: bool,
    /// Number of journal lines per node.
    #[arg(long, env = "SWARM_LOG_LINES", default_value_t = 200)]
    pub lines: u32,
}

/// Flags of `heal`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealArgs {
    /// A node whose last tracker heartbeat is older than this (or that has none) is unhealthy;
    /// at least 1m against the Hetzner API (scraper-d reports every 30 s), at most 30 days.
    #[arg(long, env = "SWARM_STALE_AFTER", default_value = "15m", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
    /// After restarting, wait this long and recreate the restarted nodes that still sent no heartbeat (`0s`: never); at most 1h.
    #[arg(long, env = "SWARM_HEAL_RECHECK_AFTER", default_value = "3m", value_parser = humantime::parse_duration)]
    pub recheck_after: Duration,
    /// Recreate unhealthy nodes without trying a restart first.
    #[arg(long, env = "SWARM_RECREATE")]
    pub recreate: bool,
    /// Really act; without it, only print the unhealthy nodes (SWARM_YES arms `heal` only, never `down`).
    #[arg(long, env = "SWARM_YES")]
    pub yes: bool,
}

/// `--api-url`: an http(s) URL with a host; the errors show API URLs, not tracker ones.
fn parse_api_url(text: &str) -> Result<Url, String> {
    let example = format!(
        "{} (the default) or http://127.0.0.1:PORT/v1 for a local fake",
        crate::hcloud::DEFAULT_API_URL
    );
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        Ok(url) => Err(format!(
            "{url} is not an http(s) URL with a host: give the Hetzner Cloud API's base URL, as in {example}"
        )),
        Err(url::ParseError::RelativeUrlWithoutBase) => Err(format!(
            "no scheme: give the Hetzner Cloud API's base URL with http:// or https://, as in {example}"
        )),
        Err(error) => Err(format!(
            "{error}: give the Hetzner Cloud API's base URL, as in {example}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn api_url_errors_show_api_urls() {
        for bad in ["ftp://x", "api.hetzner.cloud/v1", "http://"] {
            let error = Args::try_parse_from(["swarm-ctl", "--api-url", bad, "status"])
                .expect_err(bad)
                .to_string();
            assert!(
                error.contains("Hetzner Cloud API's base URL")
                    && error.contains("https://api.hetzner.cloud/v1 (the default)")
                    && !error.contains("tracker"),
                "{bad}: {error}"
            );
        }
        let args =
            Args::try_parse_from(["swarm-ctl", "--api-url", "http://127.0.0.1:9/v1", "status"])
                .expect("a fake's url");
        assert_eq!(args.api_url.as_str(), "http://127.0.0.1:9/v1");
    }
}
