//! `swarm-ctl heal`: nodes whose tracker heartbeat is stale (or missing) get scraper-d restarted
//! over SSH; those where that fails (or with `--recreate`) are deleted and created anew.
//! A changed host key is not a failed node: it is reported with the fix and nothing is recreated.

use std::io::Write;

use anyhow::{Context, bail};

use crate::accounts::NodeCap;
use crate::cli::HealArgs;
use crate::config::Ctl;
use crate::fleet::{self, Creator, Node, Outcome};
use crate::report::{self, unix_now};
use crate::ssh::{HostKeyChanged, RESTART_COMMAND};
use crate::status;

/// `swarm-ctl heal`.
pub async fn heal(ctl: &Ctl, args: &HealArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = fleet::list_nodes(ctl).await?;
    let stale_after = i64::try_from(args.stale_after.as_secs()).unwrap_or(i64::MAX);
    let now = unix_now();
    let beats = status::heartbeats_of_silent(
        ctl,
        &nodes,
        now.saturating_sub(stale_after),
        "heal restarts and recreates nothing, since it cannot tell stale nodes from healthy ones",
    )
    .await?;
    // A node younger than the threshold may still be booting.
    let young = |node: &Node| {
        let created = report::parse_api_time(&node.server.created)
            .and_then(|time| time.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
        now - created < stale_after
    };
    let fresh = |node: &Node| {
        beats
            .get(&node.server.name)
            .is_some_and(|beat| now - beat.last_seen < stale_after)
    };
    let running = || nodes.iter().filter(|node| node.server.status == "running");
    let unhealthy: Vec<&Node> = running()
        .filter(|node| !young(node) && !fresh(node))
        .collect();
    if unhealthy.is_empty() {
        let booting: Vec<&str> = running()
            .filter(|node| young(node) && !fresh(node))
            .map(|node| node.server.name.as_str())
            .collect();
        let stopped: Vec<String> = nodes
            .iter()
            .filter(|node| node.server.status != "running")
            .map(|node| format!("{} is {}", node.server.name, node.server.status))
            .collect();
        if booting.is_empty() && stopped.is_empty() {
            writeln!(
                out,
                "all {} nodes of swarm {} are healthy",
                nodes.len(),
                ctl.swarm
            )?;
            return Ok(());
        }
        let healthy = running().filter(|node| fresh(node)).count();
        let mut parts = vec![format!("{healthy} of {} nodes healthy", nodes.len())];
        if !booting.is_empty() {
            parts.push(format!(
                "{} not reported to the tracker yet, probably still booting (younger than --stale-after {}: {})",
                booting.len(),
                humantime::format_duration(args.stale_after),
                booting.join(", ")
            ));
        }
        if !stopped.is_empty() {
            parts.push(format!(
                "{} not running ({}), which heal leaves alone",
                stopped.len(),
                stopped.join(", ")
            ));
        }
        writeln!(
            out,
            "nothing to heal in swarm {}: {}",
            ctl.swarm,
            parts.join("; ")
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
    let mut key_changed = Vec::new();
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
                if let Some(changed) = error.downcast_ref::<HostKeyChanged>() {
                    // Not a dead node: SSH refused a new key on a known address. Recreating
                    // would destroy a possibly healthy server and hide a possible interception.
                    writeln!(
                        out,
                        "{}: not restarted and not recreated: {changed}",
                        node.server.name
                    )?;
                    key_changed.push(node.server.name.clone());
                    continue;
                }
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
        let names: Vec<&str> = restarted
            .iter()
            .map(|node| node.server.name.as_str())
            .collect();
        let refusal = format!(
            "restarted {}, but recreates none of them, not knowing which stayed silent",
            names.join(", ")
        );
        let beats = status::heartbeats_of_silent(ctl, &nodes, restarted_at, &refusal).await?;
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
    let unreplaced = if to_recreate.is_empty() {
        Vec::new()
    } else {
        recreate(ctl, &nodes, &to_recreate, out).await?
    };
    let mut failures = Vec::new();
    if !unreplaced.is_empty() {
        failures.push(format!(
            "deleted {} but could not create a replacement (see above); `swarm-ctl up {}` brings the swarm back to {} nodes once there is room",
            unreplaced.join(", "),
            nodes.len(),
            nodes.len()
        ));
    }
    if !key_changed.is_empty() {
        failures.push(format!(
            "host keys changed on {}; see above for how to accept the new keys",
            key_changed.join(", ")
        ));
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Deletes `to_recreate` (labels re-checked) and creates each anew under a fresh name with the
/// same type, location and image, in the same account unless that one is paused or full (then in
/// the first other account with room, as `up` does; a snapshot stays in its own account).
/// Returns the nodes deleted without a replacement.
async fn recreate(
    ctl: &Ctl,
    nodes: &[Node],
    to_recreate: &[&Node],
    out: &mut dyn Write,
) -> anyhow::Result<Vec<String>> {
    let next_index = nodes
        .iter()
        .filter_map(|node| fleet::node_index(&ctl.swarm, &node.server.name))
        .max()
        .unwrap_or(0)
        + 1;
    let mut per_project = vec![0usize; ctl.projects.len()];
    for node in nodes {
        per_project[node.project] += 1;
    }
    let mut creator = Creator::new(ctl, next_index, String::new(), String::new()).await?;
    let mut created = Vec::new();
    let mut unreplaced = Vec::new();
    for node in to_recreate {
        let name = &node.server.name;
        // Decided before deleting: a node that cannot be rebuilt is left alone.
        let Some(image) = node.server.image_ref() else {
            writeln!(
                out,
                "{name}: not recreated: its image was deleted, so it cannot be built again as it was; \
                 delete it in the Hetzner console and run `swarm-ctl up` with --image"
            )?;
            continue;
        };
        if fleet::delete_checked(ctl, node).await?.is_none() {
            writeln!(out, "{name}: no longer ours or gone, not recreated")?;
            continue;
        }
        per_project[node.project] = per_project[node.project].saturating_sub(1);
        // A paused account (max_nodes = 0) gets no new servers: the replacement goes to the
        // first account with room. A snapshot (no image name) only exists in its own account.
        let own_account = &ctl.projects[node.project].account;
        let snapshot = node
            .server
            .image
            .as_ref()
            .is_some_and(|image| image.name.is_none());
        let target = if own_account.cap != NodeCap::Paused {
            Some(node.project)
        } else if snapshot {
            None
        } else {
            (0..ctl.projects.len())
                .find(|index| ctl.projects[*index].account.cap.room(per_project[*index]) != Some(0))
        };
        let Some(target) = target else {
            writeln!(
                out,
                "{name}: deleted; no replacement: account {} is paused (max_nodes = 0) and no other account can take it",
                own_account.name
            )?;
            unreplaced.push(name.clone());
            continue;
        };
        creator.server_type = node.server.server_type.name.clone();
        creator.image = image;
        let mut target = target;
        let mut tried = vec![target];
        let outcome = loop {
            let outcome = creator
                .create(target, &node.server.location.name)
                .await
                .with_context(|| format!("cannot recreate {name}"))?;
            // A full account: the next one with room takes it, unless it is a snapshot.
            let next = (0..ctl.projects.len()).find(|index| {
                !tried.contains(index)
                    && ctl.projects[*index].account.cap.room(per_project[*index]) != Some(0)
            });
            match (&outcome, next) {
                (Outcome::AccountFull(reason), Some(next)) if !snapshot => {
                    writeln!(
                        out,
                        "account {} is at its server limit ({reason}); trying account {}",
                        ctl.projects[target].account.name, ctl.projects[next].account.name
                    )?;
                    tried.push(next);
                    target = next;
                }
                _ => break outcome,
            }
        };
        match outcome {
            Outcome::Created(new) => {
                per_project[target] += 1;
                let moved = if target == node.project {
                    String::new()
                } else {
                    let why = if own_account.cap == NodeCap::Paused {
                        "paused"
                    } else {
                        "full"
                    };
                    format!(
                        " in account {} ({} is {why})",
                        ctl.projects[target].account.name, own_account.name
                    )
                };
                writeln!(
                    out,
                    "{name}: deleted, replaced by {}{moved}",
                    new.server.name
                )?;
                created.push(*new);
            }
            Outcome::AccountFull(reason) | Outcome::LocationUnavailable(reason) => {
                writeln!(
                    out,
                    "{name}: deleted, but no replacement could be created: {reason}"
                )?;
                unreplaced.push(name.clone());
            }
        }
    }
    fleet::wait_created(ctl, &created).await?;
    Ok(unreplaced)
}
