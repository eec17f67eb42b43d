//! Serde shapes of the Hetzner Cloud API resources swarm-ctl uses (reference §1.2–§1.7).
//!
//! Everything not essential is `#[serde(default)]`, so new API fields never break parsing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A server as `GET /servers` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: i64,
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, `deleting`, ...
    pub status: String,
    /// RFC 3339 with `+00:00`.
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub public_net: PublicNet,
    pub server_type: NamedRef,
    pub location: NamedRef,
    /// Null for servers made from snapshots that were deleted since.
    #[serde(default)]
    pub image: Option<NamedRef>,
}

/// Public addresses; `ipv4` is null when IPv4 is disabled.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<IpEntry>,
    #[serde(default)]
    pub ipv6: Option<IpEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IpEntry {
    pub ip: String,
}

/// Any object of which only the name matters here.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedRef {
    pub name: String,
}

/// An asynchronous action (reference §1.5).
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub id: i64,
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub error: Option<ActionError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionError {
    pub code: String,
    pub message: String,
}

/// An SSH key of a project.
#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    pub id: i64,
    pub name: String,
    pub fingerprint: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A server type with its prices per location.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerType {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub cores: u32,
    #[serde(default)]
    pub memory: f64,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub prices: Vec<Price>,
    /// Where it can be ordered; empty means the API did not say.
    #[serde(default)]
    pub locations: Vec<NamedRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub location: String,
    pub price_hourly: PriceValue,
}

/// Prices are decimal strings in EUR.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceValue {
    pub net: String,
    pub gross: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub city: String,
}

/// Body of `POST /servers`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateServer {
    pub name: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    pub ssh_keys: Vec<i64>,
    pub user_data: String,
    pub labels: BTreeMap<String, String>,
    pub start_after_create: bool,
}

/// Answer of `POST /servers`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedServer {
    pub server: Server,
    pub action: Action,
    #[serde(default)]
    pub next_actions: Vec<Action>,
}

impl ServerType {
    /// Hourly net price in EUR in `location`, if the type is sold there.
    pub fn hourly_net(&self, location: &str) -> Option<f64> {
        self.prices
            .iter()
            .find(|price| price.location == location)
            .and_then(|price| price.price_hourly.net.parse().ok())
    }

    /// Whether the type can be ordered in `location`.
    pub fn offered_in(&self, location: &str) -> bool {
        if self.locations.is_empty() {
            return self.prices.iter().any(|price| price.location == location);
        }
        self.locations.iter().any(|entry| entry.name == location)
    }
}

impl Server {
    pub fn ipv4(&self) -> Option<&str> {
        self.public_net.ipv4.as_ref().map(|entry| entry.ip.as_str())
    }
}
