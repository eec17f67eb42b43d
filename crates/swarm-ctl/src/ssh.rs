//! `logs` and `restart` over SSH: `journalctl -u scraper-d` and `systemctl restart scraper-d`.
//!
//! swarm-ctl runs the system `ssh` (or `--ssh-command`) with the swarm's key, batch mode, and a
//! known-hosts file of its own that accepts a node's key the first time it is seen.
//! Hetzner hands released IPv4 addresses to new servers, so swarm-ctl forgets an address's keys
//! (`ssh-keygen -R`) whenever it creates or deletes a server there; a key that still changed is
//! reported as [`HostKeyChanged`], never taken for an unreachable node.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::cli::LogsArgs;
use crate::config::Ctl;
use crate::fleet::{self, Node};

/// The remote command of `restart` (and of `heal` before it recreates).
pub const RESTART_COMMAND: &str = "systemctl restart scraper-d && systemctl is-active scraper-d";

/// How to reach the nodes.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub program: String,
    pub port: u16,
    pub user: String,
    /// Connect here instead of each node's address.
    pub host_override: Option<String>,
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
}

/// SSH refused a node because its host key differs from the one the swarm's known-hosts file
/// holds for that address: normally a new server on a recycled address, possibly interception.
#[derive(Debug, thiserror::Error)]
#[error(
    "the host key of {node} ({entry}) differs from the one in {known_hosts}: the address was probably \
     reused by a new server (Hetzner recycles IPs), or someone is intercepting the connection; if {node} \
     is new, check it in the Hetzner console, then run `ssh-keygen -R '{entry}' -f '{known_hosts}'` and try again"
)]
pub struct HostKeyChanged {
    pub node: String,
    /// The host as known-hosts names it: `HOST`, or `[HOST]:PORT` off port 22.
    pub entry: String,
    pub known_hosts: PathBuf,
}

/// Whether OpenSSH's stderr says that it refused a changed host key.
pub fn is_host_key_change(stderr: &str) -> bool {
    stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Host key verification failed")
}

/// The remote command of `logs`.
pub fn logs_command(lines: u32) -> String {
    format!("journalctl -u scraper-d --no-pager --output=short-iso -n {lines}")
}

impl SshSettings {
    /// The full argument list (without the program) to run `remote` on `host`.
    pub fn argv(&self, host: &str, remote: &str) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["-p".into(), self.port.to_string().into(), "-i".into()];
        argv.push(self.private_key.clone().into());
        for option in [
            "IdentitiesOnly=yes".to_owned(),
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=accept-new".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "ConnectTimeout=10".to_owned(),
            "LogLevel=ERROR".to_owned(),
        ] {
            argv.push("-o".into());
            argv.push(option.into());
        }
        argv.push("-l".into());
        argv.push(self.user.clone().into());
        argv.push(host.into());
        argv.push("--".into());
        argv.push(remote.into());
        argv
    }

    /// How known-hosts names `host` on our port.
    pub fn known_hosts_entry(&self, host: &str) -> String {
        if self.port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{}", self.port)
        }
    }

    /// Removes every key of `ip` from the swarm's known-hosts file (`ssh-keygen -R`, which also
    /// finds hashed entries), so a new server on a recycled address is not refused.
    /// A failure is logged, not returned: it must not stop creating or deleting servers.
    pub async fn forget_host(&self, ip: &str) {
        if !std::fs::exists(&self.known_hosts).unwrap_or(true) {
            return;
        }
        let mut entries = vec![ip.to_owned()];
        if self.port != 22 {
            entries.push(self.known_hosts_entry(ip));
        }
        for entry in entries {
            if let Err(error) = forget_entry(&self.known_hosts, &entry).await {
                tracing::warn!(%entry, known_hosts = %self.known_hosts.display(), error = %format_args!("{error:#}"), "cannot remove an old host key");
            }
        }
    }

    /// Where to connect for `node`.
    pub fn host_of(&self, node: &Node) -> anyhow::Result<String> {
        if let Some(host) = &self.host_override {
            return Ok(host.clone());
        }
        node.server.ipv4().map(str::to_owned).with_context(|| {
            format!(
                "node {} has no IPv4 address to connect to",
                node.server.name
            )
        })
    }

    /// Runs `remote` on `node`; its stdout on success, an error with its stderr otherwise.
    pub async fn run(&self, node: &Node, remote: &str) -> anyhow::Result<String> {
        let host = self.host_of(node)?;
        let output = tokio::process::Command::new(&self.program)
            .args(self.argv(&host, remote))
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| {
                format!(
                    "cannot run {}; install OpenSSH's client or pass --ssh-command",
                    self.program
                )
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if is_host_key_change(&stderr) {
                return Err(HostKeyChanged {
                    node: node.server.name.clone(),
                    entry: self.known_hosts_entry(&host),
                    known_hosts: self.known_hosts.clone(),
                }
                .into());
            }
            bail!(
                "`{remote}` on {} ({host}) failed ({}): {}",
                node.server.name,
                output.status,
                stderr.trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `ssh-keygen -R entry -f known_hosts`.
async fn forget_entry(known_hosts: &Path, entry: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("ssh-keygen")
        .arg("-R")
        .arg(entry)
        .arg("-f")
        .arg(known_hosts)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run ssh-keygen; install OpenSSH's client tools")?;
    if !output.status.success() {
        bail!(
            "ssh-keygen -R failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `swarm-ctl logs NODE|--all`.
pub async fn logs(ctl: &Ctl, args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = fleet::list_nodes(ctl).await?;
    let chosen: Vec<&Node> = match &args.node {
        Some(name) => {
            let node = nodes
                .iter()
                .find(|node| node.server.name == *name)
                .with_context(|| {
                    let names: Vec<&str> =
                        nodes.iter().map(|node| node.server.name.as_str()).collect();
                    format!(
                        "swarm {} has no node {name}; its nodes: {}",
                        ctl.swarm,
                        names.join(", ")
                    )
                })?;
            vec![node]
        }
        None => nodes.iter().collect(),
    };
    let remote = logs_command(args.lines);
    let mut failures = 0;
    for node in chosen {
        match ctl.ssh.run(node, &remote).await {
            Ok(text) if args.all => {
                for line in text.lines() {
                    writeln!(out, "{} | {line}", node.server.name)?;
                }
            }
            Ok(text) => write!(out, "{text}")?,
            Err(error) if args.all => {
                failures += 1;
                writeln!(out, "{} | error: {error:#}", node.server.name)?;
            }
            Err(error) => return Err(error),
        }
    }
    if failures > 0 {
        bail!("could not read the logs of {failures} nodes");
    }
    Ok(())
}

/// `swarm-ctl restart`: one node after another, so the swarm never stops as a whole.
pub async fn restart(ctl: &Ctl, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = fleet::list_nodes(ctl).await?;
    let mut failed = Vec::new();
    for node in &nodes {
        match ctl.ssh.run(node, RESTART_COMMAND).await {
            Ok(state) => writeln!(out, "{}: restarted ({})", node.server.name, state.trim())?,
            Err(error) => {
                writeln!(out, "{}: restart failed: {error:#}", node.server.name)?;
                failed.push(node.server.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "restart failed on {}; try `swarm-ctl heal`, which recreates nodes that stay silent",
            failed.join(", ")
        );
    }
    writeln!(out, "restarted scraper-d on {} nodes", nodes.len())?;
    Ok(())
}
