//! `swarm-ctl heal`: nodes whose tracker heartbeat is stale (or missing) get scraper-d restarted
//! over SSH; those where that fails (or with `--recreate`) are deleted and created anew.

use std::io::Write;

use anyhow::Context;

use crate::cli::HealArgs;
use crate::config::Ctl;
use crate::fleet::{self, Creator, Node, Outcome};
use crate::report::{self, unix_now};
use crate::ssh::RESTART_COMMAND;
use crate::status;

/// `swarm-ctl heal`.
pub async fn heal(ctl: &Ctl, args: &HealArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = fleet::list_nodes(ctl).await?;
    let beats = status::heartbeats(ctl, &nodes).await?;
    let stale_after = i64::try_from(args.stale_after.as_secs()).unwrap_or(i64::MAX);
    let now = unix_now();
    let unhealthy: Vec<&Node> = nodes
        .iter()
        .filter(|node| node.server.status == "running")
        .filter(|node| {
            // A node younger than the threshold may still be booting.
            let created = report::parse_api_time(&node.server.created)
                .and_then(|time| time.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
            now - created >= stale_after
        })
        .filter(|node| {
            beats
                .get(&node.server.name)
                .is_none_or(|beat| now - beat.last_seen >= stale_after)
        })
        .collect();
    if unhealthy.is_empty() {
        writeln!(
            out,
            "all {} nodes of swarm {} are healthy",
            nodes.len(),
            ctl.swarm
        )?;
        return Ok(());
    }
    for node in &unhealthy {
        let last = beats.get(&node.server.name).map_or_else(
            || "never".to_owned(),
            |beat| format!("{}s ago", now - beat.last_seen),
        );
        writeln!(
            out,
            "{}: unhealthy, last heartbeat {last}",
            node.server.name
        )?;
    }
    if !args.yes {
        writeln!(
            out,
            "dry run: run again with --yes to restart or recreate these {} nodes",
            unhealthy.len()
        )?;
        return Ok(());
    }
    let mut to_recreate = Vec::new();
    let mut restarted = Vec::new();
    for node in unhealthy {
        if args.recreate {
            to_recreate.push(node);
            continue;
        }
        match ctl.ssh.run(node, RESTART_COMMAND).await {
            Ok(_) => {
                writeln!(out, "{}: restarted scraper-d", node.server.name)?;
                restarted.push(node);
            }
            Err(error) => {
                writeln!(
                    out,
                    "{}: restart failed ({error:#}); recreating it",
                    node.server.name
                )?;
                to_recreate.push(node);
            }
        }
    }
    if !restarted.is_empty() && !args.recheck_after.is_zero() {
        // A restart that does not bring the heartbeat back is not enough: recreate those nodes.
        let restarted_at = unix_now();
        tokio::time::sleep(args.recheck_after).await;
        let beats = status::heartbeats(ctl, &nodes).await?;
        for node in restarted {
            let silent = beats
                .get(&node.server.name)
                .is_none_or(|beat| beat.last_seen < restarted_at);
            if silent {
                writeln!(
                    out,
                    "{}: still silent {:?} after the restart; recreating it",
                    node.server.name, args.recheck_after
                )?;
                to_recreate.push(node);
            }
        }
    }
    if to_recreate.is_empty() {
        return Ok(());
    }
    let next_index = nodes
        .iter()
        .filter_map(|node| fleet::node_index(&ctl.swarm, &node.server.name))
        .max()
        .unwrap_or(0)
        + 1;
    let mut creator = Creator::new(ctl, next_index, String::new(), String::new()).await?;
    let mut created = Vec::new();
    for node in to_recreate {
        if fleet::delete_checked(ctl, node).await?.is_none() {
            writeln!(
                out,
                "{}: no longer ours or gone, not recreated",
                node.server.name
            )?;
            continue;
        }
        creator.server_type = node.server.server_type.name.clone();
        creator.image = node
            .server
            .image
            .as_ref()
            .map_or_else(|| "debian-12".to_owned(), |image| image.name.clone());
        match creator
            .create(node.project, &node.server.location.name)
            .await
            .with_context(|| format!("cannot recreate {}", node.server.name))?
        {
            Outcome::Created(new) => {
                writeln!(
                    out,
                    "{}: deleted, replaced by {}",
                    node.server.name, new.server.name
                )?;
                created.push(*new);
            }
            Outcome::AccountFull(reason) | Outcome::LocationUnavailable(reason) => {
                writeln!(
                    out,
                    "{}: deleted, but no replacement could be created: {reason}",
                    node.server.name
                )?;
            }
        }
    }
    fleet::wait_created(ctl, &created).await?;
    Ok(())
}
