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
    /// Null for a server whose image (a snapshot or backup) was deleted since.
    #[serde(default)]
    pub image: Option<ImageRef>,
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

/// The image a server was built from. Snapshots and backups have `"name": null` (only system
/// images are named), so the name is optional and the id is what identifies it.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageRef {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// `system`, `app`, `snapshot` or `backup`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl ImageRef {
    /// What `POST /servers` takes as `image` to build the same again: the name of a system or
    /// app image, the id (as a string, which the API accepts too) of a snapshot or backup.
    pub fn create_ref(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id.to_string())
    }
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
    /// `created` in unix seconds; `None` when it is missing or not RFC 3339 in UTC.
    pub fn created_unix(&self) -> Option<i64> {
        let utc = match self.created.strip_suffix("+00:00") {
            Some(time) => format!("{time}Z"),
            None => self.created.clone(),
        };
        let time = humantime::parse_rfc3339(&utc).ok()?;
        let seconds = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(seconds).ok()
    }

    /// The image to recreate this server from; `None` when its image was deleted.
    pub fn image_ref(&self) -> Option<String> {
        self.image.as_ref().map(ImageRef::create_ref)
    }

    pub fn ipv4(&self) -> Option<&str> {
        self.public_net.ipv4.as_ref().map(|entry| entry.ip.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `GET /servers` page as the real API returns it for a server built from a snapshot
    /// (`image.name` is null) and one whose image was deleted (`image` is null).
    const SNAPSHOT_SERVERS: &str = r#"{
      "servers": [
        {
          "id": 4711, "name": "cah-alpha-1", "status": "running", "created": "2026-11-20T08:00:00+00:00",
          "labels": { "managed-by": "cah-swarm", "swarm": "alpha", "account": "main" },
          "public_net": { "ipv4": { "id": 1, "ip": "203.0.113.7", "blocked": false, "dns_ptr": "static.7.113.0.203.clients.your-server.de" },
                          "ipv6": null, "floating_ips": [], "firewalls": [] },
          "server_type": { "id": 22, "name": "cx22", "cores": 2, "memory": 4.0, "architecture": "x86" },
          "location": { "id": 1, "name": "fsn1", "city": "Falkenstein", "country": "DE", "network_zone": "eu-central" },
          "image": { "id": 42, "type": "snapshot", "status": "available", "name": null,
                     "description": "cah-node golden image", "image_size": 2.3, "disk_size": 40,
                     "created": "2026-11-01T10:00:00+00:00", "created_from": { "id": 1, "name": "cah-alpha-0" },
                     "bound_to": null, "os_flavor": "debian", "os_version": null, "rapid_deploy": false,
                     "protection": { "delete": false }, "deprecated": null, "deleted": null, "labels": {},
                     "architecture": "x86" }
        },
        {
          "id": 4712, "name": "cah-alpha-2", "status": "running", "created": "2026-11-20T08:00:00+00:00",
          "labels": { "managed-by": "cah-swarm", "swarm": "alpha", "account": "main" },
          "public_net": { "ipv4": { "id": 2, "ip": "203.0.113.8", "blocked": false, "dns_ptr": "x" }, "ipv6": null },
          "server_type": { "id": 22, "name": "cx22" },
          "location": { "id": 1, "name": "fsn1" },
          "image": null
        },
        {
          "id": 4713, "name": "cah-alpha-3", "status": "running", "created": "2026-11-20T08:00:00+00:00",
          "labels": {}, "public_net": { "ipv4": null, "ipv6": null },
          "server_type": { "id": 22, "name": "cx22" }, "location": { "id": 1, "name": "fsn1" },
          "image": { "id": 114690387, "type": "system", "name": "debian-12", "os_flavor": "debian" }
        }
      ],
      "meta": { "pagination": { "page": 1, "per_page": 50, "previous_page": null, "next_page": null, "last_page": 1, "total_entries": 3 } }
    }"#;

    #[derive(Deserialize)]
    struct Page {
        servers: Vec<Server>,
    }

    #[test]
    fn servers_from_snapshots_and_deleted_images_decode() {
        let page: Page = serde_json::from_str(SNAPSHOT_SERVERS).expect("real-shaped page decodes");
        let images: Vec<Option<String>> = page.servers.iter().map(Server::image_ref).collect();
        assert_eq!(
            images,
            vec![Some("42".to_owned()), None, Some("debian-12".to_owned())],
            "a snapshot is recreated by id, a system image by name"
        );
        assert_eq!(page.servers[0].ipv4(), Some("203.0.113.7"));
    }
}
