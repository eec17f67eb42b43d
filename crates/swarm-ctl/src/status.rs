//! `swarm-ctl status`: nodes joined with their prices and their tracker heartbeats.
//!
//! A tracker client belongs to a node when its progress string starts with the node's name
//! (scraper-d reads `SCRAPER_NODE_NAME` from its env file and prefixes its progress with it),
//! or its nickname or display name is the node's name, or, failing those, when its nickname is
//! the account's nickname and that account has a single node. The freshest such client wins.
//! A client last seen before the node was created belongs to an earlier server of that name
//! (a node deleted and created again, a name reused by `scale`) and never matches: it would
//! make a node that has not reached the tracker yet look like it had.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use cah_protocol::ext::ClientInfo;
use cah_tracker_client::{ClientConfig, RetryPolicy, TrackerClient};

use crate::config::Ctl;
use crate::fleet::{self, Node};
use crate::hcloud::ServerType;
use crate::report::{self, short_duration, table, unix_now};

/// A node's newest tracker client.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Unix seconds of its last call.
    pub last_seen: i64,
    pub progress: String,
    pub display_name: String,
}

/// What the heartbeat columns of the nodes table show.
#[derive(Debug)]
pub enum HeartbeatColumn {
    /// No tracker given: no heartbeat columns.
    Off,
    /// Each node's newest tracker client; a node missing from the map shows `never`.
    Known(HashMap<String, Heartbeat>),
    /// The tracker could not be read: every node shows `unknown`.
    Unknown,
}

/// `swarm-ctl status`. With the tracker unreachable it still prints the whole table, with
/// heartbeats shown as `unknown`, then fails with one error naming the tracker and the cause.
pub async fn status(ctl: &Ctl, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes = fleet::list_nodes(ctl).await?;
    let types = ctl.projects[0]
        .api
        .server_types()
        .await
        .context("cannot read the server types")?;
    let (column, unreachable) = table_heartbeats(ctl, &nodes).await;
    write!(out, "{}", nodes_table(ctl, &nodes, &types, &column))?;
    let hourly: f64 = nodes
        .iter()
        .filter_map(|node| hourly_price(&types, node))
        .fold(0.0, |total, price| total + price);
    writeln!(
        out,
        "{} nodes, {hourly:.4} EUR/h net (about {:.2} EUR/month)",
        nodes.len(),
        hourly * 730.0
    )?;
    match unreachable {
        // The table is out; the exit status says it lacks what --tracker asked for.
        Some(error) => Err(error.context("heartbeats are shown as unknown")),
        None => Ok(()),
    }
}

/// The heartbeat column of a nodes table and, when the tracker could not be read, why.
pub async fn table_heartbeats(
    ctl: &Ctl,
    nodes: &[Node],
) -> (HeartbeatColumn, Option<anyhow::Error>) {
    if ctl.tracker.is_none() {
        return (HeartbeatColumn::Off, None);
    }
    match read_heartbeats(ctl, nodes).await {
        Ok((beats, oldest_of_full_listing)) => {
            warn_if_full(oldest_of_full_listing);
            (HeartbeatColumn::Known(beats), None)
        }
        Err(error) => (HeartbeatColumn::Unknown, Some(error)),
    }
}

/// The nodes table; heartbeat columns unless `heartbeats` is [`HeartbeatColumn::Off`].
pub fn nodes_table(
    ctl: &Ctl,
    nodes: &[Node],
    types: &[ServerType],
    heartbeats: &HeartbeatColumn,
) -> String {
    let now = SystemTime::now();
    let mut header = vec![
        "NAME", "ACCOUNT", "STATUS", "IPV4", "LOCATION", "TYPE", "AGE", "EUR/H",
    ];
    if !matches!(heartbeats, HeartbeatColumn::Off) {
        header.extend(["HEARTBEAT", "PROGRESS"]);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|node| {
            let age = report::parse_api_time(&node.server.created)
                .and_then(|created| now.duration_since(created).ok())
                .map_or_else(|| "-".to_owned(), short_duration);
            let mut row = vec![
                node.server.name.clone(),
                ctl.projects[node.project].account.name.clone(),
                node.server.status.clone(),
                node.server.ipv4().unwrap_or("-").to_owned(),
                node.server.location.name.clone(),
                node.server.server_type.name.clone(),
                age,
                hourly_price(types, node)
                    .map_or_else(|| "-".to_owned(), |price| format!("{price:.4}")),
            ];
            match heartbeats {
                HeartbeatColumn::Off => {}
                HeartbeatColumn::Unknown => row.extend(["unknown".to_owned(), "-".to_owned()]),
                HeartbeatColumn::Known(beats) => match beats.get(&node.server.name) {
                    Some(beat) => {
                        let ago = u64::try_from(unix_now() - beat.last_seen).unwrap_or(0);
                        row.push(format!("{} ago", short_duration(Duration::from_secs(ago))));
                        row.push(beat.progress.chars().take(60).collect());
                    }
                    None => row.extend(["never".to_owned(), "-".to_owned()]),
                },
            }
            row
        })
        .collect();
    table(&header, &rows)
}

fn hourly_price(types: &[ServerType], node: &Node) -> Option<f64> {
    types
        .iter()
        .find(|known| known.name == node.server.server_type.name)?
        .hourly_net(&node.server.location.name)
}

fn warn_if_full(oldest_of_full_listing: Option<i64>) {
    if oldest_of_full_listing.is_some() {
        tracing::warn!(
            listed = cah_tracker_client::MAX_LISTED_CLIENTS,
            "the tracker listed as many clients as one listing holds; nodes without a heartbeat may only be missing from it"
        );
    }
}

/// As [`heartbeats`], for decisions that restart or recreate the nodes not seen since
/// `silent_before` (unix seconds). The tracker lists its most recently seen clients first, so
/// a node missing from a full listing was last seen before the oldest listed client: silent
/// too when that is before `silent_before`. Otherwise the listing cannot tell, and this fails
/// with `refusal` (what the caller will not do) in the message; so it does when the tracker
/// cannot be read (one attempt: refusing is safe, and the caller can run again).
pub async fn heartbeats_of_silent(
    ctl: &Ctl,
    nodes: &[Node],
    silent_before: i64,
    refusal: &str,
) -> anyhow::Result<HashMap<String, Heartbeat>> {
    let (beats, oldest_of_full_listing) = read_heartbeats(ctl, nodes)
        .await
        .context(refusal.to_owned())?;
    if !tells_silent_nodes(oldest_of_full_listing, silent_before) {
        bail!(
            "the tracker listed {} clients, the most one listing holds, all seen too recently to tell a node missing from it from a silent one; {refusal} (forget idle clients on the tracker with a shorter --client-timeout)",
            cah_tracker_client::MAX_LISTED_CLIENTS
        );
    }
    Ok(beats)
}

/// Each node's newest tracker client, and when the listing was full, the oldest `last_seen`
/// in it. One attempt with a short connect timeout: the tables and `heal` are cheap to run
/// again, `up --wait-ready` polls anyway, and a tracker that is down should not cost 8-20 s
/// of retry warnings first.
async fn read_heartbeats(
    ctl: &Ctl,
    nodes: &[Node],
) -> anyhow::Result<(HashMap<String, Heartbeat>, Option<i64>)> {
    let url = ctl.tracker()?;
    let mut config = ClientConfig::new(url.clone());
    config.retry = RetryPolicy::none();
    config.connect_timeout = Duration::from_secs(5);
    let client = TrackerClient::new(config).context("invalid tracker url")?;
    let clients = client
        .clients()
        .await
        .with_context(|| format!("cannot list the clients of the tracker at {url}"))?;
    let oldest_of_full_listing = listing_is_full(clients.len())
        .then(|| clients.iter().map(|client| client.last_seen).min())
        .flatten();
    let named: Vec<NodeIdentity> = nodes
        .iter()
        .map(|node| NodeIdentity {
            name: node.server.name.clone(),
            nickname: ctl.projects[node.project].account.nickname.clone(),
            created: node.server.created_unix(),
        })
        .collect();
    Ok((match_clients(&named, &clients), oldest_of_full_listing))
}

/// Whether a listing shows every node seen since `silent_before`: it was not full, or even its
/// oldest client was seen before then.
fn tells_silent_nodes(oldest_of_full_listing: Option<i64>, silent_before: i64) -> bool {
    oldest_of_full_listing.is_none_or(|oldest| oldest < silent_before)
}

/// Whether a listing of `count` clients may have left some out.
fn listing_is_full(count: usize) -> bool {
    count >= cah_tracker_client::MAX_LISTED_CLIENTS as usize
}

/// What a tracker client is matched against.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    /// The nickname of the node's account.
    pub nickname: String,
    /// Unix seconds the server was created, when the API said.
    pub created: Option<i64>,
}

/// Matches tracker clients to nodes (see the module comment).
pub fn match_clients(nodes: &[NodeIdentity], clients: &[ClientInfo]) -> HashMap<String, Heartbeat> {
    let mut nodes_per_nickname: HashMap<&str, usize> = HashMap::new();
    for node in nodes {
        *nodes_per_nickname
            .entry(node.nickname.as_str())
            .or_default() += 1;
    }
    let mut matched: HashMap<String, Heartbeat> = HashMap::new();
    for node in nodes {
        let (name, nickname) = (&node.name, &node.nickname);
        let since_created = |client: &&ClientInfo| {
            node.created
                .is_none_or(|created| client.last_seen >= created)
        };
        let direct = |client: &&ClientInfo| {
            names_node(&client.progress, name)
                || client.nickname == *name
                || client.display_name == *name
        };
        let mut candidates: Vec<&ClientInfo> = clients
            .iter()
            .filter(since_created)
            .filter(direct)
            .collect();
        if candidates.is_empty() && nodes_per_nickname.get(nickname.as_str()) == Some(&1) {
            candidates = clients
                .iter()
                .filter(since_created)
                .filter(|client| client.nickname == *nickname)
                .collect();
        }
        if let Some(best) = candidates.into_iter().max_by_key(|client| client.last_seen) {
            matched.insert(
                name.clone(),
                Heartbeat {
                    last_seen: best.last_seen,
                    progress: best.progress.clone(),
                    display_name: best.display_name.clone(),
                },
            );
        }
    }
    matched
}

/// `progress` is `NAME`, or starts with `NAME:` or `NAME ` (so `cah-a-1` never matches `cah-a-10`).
fn names_node(progress: &str, name: &str) -> bool {
    progress
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with(' '))
}

/// Waits until every node in `names` has a tracker client.
pub async fn wait_ready(ctl: &Ctl, names: &[String]) -> anyhow::Result<()> {
    ctl.tracker()?;
    let bar = fleet::progress_bar(names.len() as u64, "reaching the tracker");
    let deadline = tokio::time::Instant::now() + ctl.wait_timeout;
    // A tracker that cannot be read yet (restarting, its DNS name not out yet) is a node not
    // ready yet: waited for until the deadline, whose error then says why.
    let mut last_error: Option<String> = None;
    loop {
        let nodes = fleet::list_nodes(ctl).await?;
        let beats = match read_heartbeats(ctl, &nodes).await {
            Ok((beats, oldest_of_full_listing)) => {
                warn_if_full(oldest_of_full_listing);
                last_error = None;
                beats
            }
            Err(error) => {
                let error = format!("{error:#}");
                if last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(error = %error, "cannot read the tracker's clients yet, waiting");
                }
                last_error = Some(error);
                HashMap::new()
            }
        };
        let ready = names
            .iter()
            .filter(|name| beats.contains_key(*name))
            .count();
        bar.set_position(ready as u64);
        if ready == names.len() {
            bar.finish_and_clear();
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let waiting: Vec<&str> = names
                .iter()
                .filter(|name| !beats.contains_key(*name))
                .map(String::as_str)
                .collect();
            if let Some(error) = last_error {
                bail!(
                    "{} nodes not seen on the tracker within {:?}: {}; the tracker could not be read: {error}",
                    waiting.len(),
                    ctl.wait_timeout,
                    waiting.join(", ")
                );
            }
            bail!(
                "{} nodes never reached the tracker within {:?}: {}; read their boot logs with `swarm-ctl logs NODE`",
                waiting.len(),
                ctl.wait_timeout,
                waiting.join(", ")
            );
        }
        tokio::time::sleep(ctl.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(nickname: &str, progress: &str, last_seen: i64) -> ClientInfo {
        ClientInfo {
            display_name: format!("d-{last_seen}"),
            client_type: cah_protocol::ClientType::Cpu,
            nickname: nickname.to_owned(),
            progress: progress.to_owned(),
            last_seen,
        }
    }

    #[test]
    fn a_full_listing_may_be_incomplete() {
        assert!(!listing_is_full(9_999));
        assert!(listing_is_full(10_000));
        assert!(tells_silent_nodes(None, 1_000));
        // Everyone missing was seen before 900: silent since 1,000 as well.
        assert!(tells_silent_nodes(Some(900), 1_000));
        assert!(!tells_silent_nodes(Some(1_000), 1_000));
    }

    #[test]
    fn matches_by_progress_prefix_then_nickname() {
        let node = |name: &str, nickname: &str| NodeIdentity {
            name: name.to_owned(),
            nickname: nickname.to_owned(),
            created: None,
        };
        let nodes = vec![
            node("cah-a-1", "alice"),
            node("cah-a-10", "alice"),
            node("cah-a-2", "bob"),
            node("cah-a-3", "carol"),
        ];
        let clients = vec![
            client("alice", "cah-a-1: job 4", 100),
            client("alice", "cah-a-1: job 3", 50),
            client("alice", "cah-a-10 starting", 70),
            client("bob", "Initialized", 80),
        ];
        let matched = match_clients(&nodes, &clients);
        assert_eq!(matched["cah-a-1"].last_seen, 100);
        assert_eq!(matched["cah-a-10"].last_seen, 70);
        assert_eq!(
            matched["cah-a-2"].last_seen, 80,
            "bob has one node, matched by nickname"
        );
        assert!(!matched.contains_key("cah-a-3"));
    }

    #[test]
    fn a_client_older_than_the_node_is_an_earlier_server_of_that_name() {
        let node = |name: &str, nickname: &str, created| NodeIdentity {
            name: name.to_owned(),
            nickname: nickname.to_owned(),
            created: Some(created),
        };
        let nodes = vec![
            node("cah-a-1", "alice", 1_000),
            node("cah-b-1", "bob", 1_000),
        ];
        let clients = vec![
            client("alice", "cah-a-1: job 4", 990),
            client("bob", "Initialized", 999),
        ];
        let matched = match_clients(&nodes, &clients);
        assert!(matched.is_empty(), "{matched:?}");
        let clients = vec![
            client("alice", "cah-a-1: job 4", 990),
            client("alice", "cah-a-1 starting", 1_000),
            client("bob", "Initialized", 1_010),
        ];
        let matched = match_clients(&nodes, &clients);
        assert_eq!(matched["cah-a-1"].progress, "cah-a-1 starting");
        assert_eq!(matched["cah-b-1"].last_seen, 1_010);
    }

    #[test]
    fn creation_times_are_read_from_the_api() {
        let server = |created: &str| -> crate::hcloud::Server {
            serde_json::from_value(serde_json::json!({
                "id": 1, "name": "n", "status": "running", "created": created,
                "server_type": {"name": "cx22"}, "location": {"name": "fsn1"}
            }))
            .expect("a server")
        };
        assert_eq!(
            server("2026-11-20T08:00:00+00:00").created_unix(),
            Some(1_795_161_600)
        );
        assert_eq!(
            server("2026-11-20T08:00:00Z").created_unix(),
            Some(1_795_161_600)
        );
        assert_eq!(server("").created_unix(), None);
        assert_eq!(server("yesterday").created_unix(), None);
    }
}
