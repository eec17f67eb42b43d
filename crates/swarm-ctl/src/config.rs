//! [`Ctl`]: the validated settings of one run, built from [`Args`] and the accounts file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use crate::accounts::{self, Account, BootstrapSettings};
use crate::cli::{Args, Command};
use crate::hcloud::{Hcloud, RetryPolicy};
use crate::journal::Journal;
use crate::ssh::SshSettings;

/// A flag or environment value that cannot work; `main` exits 64 (EX_USAGE) for it, as for the
/// errors clap finds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The accounts file cannot be read or is invalid; `main` exits 78 (EX_CONFIG) for it: the
/// flags were fine, the file needs fixing.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct AccountsFileError(pub anyhow::Error);

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
        check_durations(args)?;
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
        let file = accounts::load(&config_path, env).map_err(AccountsFileError)?;
        let retry = RetryPolicy {
            max_retries: args.api_retries,
            base: args.api_retry_base,
            cap: args.api_retry_cap,
        };
        let mut projects = Vec::new();
        for account in file.accounts {
            let api = Hcloud::new(&args.api_url, account.token.clone(), retry)
                .with_context(|| format!("account {}", account.name))?
                .with_token_origin(format!(
                    "the token of account {}, from {}",
                    account.name, account.token_origin
                ));
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
pub fn validate_swarm_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(UsageError(format!(
            "--swarm (SWARM_NAME) {name:?} must be 1-30 characters of a-z, 0-9 and inner '-'"
        )));
    }
    Ok(())
}

/// The host of the real Hetzner Cloud API. Against it the floors that keep a project inside its
/// 3,600 requests per hour apply; a fake or compatible API at another URL (the tests) may be
/// polled faster.
const HETZNER_API_HOST: &str = "api.hetzner.cloud";

/// One duration flag and the range it must be in.
struct DurationRule {
    flag: &'static str,
    env: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
    /// Why `min` against the Hetzner API, when it is more than "not zero"; empty otherwise.
    why_min: &'static str,
}

/// Refuses durations that are zero or absurd: a zero poll interval spent 800 of a project's 3,600
/// hourly requests on one `up 1`, a zero `--stale-after` takes every node for stale.
fn check_durations(args: &Args) -> Result<(), UsageError> {
    let hetzner = args.api_url.host_str() == Some(HETZNER_API_HOST);
    let millis = Duration::from_millis;
    let secs = Duration::from_secs;
    let budget = "each poll is one of the project's 3,600 requests per hour";
    let mut rules = vec![
        DurationRule {
            flag: "--poll-interval",
            env: "SWARM_POLL_INTERVAL",
            value: args.poll_interval,
            min: if hetzner { secs(1) } else { millis(1) },
            max: secs(600),
            why_min: if hetzner { budget } else { "" },
        },
        DurationRule {
            flag: "--api-retry-base",
            env: "HCLOUD_RETRY_BASE",
            value: args.api_retry_base,
            min: if hetzner { millis(100) } else { millis(1) },
            max: args.api_retry_cap.max(millis(1)),
            why_min: if hetzner {
                "each retry is one of the project's 3,600 requests per hour"
            } else {
                ""
            },
        },
        DurationRule {
            flag: "--api-retry-cap",
            env: "HCLOUD_RETRY_CAP",
            value: args.api_retry_cap,
            min: millis(1),
            max: secs(600),
            why_min: "",
        },
        DurationRule {
            flag: "--wait-timeout",
            env: "SWARM_WAIT_TIMEOUT",
            value: args.wait_timeout,
            min: secs(1),
            max: secs(24 * 3600),
            why_min: "",
        },
    ];
    if let Command::Heal(heal) = &args.command {
        rules.push(DurationRule {
            flag: "--stale-after",
            env: "SWARM_STALE_AFTER",
            value: heal.stale_after,
            min: if hetzner { secs(60) } else { secs(1) },
            max: secs(30 * 24 * 3600),
            why_min: if hetzner {
                "scraper-d reports every 30 s, so a shorter threshold takes healthy nodes for stale"
            } else {
                ""
            },
        });
        // Zero is allowed: it turns the recheck off.
        rules.push(DurationRule {
            flag: "--recheck-after",
            env: "SWARM_HEAL_RECHECK_AFTER",
            value: heal.recheck_after,
            min: Duration::ZERO,
            max: secs(3600),
            why_min: "",
        });
    }
    for rule in rules {
        let show = |duration: Duration| humantime::format_duration(duration).to_string();
        let name = format!("{} ({})", rule.flag, rule.env);
        if rule.value < rule.min {
            let why = if rule.why_min.is_empty() {
                String::new()
            } else {
                format!(" against the Hetzner API ({})", rule.why_min)
            };
            return Err(UsageError(format!(
                "{name} is {}; it must be at least {}{why}",
                show(rule.value),
                show(rule.min)
            )));
        }
        if rule.value > rule.max {
            let bound = if rule.flag == "--api-retry-base" {
                format!("{} (--api-retry-cap)", show(rule.max))
            } else {
                show(rule.max)
            };
            return Err(UsageError(format!(
                "{name} is {}; it must be at most {bound}",
                show(rule.value)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The error of `Ctl::from_args` for `argv`, which names no accounts file that exists.
    fn refusal(argv: &[&str]) -> anyhow::Error {
        let mut full = vec!["swarm-ctl", "--config", "/nonexistent/swarm.toml"];
        full.extend_from_slice(argv);
        let args = Args::try_parse_from(full).expect("flags parse");
        Ctl::from_args(&args, &|_| None).expect_err("refused")
    }

    #[test]
    fn zero_and_absurd_durations_are_usage_errors() {
        let fake = "--api-url=http://127.0.0.1:9/v1";
        let cases: [(&[&str], &str); 10] = [
            (
                &["--poll-interval", "0s", "status"],
                "--poll-interval (SWARM_POLL_INTERVAL) is 0s; it must be at least 1s against the Hetzner API (each poll",
            ),
            (&["--poll-interval", "500ms", "status"], "requests per hour"),
            (&[fake, "--poll-interval", "0s", "status"], "at least 1ms"),
            (
                &["--poll-interval", "2h", "up", "1"],
                "--poll-interval (SWARM_POLL_INTERVAL) is 2h; it must be at most 10m",
            ),
            (
                &["--api-retry-base", "0s", "status"],
                "--api-retry-base (HCLOUD_RETRY_BASE) is 0s; it must be at least 100ms",
            ),
            (
                &["--api-retry-base", "2m", "status"],
                "it must be at most 1m (--api-retry-cap)",
            ),
            (
                &["--api-retry-cap", "1day", "status"],
                "--api-retry-cap (HCLOUD_RETRY_CAP) is 1day; it must be at most 10m",
            ),
            (
                &["--wait-timeout", "0s", "up", "1"],
                "--wait-timeout (SWARM_WAIT_TIMEOUT) is 0s; it must be at least 1s",
            ),
            (
                &["heal", "--stale-after", "0s"],
                "--stale-after (SWARM_STALE_AFTER) is 0s; it must be at least 1m against the Hetzner API (scraper-d reports every 30 s",
            ),
            (
                &["heal", "--recheck-after", "5h"],
                "--recheck-after (SWARM_HEAL_RECHECK_AFTER) is 5h; it must be at most 1h",
            ),
        ];
        for (argv, expected) in cases {
            let error = refusal(argv);
            assert!(error.is::<UsageError>(), "{argv:?}: {error:#}");
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{argv:?}: {message}");
        }
    }

    #[test]
    fn sensible_durations_pass_to_the_accounts_file() {
        let fake = "--api-url=http://127.0.0.1:9/v1";
        let cases: [&[&str]; 5] = [
            &["status"],
            &["--poll-interval", "1s", "up", "1"],
            &[
                fake,
                "--poll-interval",
                "20ms",
                "--api-retry-base",
                "5ms",
                "status",
            ],
            &[fake, "heal", "--stale-after", "1s", "--recheck-after", "0s"],
            &["heal", "--stale-after", "2m"],
        ];
        for argv in cases {
            let error = refusal(argv);
            assert!(
                error.is::<AccountsFileError>() && format!("{error:#}").contains("accounts file"),
                "{argv:?}: {error:#}"
            );
        }
    }
}
