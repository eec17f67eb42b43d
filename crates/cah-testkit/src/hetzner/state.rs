//! The fake's world: projects (one per token), servers, actions, SSH keys and rate-limit buckets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{HetznerConfig, RecordedRequest};

/// An API error: HTTP status plus the `{"error": {code, message, details}}` body.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) message: String,
    pub(super) details: Value,
}

impl ApiError {
    pub(super) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    pub(super) fn invalid_field(field: &str, message: &str) -> Self {
        Self {
            details: json!({ "fields": [{ "name": field, "messages": [message] }] }),
            ..Self::new(
                400,
                "invalid_input",
                format!("invalid input in field '{field}'"),
            )
        }
    }

    pub(super) fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }
}

pub(super) struct World {
    pub(super) config: HetznerConfig,
    pub(super) projects: HashMap<String, Project>,
    pub(super) actions: BTreeMap<i64, ActionRecord>,
    pub(super) injected: VecDeque<(u16, String)>,
    /// Errors for one method and path, after some such requests went through.
    pub(super) targeted: Vec<Targeted>,
    /// How many of the next server deletes end in an action with `status: error` (the server stays).
    pub(super) failing_deletes: usize,
    pub(super) requests: Vec<RecordedRequest>,
    next_id: i64,
    next_ip: u32,
}

/// One injected fault for the request `method path` that comes after `skip` such requests.
pub(super) struct Targeted {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) skip: usize,
    pub(super) fault: Fault,
}

/// What a targeted request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// Refused with this status and error code; nothing is done.
    Error(u16, String),
    /// Done, but the connection breaks before the answer's body is sent.
    LoseAnswer,
}

impl World {
    /// The injected fault this `method path` request gets, if any (counting down the skips).
    pub(super) fn take_targeted(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self
            .targeted
            .iter()
            .position(|targeted| targeted.method == method && targeted.path == path)?;
        let targeted = &mut self.targeted[index];
        if targeted.skip > 0 {
            targeted.skip -= 1;
            return None;
        }
        Some(self.targeted.remove(index).fault)
    }
}

pub(super) struct Project {
    pub(super) server_limit: usize,
    pub(super) servers: BTreeMap<i64, ServerRecord>,
    pub(super) ssh_keys: BTreeMap<i64, SshKeyRecord>,
    bucket: Bucket,
}

pub(super) struct ServerRecord {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) created_at: Instant,
    pub(super) created: String,
    pub(super) server_type: Value,
    pub(super) location: Value,
    pub(super) image: Value,
    pub(super) start_after_create: bool,
    pub(super) user_data: Option<String>,
    pub(super) ipv4: Option<(i64, String)>,
    pub(super) ipv6: Option<(i64, String)>,
    pub(super) delete_started: Option<Instant>,
    /// `protection.delete`: a DELETE answers 403 `protected`.
    pub(super) delete_protected: bool,
}

pub(super) struct ActionRecord {
    pub(super) id: i64,
    pub(super) token: String,
    pub(super) command: String,
    pub(super) requested_at: Instant,
    pub(super) requested_wall: SystemTime,
    /// When the action starts running, counted from `requested_at`.
    pub(super) offset: Duration,
    pub(super) duration: Duration,
    pub(super) resources: Vec<(i64, &'static str)>,
    /// Ends with `status: error` instead of `success`.
    pub(super) fails: bool,
}

pub(super) struct SshKeyRecord {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) fingerprint: String,
    pub(super) public_key: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) created: String,
}

/// A token bucket refilled at `limit / 3600` tokens per second, as the real API does.
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What the rate limiter said about one request.
pub(super) struct RateState {
    pub(super) limit: u32,
    pub(super) remaining: u32,
    pub(super) reset_unix: u64,
    pub(super) allowed: bool,
}

impl World {
    pub(super) fn new(config: HetznerConfig) -> Self {
        let now = Instant::now();
        let projects = config
            .projects
            .iter()
            .map(|project| {
                let bucket = Bucket {
                    tokens: f64::from(config.rate_limit),
                    updated: now,
                };
                let state = Project {
                    server_limit: project.server_limit,
                    servers: BTreeMap::new(),
                    ssh_keys: BTreeMap::new(),
                    bucket,
                };
                (project.token.clone(), state)
            })
            .collect();
        Self {
            config,
            projects,
            actions: BTreeMap::new(),
            injected: VecDeque::new(),
            targeted: Vec::new(),
            failing_deletes: 0,
            requests: Vec::new(),
            next_id: 1_000,
            next_ip: 1,
        }
    }

    pub(super) fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Takes one token from the project's bucket.
    pub(super) fn rate_limit(&mut self, token: &str) -> RateState {
        let limit = self.config.rate_limit.max(1);
        let per_second = f64::from(limit) / 3600.0;
        let now = Instant::now();
        let Some(project) = self.projects.get_mut(token) else {
            return RateState {
                limit,
                remaining: 0,
                reset_unix: 0,
                allowed: false,
            };
        };
        let bucket = &mut project.bucket;
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(limit));
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let missing = f64::from(limit) - bucket.tokens;
        let reset_unix = unix_now() + (missing / per_second).ceil() as u64;
        RateState {
            limit,
            remaining: bucket.tokens.floor() as u32,
            reset_unix,
            allowed,
        }
    }

    /// Removes servers whose deletion has finished.
    pub(super) fn sweep(&mut self) {
        let now = Instant::now();
        let delay = self.config.action_delay;
        for project in self.projects.values_mut() {
            project.servers.retain(|_, server| {
                server
                    .delete_started
                    .is_none_or(|started| now < started + delay)
            });
        }
    }

    pub(super) fn new_action(
        &mut self,
        token: &str,
        command: &str,
        offset: Duration,
        resource: (i64, &'static str),
    ) -> i64 {
        let id = self.next_id();
        let action = ActionRecord {
            id,
            token: token.to_owned(),
            command: command.to_owned(),
            requested_at: Instant::now(),
            requested_wall: SystemTime::now(),
            offset,
            duration: self.config.action_delay,
            resources: vec![resource],
            fails: false,
        };
        self.actions.insert(id, action);
        id
    }

    pub(super) fn action_json(&self, id: i64) -> Value {
        self.actions
            .get(&id)
            .map(ActionRecord::to_json)
            .unwrap_or(Value::Null)
    }

    /// Public addresses from the documentation ranges (never routable).
    pub(super) fn next_addresses(&mut self) -> ((i64, String), (i64, String)) {
        let n = self.next_ip;
        self.next_ip += 1;
        let v4 = format!("203.0.113.{}", n % 250 + 1);
        let v6 = format!("2001:db8:{n:x}::/64");
        ((self.next_id(), v4), (self.next_id(), v6))
    }
}

impl ActionRecord {
    pub(super) fn to_json(&self) -> Value {
        let elapsed = Instant::now().saturating_duration_since(self.requested_at);
        let done_at = self.offset + self.duration;
        let (status, progress, finished) = if elapsed >= done_at {
            (
                if self.fails { "error" } else { "success" },
                100,
                Value::String(timestamp(self.requested_wall + done_at)),
            )
        } else if elapsed <= self.offset || self.duration.is_zero() {
            ("running", 0, Value::Null)
        } else {
            let share = (elapsed - self.offset).as_secs_f64() / self.duration.as_secs_f64();
            ("running", (share * 100.0).min(99.0) as u32, Value::Null)
        };
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|(id, kind)| json!({ "id": id, "type": kind }))
            .collect();
        json!({
            "id": self.id,
            "command": self.command,
            "status": status,
            "progress": progress,
            "started": timestamp(self.requested_wall + self.offset),
            "finished": finished,
            "resources": resources,
            "error": if self.fails && elapsed >= done_at {
                json!({ "code": "action_failed", "message": "injected action failure" })
            } else {
                Value::Null
            },
        })
    }
}

impl ServerRecord {
    pub(super) fn status(&self, delay: Duration) -> &'static str {
        if self.delete_started.is_some() {
            return "deleting";
        }
        let elapsed = Instant::now().saturating_duration_since(self.created_at);
        match (
            elapsed < delay,
            elapsed < delay * 2,
            self.start_after_create,
        ) {
            (true, _, _) => "initializing",
            (false, true, true) => "starting",
            (false, false, true) => "running",
            (false, _, false) => "off",
        }
    }

    pub(super) fn to_json(&self, delay: Duration) -> Value {
        let ipv4 = self.ipv4.as_ref().map(|(id, ip)| {
            let reversed: Vec<&str> = ip.split('.').rev().collect();
            json!({ "id": id, "ip": ip, "blocked": false, "dns_ptr": format!("static.{}.clients.your-server.de", reversed.join(".")) })
        });
        let ipv6 = self
            .ipv6
            .as_ref()
            .map(|(id, ip)| json!({ "id": id, "ip": ip, "blocked": false, "dns_ptr": [] }));
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status(delay),
            "created": self.created,
            "public_net": { "ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": [] },
            "private_net": [],
            "server_type": self.server_type,
            "datacenter": super::catalog::datacenter(&self.location),
            "location": self.location,
            "image": self.image,
            "iso": null,
            "rescue_enabled": false,
            "locked": false,
            "backup_window": null,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21_990_232_555_520u64,
            "protection": { "delete": self.delete_protected, "rebuild": self.delete_protected },
            "labels": self.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": self.server_type["disk"],
            "placement_group": null,
        })
    }
}

impl SshKeyRecord {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": self.labels,
            "created": self.created,
        })
    }
}

/// `2024-12-01T10:00:00+00:00`, the API's timestamp format.
pub(super) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('Z', "+00:00")
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
