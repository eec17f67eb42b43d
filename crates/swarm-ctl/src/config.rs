//! [`Ctl`]: the validated settings of one run, built from [`Args`] and the accounts file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use url::Url;

use crate::accounts::{self, Account, BootstrapSettings};
use crate::cli::Args;
use crate::hcloud::{Hcloud, RetryPolicy};
use crate::journal::Journal;
use crate::ssh::SshSettings;

/// One Hetzner project with its API client.
#[derive(Debug)]
pub struct Project {
    pub account: Account,
    pub api: Hcloud,
}

/// Validated settings shared by every subcommand.
#[derive(Debug)]
pub struct Ctl {
    pub swarm: String,
    pub state_dir: PathBuf,
    /// Accounts in fill order, paused ones (`max_nodes = 0`) included: they get no new servers,
    /// but their existing servers are still listed, counted and deleted.
    pub projects: Vec<Project>,
    pub bootstrap: Option<BootstrapSettings>,
    pub tracker: Option<Url>,
    pub poll_interval: Duration,
    pub wait_timeout: Duration,
    pub ssh: SshSettings,
    /// What this run created and deleted.
    pub journal: Journal,
}

impl Ctl {
    /// Validates `args`, reads the accounts file and builds one API client per account.
    /// `env` looks up the environment variables that hold tokens.
    pub fn from_args(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        validate_swarm_name(&args.swarm)?;
        let state_dir = match &args.state_dir {
            Some(dir) => dir.clone(),
            None => dirs::config_dir()
                .context("cannot find the user's config folder; pass --state-dir")?
                .join("swarm-ctl"),
        };
        let config_path = args
            .config
            .clone()
            .unwrap_or_else(|| state_dir.join("swarm.toml"));
        let file = accounts::load(&config_path, env)?;
        let retry = RetryPolicy {
            max_retries: args.api_retries,
            base: args.api_retry_base,
            cap: args.api_retry_cap,
        };
        let mut projects = Vec::new();
        for account in file.accounts {
            let api = Hcloud::new(&args.api_url, account.token.clone(), retry)
                .with_context(|| format!("account {}", account.name))?;
            projects.push(Project { account, api });
        }
        let private_key = file
            .bootstrap
            .as_ref()
            .and_then(|bootstrap| bootstrap.ssh_key.clone())
            .unwrap_or_else(|| state_dir.join(format!("{}_ed25519", args.swarm)));
        let ssh = SshSettings {
            program: args.ssh_command.clone(),
            port: args.ssh_port,
            user: args.ssh_user.clone(),
            host_override: args.ssh_host.clone(),
            private_key,
            known_hosts: state_dir.join(format!("{}_known_hosts", args.swarm)),
        };
        Ok(Ctl {
            swarm: args.swarm.clone(),
            state_dir,
            projects,
            bootstrap: file.bootstrap,
            tracker: args.tracker.clone(),
            poll_interval: args.poll_interval,
            wait_timeout: args.wait_timeout,
            ssh,
            journal: Journal::default(),
        })
    }

    /// The bootstrap section, or an error that says how to add it.
    pub fn bootstrap(&self) -> anyhow::Result<&BootstrapSettings> {
        self.bootstrap.as_ref().context(
            "the accounts file has no [bootstrap] section (scraper_url, scraper_sha256, tracker_url); \
             see deploy/swarm.example.toml",
        )
    }

    /// The tracker URL, or an error that says how to give it.
    pub fn tracker(&self) -> anyhow::Result<&Url> {
        self.tracker
            .as_ref()
            .context("this needs the tracker's URL: pass --tracker or set SWARM_TRACKER_URL")
    }
}

/// Swarm names go into server names and labels: 1-30 of `a-z`, `0-9`, `-`, alphanumeric at both ends.
pub fn validate_swarm_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!("swarm name {name:?} must be 1-30 characters of a-z, 0-9 and inner '-'");
    }
    Ok(())
}
