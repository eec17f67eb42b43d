//! Waiting for what `up`, `down` and `heal` started: actions, then servers running, each with a
//! progress bar on stderr.

use std::collections::HashSet;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Created, list_nodes};
use crate::config::Ctl;

/// Waits for the create actions with a progress bar, then for every new server to run.
pub(crate) async fn wait_created(ctl: &Ctl, created: &[Created]) -> anyhow::Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let actions: Vec<(usize, i64)> = created
        .iter()
        .flat_map(|node| node.action_ids.iter().map(|id| (node.project, *id)))
        .collect();
    let bar = booting_bar(created);
    // The bar counts servers, not actions: it moves as they run, after their actions are done.
    wait_actions_by_account(ctl, &actions, &ProgressBar::hidden())
        .await
        .map_err(|(project_index, error)| {
            let account = &ctl.projects[project_index].account.name;
            // Name the server whose action failed, not only the action.
            let server = match &error {
                crate::hcloud::HcloudError::ActionFailed { id, .. } => created
                    .iter()
                    .find(|node| node.action_ids.contains(id))
                    .map(|node| node.server.name.clone()),
                _ => None,
            };
            let what = match server {
                Some(name) => format!("server {name} (account {account}) did not come up; `swarm-ctl status` shows it, `swarm-ctl heal` recreates it"),
                None => format!("servers of account {account} did not come up"),
            };
            anyhow::Error::new(error).context(what)
        })?;
    let wanted: HashSet<i64> = created.iter().map(|node| node.server.id).collect();
    let deadline = tokio::time::Instant::now() + ctl.wait_timeout;
    loop {
        let nodes = list_nodes(ctl).await?;
        let running = nodes
            .iter()
            .filter(|node| wanted.contains(&node.server.id) && node.server.status == "running")
            .count();
        bar.set_position(running as u64);
        if running == wanted.len() {
            bar.finish_and_clear();
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let late: Vec<String> = nodes
                .iter()
                .filter(|node| wanted.contains(&node.server.id) && node.server.status != "running")
                .map(|node| format!("{} {}", node.server.name, node.server.status))
                .collect();
            bail!(
                "only {running} of {} servers are running after {:?} ({}); check them with `swarm-ctl status`",
                wanted.len(),
                ctl.wait_timeout,
                late.join(", ")
            );
        }
        tokio::time::sleep(ctl.poll_interval).await;
    }
}

/// Waits for `actions` (account index, action id), one account after the other, moving `bar`;
/// returns how many there were, or the account whose action failed or timed out, and why.
pub(crate) async fn wait_actions_by_account(
    ctl: &Ctl,
    actions: &[(usize, i64)],
    bar: &ProgressBar,
) -> Result<u64, (usize, crate::hcloud::HcloudError)> {
    let mut done_before = 0u64;
    for (project_index, project) in ctl.projects.iter().enumerate() {
        let ids: Vec<i64> = actions
            .iter()
            .filter(|(project, _)| *project == project_index)
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        project
            .api
            .wait_actions(&ids, ctl.poll_interval, ctl.wait_timeout, |done, _| {
                bar.set_position(done_before + done as u64);
            })
            .await
            .map_err(|error| (project_index, error))?;
        done_before += ids.len() as u64;
    }
    Ok(done_before)
}

/// `booting 0/N` for N servers, however many actions each has.
fn booting_bar(created: &[Created]) -> ProgressBar {
    progress_bar(created.len() as u64, "booting")
}

/// A bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcloud::Server;

    #[test]
    fn the_booting_bar_counts_servers_not_actions() {
        let server: Server = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "cah-alpha-1", "status": "initializing", "created": "",
            "server_type": {"name": "cx22"}, "location": {"name": "fsn1"}
        }))
        .expect("a server");
        // A create comes with several actions (create_server, start_server, ...).
        let created: Vec<Created> = (0..4)
            .map(|index| Created {
                project: 0,
                server: server.clone(),
                action_ids: vec![3 * index, 3 * index + 1, 3 * index + 2],
            })
            .collect();
        assert_eq!(booting_bar(&created).length(), Some(4));
    }
}
