//! The swarm as a set of labelled servers: listing it, growing it (`up`) and deleting it (`down`).
//!
//! Only servers carrying both `managed-by=cah-swarm` and `swarm=NAME` are ever counted, changed or
//! deleted; the labels are checked client-side after every list and again just before a delete.

mod create;
mod delete;
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::{Context, bail};

pub(crate) use create::{Created, Creator, Outcome};
pub(crate) use delete::delete_checked;
pub use delete::down;
pub(crate) use wait::{progress_bar, wait_actions_by_account, wait_created};

use crate::accounts::NodeCap;
use crate::cli::UpArgs;
use crate::config::Ctl;
use crate::hcloud::{Server, ServerType};
use crate::status;

/// The label every server we create carries.
pub const MANAGED_BY: (&str, &str) = ("managed-by", "cah-swarm");
/// The label naming the swarm.
pub const SWARM_LABEL: &str = "swarm";
/// The label naming the account (its entry in the accounts file).
pub const ACCOUNT_LABEL: &str = "account";

/// `up` could not create every missing node because every account is full. Its message says
/// what this run created and what makes room, so no "run it again" is added to it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutOfRoom(String);

/// One server of the swarm and the account it lives in.
#[derive(Debug, Clone)]
pub struct Node {
    /// Index into [`Ctl::projects`].
    pub project: usize,
    pub server: Server,
}

/// `managed-by=cah-swarm,swarm=NAME`.
pub fn label_selector(swarm: &str) -> String {
    format!("{}={},{SWARM_LABEL}={swarm}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Whether `labels` say the server belongs to `swarm` (the client-side check).
pub fn is_ours(labels: &BTreeMap<String, String>, swarm: &str) -> bool {
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(SWARM_LABEL).map(String::as_str) == Some(swarm)
}

/// `cah-SWARM-N`.
pub fn node_name(swarm: &str, index: u32) -> String {
    format!("cah-{swarm}-{index}")
}

/// N of `cah-SWARM-N`.
pub fn node_index(swarm: &str, name: &str) -> Option<u32> {
    name.strip_prefix(&format!("cah-{swarm}-"))?.parse().ok()
}

/// Every node of the swarm in every account, without those being deleted, ordered by name index.
pub async fn list_nodes(ctl: &Ctl) -> anyhow::Result<Vec<Node>> {
    let mut nodes = list_servers(ctl).await?;
    nodes.retain(|node| node.server.status != "deleting");
    Ok(nodes)
}

/// Every server of the swarm in every account, those being deleted too (they still hold their
/// names), ordered by name index.
async fn list_servers(ctl: &Ctl) -> anyhow::Result<Vec<Node>> {
    let selector = label_selector(&ctl.swarm);
    let mut nodes = Vec::new();
    for (index, project) in ctl.projects.iter().enumerate() {
        let servers =
            project.api.list_servers(&selector).await.with_context(|| {
                format!("cannot list servers of account {}", project.account.name)
            })?;
        nodes.extend(
            servers
                .into_iter()
                .filter(|server| is_ours(&server.labels, &ctl.swarm))
                .map(|server| Node {
                    project: index,
                    server,
                }),
        );
    }
    nodes.sort_by_key(|node| (node_index(&ctl.swarm, &node.server.name), node.server.id));
    Ok(nodes)
}

/// `swarm-ctl up N`.
pub async fn up(ctl: &Ctl, args: &UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.wait_ready {
        ctl.tracker()?;
    }
    let mut existing = list_servers(ctl).await?;
    // A server being deleted is no node any more, but it keeps its name until it is gone: new
    // names start past it.
    let next_index = existing
        .iter()
        .filter_map(|node| node_index(&ctl.swarm, &node.server.name))
        .max()
        .unwrap_or(0)
        + 1;
    existing.retain(|node| node.server.status != "deleting");
    let wanted = args.count as usize;
    let types = ctl.projects[0]
        .api
        .server_types()
        .await
        .context("cannot read the server types")?;
    if existing.len() >= wanted {
        writeln!(
            out,
            "swarm {} already has {} nodes ({wanted} asked); nothing to create (`swarm-ctl down` removes nodes)",
            ctl.swarm,
            existing.len()
        )?;
        // An earlier `up` that was interrupted may have left nodes booting: `up` still returns
        // only once they run (and, with --wait-ready, have reached the tracker).
        let existing = settle(ctl, args, &[], &existing).await?;
        write_nodes(ctl, &existing, &types, out).await?;
        let stopped: Vec<String> = existing
            .iter()
            .filter(|node| {
                !matches!(
                    node.server.status.as_str(),
                    "running" | "initializing" | "starting"
                )
            })
            .map(|node| format!("{} is {}", node.server.name, node.server.status))
            .collect();
        if !stopped.is_empty() {
            writeln!(
                out,
                "{} of them do not run ({}): `swarm-ctl heal` restarts or recreates them",
                stopped.len(),
                stopped.join(", ")
            )?;
        }
        return Ok(());
    }
    let server_type = types
        .iter()
        .find(|candidate| candidate.name == args.server_type)
        .with_context(|| {
            let names: Vec<&str> = types.iter().map(|known| known.name.as_str()).collect();
            format!(
                "unknown server type {}; known: {}",
                args.server_type,
                names.join(", ")
            )
        })?;
    let mut locations = choose_locations(server_type, &args.location)?;
    let mut per_location: HashMap<String, usize> = HashMap::new();
    let mut per_project = vec![0usize; ctl.projects.len()];
    for node in &existing {
        *per_location
            .entry(node.server.location.name.clone())
            .or_default() += 1;
        per_project[node.project] += 1;
    }
    let mut creator = Creator::new(
        ctl,
        next_index,
        server_type.name.clone(),
        args.image.clone(),
    )
    .await?;
    let mut missing = wanted - existing.len();
    let mut created: Vec<Created> = Vec::new();
    writeln!(
        out,
        "swarm {}: {} nodes, creating {missing}",
        ctl.swarm,
        existing.len()
    )?;
    let bar = progress_bar(missing as u64, "creating");
    // Why each account took no more nodes, for the error when they all ran out of room.
    let mut full: Vec<String> = Vec::new();
    'accounts: for (project_index, project) in ctl.projects.iter().enumerate() {
        let name = &project.account.name;
        let mut room = project.account.cap.room(per_project[project_index]);
        while missing > 0 && room != Some(0) {
            let Some(location) = pick_location(&locations, &per_location) else {
                break 'accounts;
            };
            match creator.create(project_index, &location).await? {
                Outcome::Created(node) => {
                    *per_location
                        .entry(node.server.location.name.clone())
                        .or_default() += 1;
                    per_project[project_index] += 1;
                    room = room.map(|room| room - 1);
                    missing -= 1;
                    bar.inc(1);
                    created.push(*node);
                }
                Outcome::AccountFull(reason) => {
                    writeln!(
                        out,
                        "account {name} is at its server limit ({reason}); moving on"
                    )?;
                    full.push(format!("{name} is at its Hetzner server limit"));
                    break;
                }
                Outcome::LocationUnavailable(reason) => {
                    writeln!(
                        out,
                        "{} is not available in {location} now ({reason}); using the other locations",
                        server_type.name
                    )?;
                    locations.retain(|known| *known != location);
                }
            }
        }
        if missing > 0 && room == Some(0) {
            full.push(match project.account.cap {
                NodeCap::AtMost(cap) => format!("{name} is at max_nodes = {cap}"),
                NodeCap::Paused => format!("{name} is paused (max_nodes = 0)"),
                NodeCap::UpToLimit => format!("{name} is full"),
            });
        }
    }
    bar.finish_and_clear();
    let nodes = settle(ctl, args, &created, &existing).await?;
    write_nodes(ctl, &nodes, &types, out).await?;
    if missing > 0 {
        if locations.is_empty() {
            bail!(
                "created {} of {} missing nodes: {} is unavailable in every chosen location; try --location or --server-type",
                created.len(),
                created.len() + missing,
                server_type.name
            );
        }
        // Running `up` again cannot help until there is room: say that first (the error of
        // another failure gets "run it again" from the journal instead).
        let this_run = ctl
            .journal
            .changes()
            .map(|changes| format!("; this run {changes}"))
            .unwrap_or_default();
        return Err(OutOfRoom(format!(
            "every account is at its cap or server limit ({}): created {} of {} missing nodes, the swarm has {} of {wanted}; \
             to get the rest, raise max_nodes in the accounts file, ask Hetzner to raise a project's server limit, \
             or add an [[account]], then run `swarm-ctl up {wanted}` again{this_run}",
            full.join(", "),
            created.len(),
            created.len() + missing,
            nodes.len()
        ))
        .into());
    }
    writeln!(out, "swarm {} has {} nodes", ctl.swarm, nodes.len())?;
    Ok(())
}

/// The nodes table, with heartbeats when a tracker is set. A tracker that cannot be read is
/// warned about, not a failure of `up`: its job, the servers, is done (`--wait-ready` has
/// already waited for the tracker when asked to).
async fn write_nodes(
    ctl: &Ctl,
    nodes: &[Node],
    types: &[ServerType],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (column, unreachable) = status::table_heartbeats(ctl, nodes).await;
    if let Some(error) = unreachable {
        tracing::warn!(error = %format_args!("{error:#}"), "heartbeats are shown as unknown");
    }
    write!(out, "{}", status::nodes_table(ctl, nodes, types, &column))?;
    Ok(())
}

/// Waits for the nodes `up` is responsible for, then lists the swarm again: the `created` ones
/// and those of `existing` an earlier, interrupted `up` left behind. They must run; with
/// `--wait-ready` they must also have reached the tracker. A node left behind is one still
/// booting, or (for the tracker) one created less than `--wait-timeout` ago: older nodes that
/// never reached it are `heal`'s business, not a reason for `up` to wait.
async fn settle(
    ctl: &Ctl,
    args: &UpArgs,
    created: &[Created],
    existing: &[Node],
) -> anyhow::Result<Vec<Node>> {
    let booting = existing
        .iter()
        .filter(|node| is_booting(&node.server))
        .map(|node| Created {
            project: node.project,
            server: node.server.clone(),
            action_ids: Vec::new(),
        });
    let to_run: Vec<Created> = created.iter().cloned().chain(booting).collect();
    if !to_run.is_empty() {
        tracing::info!(nodes = to_run.len(), "waiting for servers to run");
    }
    wait_created(ctl, &to_run).await?;
    if args.wait_ready {
        let recent_since = crate::report::unix_now()
            - i64::try_from(ctl.wait_timeout.as_secs()).unwrap_or(i64::MAX);
        let names: Vec<String> = created
            .iter()
            .map(|node| &node.server)
            .chain(existing.iter().map(|node| &node.server).filter(|server| {
                is_booting(server) || server.created_unix().is_some_and(|at| at >= recent_since)
            }))
            .map(|server| server.name.clone())
            .collect();
        if !names.is_empty() {
            status::wait_ready(ctl, &names).await?;
        }
    }
    list_nodes(ctl).await
}

/// Created and not yet running.
fn is_booting(server: &Server) -> bool {
    matches!(server.status.as_str(), "initializing" | "starting")
}

/// The requested locations checked against the type, or every location offering it.
fn choose_locations(server_type: &ServerType, requested: &[String]) -> anyhow::Result<Vec<String>> {
    let offered: Vec<String> = if server_type.locations.is_empty() {
        server_type
            .prices
            .iter()
            .map(|price| price.location.clone())
            .collect()
    } else {
        server_type
            .locations
            .iter()
            .map(|location| location.name.clone())
            .collect()
    };
    if requested.is_empty() {
        return Ok(offered);
    }
    let mut chosen = Vec::new();
    for location in requested {
        let location = location.trim();
        if !server_type.offered_in(location) {
            bail!(
                "server type {} is not offered in {location}; it is offered in: {}",
                server_type.name,
                offered.join(", ")
            );
        }
        if !chosen.iter().any(|known: &String| known == location) {
            chosen.push(location.to_owned());
        }
    }
    Ok(chosen)
}

/// Round-robin over locations: the one with the fewest nodes, ties in the given order.
fn pick_location(locations: &[String], per_location: &HashMap<String, usize>) -> Option<String> {
    locations
        .iter()
        .min_by_key(|location| per_location.get(*location).copied().unwrap_or(0))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        let ours = BTreeMap::from([
            ("managed-by".to_owned(), "cah-swarm".to_owned()),
            ("swarm".to_owned(), "alpha".to_owned()),
        ]);
        assert!(is_ours(&ours, "alpha"));
        assert!(!is_ours(&ours, "beta"));
        assert!(!is_ours(&BTreeMap::new(), "alpha"));
        assert_eq!(label_selector("alpha"), "managed-by=cah-swarm,swarm=alpha");
        assert_eq!(node_index("alpha", &node_name("alpha", 12)), Some(12));
        assert_eq!(node_index("alpha", "cah-alphabet-1"), None);
        let locations = vec!["fsn1".to_owned(), "nbg1".to_owned()];
        let counts = HashMap::from([("fsn1".to_owned(), 2)]);
        assert_eq!(pick_location(&locations, &counts).as_deref(), Some("nbg1"));
    }
}
