//! Deleting the swarm (`down`): every server re-checked right before its delete, and one that
//! cannot be deleted never keeps the others running.

use std::io::Write;

use anyhow::{Context, bail};

use super::{Node, is_ours, list_nodes, progress_bar, wait_actions_by_account};
use crate::cli::DownArgs;
use crate::config::Ctl;

/// `swarm-ctl down`.
pub async fn down(ctl: &Ctl, args: &DownArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = list_nodes(ctl).await?;
    if nodes.is_empty() {
        writeln!(out, "swarm {} has no servers; nothing to delete", ctl.swarm)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|node| {
            vec![
                node.server.name.clone(),
                ctl.projects[node.project].account.name.clone(),
                node.server.status.clone(),
                node.server.ipv4().unwrap_or("-").to_owned(),
                node.server.location.name.clone(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        crate::report::table(&["NAME", "ACCOUNT", "STATUS", "IPV4", "LOCATION"], &rows)
    )?;
    if !args.yes {
        writeln!(
            out,
            "dry run: would delete these {} servers of swarm {}; run again with --yes to delete them",
            nodes.len(),
            ctl.swarm
        )?;
        return Ok(());
    }
    // One server that cannot be deleted (a 5xx that outlasted the retries) must not leave the
    // rest running and billed: every delete is tried, and the failures reported at the end.
    let mut actions: Vec<(usize, i64)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for node in &nodes {
        match delete_checked(ctl, node).await {
            Ok(Some(action)) => actions.push((node.project, action)),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(name = %node.server.name, error = %format_args!("{error:#}"), "delete failed, going on with the others");
                failed.push(format!("{}: {error:#}", node.server.name));
            }
        }
    }
    let bar = progress_bar(actions.len() as u64, "deleting");
    let waited = wait_actions_by_account(ctl, &actions, &bar).await;
    bar.finish_and_clear();
    if let Err((project_index, error)) = waited {
        // A delete action that ended in error leaves its server running: the listing below
        // names it, with the others of this run.
        tracing::warn!(account = %ctl.projects[project_index].account.name, error = %format_args!("{error:#}"), "waiting for the deletes failed");
        failed.push(format!(
            "waiting for the deletes of account {}: {error}",
            ctl.projects[project_index].account.name
        ));
    }
    // Trust the API, not our bookkeeping: whatever of ours is still listed and not being
    // deleted was not deleted (a re-read that answered 404 for a server that still exists).
    let remaining: Vec<String> = list_nodes(ctl)
        .await
        .context("cannot list the swarm again to check that its servers are gone")?
        .into_iter()
        .filter(|node| node.server.status != "deleting")
        .map(|node| node.server.name)
        .collect();
    writeln!(
        out,
        "deleted {} servers of swarm {}",
        actions.len(),
        ctl.swarm
    )?;
    if !remaining.is_empty() || !failed.is_empty() {
        let not_deleted = if remaining.is_empty() {
            String::new()
        } else {
            format!(
                "{} of {} servers were not deleted, they still exist: {}; ",
                remaining.len(),
                nodes.len(),
                remaining.join(", ")
            )
        };
        let causes = if failed.is_empty() {
            String::new()
        } else {
            format!("({}); ", failed.join("; "))
        };
        bail!("{not_deleted}{causes}run `swarm-ctl down --yes` again");
    }
    Ok(())
}

/// Deletes `node` after reading its labels again; `None` when it is no longer ours or gone.
pub(crate) async fn delete_checked(ctl: &Ctl, node: &Node) -> anyhow::Result<Option<i64>> {
    let project = &ctl.projects[node.project];
    let current = match project.api.get_server(node.server.id).await {
        Ok(server) => server,
        Err(error) if error.code() == Some(&crate::hcloud::ErrorCode::NotFound) => return Ok(None),
        Err(error) => return Err(error).context("cannot re-read a server before deleting it"),
    };
    if !is_ours(&current.labels, &ctl.swarm) {
        tracing::warn!(name = %current.name, id = current.id, "labels changed since listing, not deleting");
        return Ok(None);
    }
    if current.status == "deleting" {
        // Someone else's `down` (or `heal`) got there first; a second DELETE answers 423 locked.
        tracing::info!(name = %current.name, "already being deleted");
        return Ok(None);
    }
    let action = project
        .api
        .delete_server(current.id)
        .await
        .with_context(|| format!("cannot delete server {}", current.name))?;
    tracing::info!(name = %current.name, account = %project.account.name, "server deleted");
    ctl.journal.deleted(&current.name);
    if let Some(ip) = current.ipv4() {
        // Hetzner gives the address to the next server that asks; its key will differ.
        ctl.ssh.forget_host(ip).await;
    }
    Ok(Some(action.id))
}
