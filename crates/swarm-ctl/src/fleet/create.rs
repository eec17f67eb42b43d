//! Creating nodes: unique names, labels, user data, the SSH key, and the API's refusals mapped
//! to "try the next account" or "try the next location".

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;

use crate::bootstrap::{self, NodeBootstrap};
use crate::config::Ctl;
use crate::hcloud::{CreateServer, ErrorCode, Server};
use crate::keys::{self, SwarmKey};
use crate::secret::Secret;

use super::{ACCOUNT_LABEL, MANAGED_BY, SWARM_LABEL, is_ours, node_name};

/// Most names skipped in a row because another server already uses them.
const MAX_NAME_SKIPS: u32 = 100;

/// Makes servers for one run of `up` or `heal`.
pub(crate) struct Creator<'a> {
    ctl: &'a Ctl,
    key: SwarmKey,
    key_ids: HashMap<usize, i64>,
    enrollment: Secret,
    next_index: u32,
    pub(crate) server_type: String,
    pub(crate) image: String,
}

/// A created (or adopted) server with the actions to wait for.
#[derive(Clone)]
pub(crate) struct Created {
    pub(crate) project: usize,
    pub(crate) server: Server,
    pub(crate) action_ids: Vec<i64>,
}

/// What one attempt to add a node in an account and location came to.
pub(crate) enum Outcome {
    Created(Box<Created>),
    /// `resource_limit_exceeded`: the account holds no more servers.
    AccountFull(String),
    /// `resource_unavailable` / `placement_error`: the type is not available there now.
    LocationUnavailable(String),
}

impl<'a> Creator<'a> {
    /// Prepares the key and enrollment token; `next_index` is one past the highest node number in use.
    pub(crate) async fn new(
        ctl: &'a Ctl,
        next_index: u32,
        server_type: String,
        image: String,
    ) -> anyhow::Result<Self> {
        let bootstrap = ctl.bootstrap()?;
        let key = keys::ensure_local(&ctl.ssh.private_key, &ctl.swarm).await?;
        let token_path = bootstrap
            .enrollment_token_file
            .clone()
            .unwrap_or_else(|| ctl.state_dir.join(format!("{}.enrollment", ctl.swarm)));
        let enrollment = keys::ensure_enrollment_token(&token_path)?;
        // Fail on an oversized or unsafe template before touching any account.
        let longest_name = node_name(&ctl.swarm, u32::MAX);
        for project in &ctl.projects {
            bootstrap::render(&NodeBootstrap {
                node_name: &longest_name,
                swarm: &ctl.swarm,
                nickname: &project.account.nickname,
                tracker_url: bootstrap.tracker_url.as_str(),
                scraper_url: bootstrap.scraper_url.as_str(),
                scraper_sha256: &bootstrap.scraper_sha256,
                enrollment_token: &enrollment,
            })
            .with_context(|| format!("cloud-init for account {}", project.account.name))?;
        }
        Ok(Creator {
            ctl,
            key,
            key_ids: HashMap::new(),
            enrollment,
            next_index,
            server_type,
            image,
        })
    }

    /// Creates one node in project `project_index` at `location`.
    pub(crate) async fn create(
        &mut self,
        project_index: usize,
        location: &str,
    ) -> anyhow::Result<Outcome> {
        let ctl = self.ctl;
        let project = &ctl.projects[project_index];
        let key_id = match self.key_ids.get(&project_index) {
            Some(id) => *id,
            None => {
                let id = keys::ensure_uploaded(&project.api, &self.key, &ctl.swarm)
                    .await
                    .with_context(|| format!("account {}", project.account.name))?;
                self.key_ids.insert(project_index, id);
                id
            }
        };
        let bootstrap = ctl.bootstrap()?;
        for _ in 0..MAX_NAME_SKIPS {
            let name = node_name(&ctl.swarm, self.next_index);
            self.next_index += 1;
            let user_data = bootstrap::render(&NodeBootstrap {
                node_name: &name,
                swarm: &ctl.swarm,
                nickname: &project.account.nickname,
                tracker_url: bootstrap.tracker_url.as_str(),
                scraper_url: bootstrap.scraper_url.as_str(),
                scraper_sha256: &bootstrap.scraper_sha256,
                enrollment_token: &self.enrollment,
            })?;
            let labels = BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (SWARM_LABEL.to_owned(), ctl.swarm.clone()),
                (ACCOUNT_LABEL.to_owned(), project.account.name.clone()),
            ]);
            let request = CreateServer {
                name: name.clone(),
                server_type: self.server_type.clone(),
                image: self.image.clone(),
                location: location.to_owned(),
                ssh_keys: vec![key_id],
                user_data,
                labels,
                start_after_create: true,
            };
            match project.api.create_server(&request).await {
                Ok(created) => {
                    ctl.journal.created(&created.server.name);
                    tracing::info!(name = %created.server.name, account = %project.account.name, location, "server created");
                    if let Some(ip) = created.server.ipv4() {
                        // The address may have belonged to an earlier server with another host key.
                        ctl.ssh.forget_host(ip).await;
                    }
                    let mut action_ids = vec![created.action.id];
                    action_ids.extend(created.next_actions.iter().map(|action| action.id));
                    return Ok(Outcome::Created(Box::new(Created {
                        project: project_index,
                        server: created.server,
                        action_ids,
                    })));
                }
                Err(error) => match error.code() {
                    Some(ErrorCode::ResourceLimitExceeded) => {
                        // The name stays free for the next account.
                        self.next_index -= 1;
                        return Ok(Outcome::AccountFull(error.to_string()));
                    }
                    Some(ErrorCode::ResourceUnavailable | ErrorCode::PlacementError) => {
                        self.next_index -= 1;
                        return Ok(Outcome::LocationUnavailable(error.to_string()));
                    }
                    Some(ErrorCode::UniquenessError) => {
                        // Either our own earlier attempt got through (adopt it), or a server
                        // that is not ours has this name (never touch it; take the next name).
                        let Some(existing) = project.api.server_by_name(&name).await? else {
                            // No server has the name: the API refused something else (or lists
                            // late); another name would fail the same way.
                            return Err(error).with_context(|| {
                                format!(
                                    "cannot create server {name} in account {}: no server has that name",
                                    project.account.name
                                )
                            });
                        };
                        if existing.status == "deleting" {
                            // Ours or not, it is going away: never adopt it, take the next name.
                            tracing::info!(%name, "name held by a server being deleted, taking the next one");
                            continue;
                        }
                        if is_ours(&existing.labels, &ctl.swarm) {
                            let server = existing;
                            // The name was past every node when this run started: our own
                            // create whose answer was lost made it, so this run created it.
                            ctl.journal.created(&server.name);
                            tracing::info!(%name, "server already exists with our labels, adopting it");
                            if let Some(ip) = server.ipv4() {
                                ctl.ssh.forget_host(ip).await;
                            }
                            return Ok(Outcome::Created(Box::new(Created {
                                project: project_index,
                                server,
                                action_ids: Vec::new(),
                            })));
                        }
                        tracing::warn!(%name, account = %project.account.name, "name taken by a server that is not ours, skipping it");
                    }
                    _ => {
                        return Err(error).with_context(|| {
                            format!(
                                "cannot create server {name} in account {}",
                                project.account.name
                            )
                        });
                    }
                },
            }
        }
        anyhow::bail!(
            "gave up after {MAX_NAME_SKIPS} server names in a row were taken in account {}",
            project.account.name
        )
    }
}
