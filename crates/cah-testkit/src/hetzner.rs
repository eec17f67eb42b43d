//! A fake Hetzner Cloud API (reference §1) on loopback, with the real JSON shapes.
//!
//! Every bearer token is one project with its own servers, SSH keys, server limit and rate-limit
//! bucket. Servers go `initializing` → `starting` → `running` and actions `running` → `success`
//! as `action_delay` passes. Every request is recorded for assertions, and errors (a 429 storm,
//! 503s, `conflict`) can be injected.

mod catalog;
mod routes;
pub mod selector;
mod servers;
mod state;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::error::TestkitError;
use crate::serving::Serving;
pub use routes::fingerprint;
use state::World;

/// One project: the token that reaches it and its server limit.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    pub token: String,
    pub server_limit: usize,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct HetznerConfig {
    pub projects: Vec<ProjectConfig>,
    /// Requests per hour per project (the real default is 3600); the bucket refills at limit/3600 per second.
    pub rate_limit: u32,
    /// How long each action takes (create, start, delete); servers run after twice this.
    pub action_delay: Duration,
}

impl HetznerConfig {
    /// One project per token, 25 servers each, 3600 requests per hour, 50 ms actions.
    pub fn quick(tokens: &[&str]) -> Self {
        Self {
            projects: tokens
                .iter()
                .map(|token| ProjectConfig {
                    token: (*token).to_owned(),
                    server_limit: 25,
                })
                .collect(),
            rate_limit: 3600,
            action_delay: Duration::from_millis(50),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: Option<String>,
    /// The raw body, when there was one.
    pub body: Option<String>,
    /// The bearer token, when there was one.
    pub token: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

struct Shared {
    world: Mutex<World>,
}

/// A running fake; dropping it stops it.
pub struct HetznerServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serving: Serving,
}

/// The router of the fake API (every path goes to one handler).
fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(routes::handle).with_state(shared)
}

impl HetznerServer {
    /// Serves on an already bound listener.
    pub fn start(listener: TcpListener, config: HetznerConfig) -> Result<Self, TestkitError> {
        if config.projects.is_empty() {
            return Err(TestkitError::Config(
                "the fake hetzner api needs at least one project token".into(),
            ));
        }
        let addr = listener.local_addr().map_err(TestkitError::Socket)?;
        let n_projects = config.projects.len();
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(config)),
        });
        let app = router(shared.clone());
        let serving = Serving::spawn("fake hetzner api", |shutdown| {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .into_future()
        });
        tracing::info!(%addr, n_projects, "fake hetzner api listening");
        Ok(Self {
            addr,
            shared,
            serving,
        })
    }

    pub async fn start_local(config: HetznerConfig) -> Result<Self, TestkitError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestkitError::Socket)?;
        Self::start(listener, config)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}/v1`, the counterpart of `https://api.hetzner.cloud/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.world().requests.clear();
    }

    /// The next `count` authenticated requests get 429 `rate_limit_exceeded`.
    pub fn inject_rate_limit_storm(&self, count: usize) {
        self.inject_errors(count, 429, "rate_limit_exceeded");
    }

    /// The next `count` authenticated requests fail with `status` and error `code`.
    pub fn inject_errors(&self, count: usize, status: u16, code: &str) {
        let mut world = self.world();
        world
            .injected
            .extend(std::iter::repeat_n((status, code.to_owned()), count));
    }

    /// The request `method path` (`"POST"`, `"/v1/servers"`) that comes after `skip` such
    /// requests fails once with `status` and error `code`; the others are answered as usual.
    pub fn inject_error_on(&self, method: &str, path: &str, skip: usize, status: u16, code: &str) {
        self.world().targeted.push(state::Targeted {
            method: method.to_owned(),
            path: path.to_owned(),
            skip,
            fault: state::Fault::Error(status, code.to_owned()),
        });
    }

    /// The request `method path` that comes after `skip` such requests is carried out, but the
    /// connection breaks before its answer's body is sent (a lost answer: the client cannot
    /// tell whether it was done).
    pub fn lose_answer_on(&self, method: &str, path: &str, skip: usize) {
        self.world().targeted.push(state::Targeted {
            method: method.to_owned(),
            path: path.to_owned(),
            skip,
            fault: state::Fault::LoseAnswer,
        });
    }

    /// The next `count` server deletes are accepted but their action ends with `status: error`,
    /// and the server stays (as when Hetzner fails a delete).
    pub fn fail_delete_actions(&self, count: usize) {
        self.world().failing_deletes += count;
    }

    /// Ids of the servers of the project reached by `token` (deleting ones included).
    pub fn server_ids(&self, token: &str) -> Vec<i64> {
        let mut world = self.world();
        world.sweep();
        world
            .projects
            .get(token)
            .map(|project| project.servers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The `user_data` a server was created with.
    pub fn user_data(&self, token: &str, server_id: i64) -> Option<String> {
        servers::user_data(&self.world(), token, server_id)
    }

    /// The current labels of a server.
    pub fn labels(&self, token: &str, server_id: i64) -> Option<BTreeMap<String, String>> {
        servers::labels_of(&self.world(), token, server_id)
    }

    pub async fn shutdown(mut self) {
        self.serving.shutdown().await;
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared
            .world
            .lock()
            .expect("hetzner world lock poisoned")
    }
}
