//! `swarm-ctl`: runs a Hetzner Cloud swarm of Crawling@Home scrapers safely from a laptop.
//!
//! Layout:
//! - `cli.rs`: [`Args`], every flag with its environment variable.
//! - `config.rs`: [`config::Ctl`], the validated settings and one API client per account.
//! - `accounts.rs`: the TOML accounts file (tokens, nicknames, node caps, bootstrap settings).
//! - `secret.rs`: [`secret::Secret`], a token that never prints.
//! - `hcloud.rs` + `hcloud/`: the Hetzner Cloud API client (typed errors, pagination, rate limits, actions).
//! - `fleet.rs` + `fleet/`: listing, growing (`up`) and deleting (`down`) the labelled servers,
//!   and waiting for them with progress bars (`fleet/wait.rs`).
//! - `bootstrap.rs`: cloud-init user data from `deploy/cloud-init.yaml` and `systemd/scraper-d.service`.
//! - `keys.rs`: the swarm's SSH key and enrollment token.
//! - `status.rs`: the nodes table, prices, and tracker heartbeats; `heal.rs`: restart or recreate stale nodes.
//! - `ssh.rs`: `logs` and `restart` over SSH.
//! - `report.rs`: plain-text tables.
//! - `journal.rs`: what a run changed, for the message of an interrupted one.
//! - `shutdown.rs`: SIGINT, SIGTERM and SIGHUP, which all stop a run with that message.

pub mod accounts;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod hcloud;
pub mod heal;
pub mod journal;
pub mod keys;
pub mod report;
pub mod secret;
pub mod shutdown;
pub mod ssh;
pub mod status;
pub mod telemetry;

use std::io::Write;

pub use cli::{Args, Command};
use config::Ctl;
pub use shutdown::StopSignal;

/// A run stopped by its `shutdown` future (a signal); the message says what the run had
/// changed and which command finishes the job.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Interrupted {
    pub signal: StopSignal,
    pub message: String,
}

/// Runs one command until it ends or `shutdown` completes with the signal that stops it; `env`
/// looks up environment variables named in the accounts file, and everything meant for the
/// user goes to `out`. An interrupted run returns [`Interrupted`]; the error of a failed run
/// that changed servers names them and the command that finishes the job.
pub async fn run(
    args: Args,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    shutdown: impl Future<Output = StopSignal>,
) -> anyhow::Result<()> {
    let ctl = Ctl::from_args(&args, env)?;
    let command = async {
        match &args.command {
            Command::Up(up) => fleet::up(&ctl, up, out).await,
            Command::Down(down) => fleet::down(&ctl, down, out).await,
            Command::Status => status::status(&ctl, out).await,
            Command::Logs(logs) => ssh::logs(&ctl, logs, out).await,
            Command::Restart => ssh::restart(&ctl, out).await,
            Command::Heal(heal) => heal::heal(&ctl, heal, out).await,
        }
    };
    tokio::select! {
        // A failed run that created or deleted servers says which, and how to finish; one
        // out of room says so itself, since running it again as it is cannot finish the job.
        result = command => result.map_err(|error| match ctl.journal.failed(&args.command) {
            Some(changed) if !error.is::<fleet::OutOfRoom>() => error.context(changed),
            _ => error,
        }),
        signal = shutdown => {
            let message = ctl.journal.interrupted(&args.command, signal);
            tracing::info!("{message}");
            Err(Interrupted { signal, message }.into())
        }
    }
}
