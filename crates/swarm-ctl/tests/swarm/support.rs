//! A test world: the fake Hetzner API with some projects, an accounts file, a state folder, and
//! a way to run swarm-ctl commands and read back what they printed.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use cah_testkit::hetzner::{HetznerConfig, HetznerServer, ProjectConfig};
use clap::Parser;
use serde_json::{Value, json};
use swarm_ctl::Args;

/// Every test's swarm.
pub(crate) const SWARM: &str = "alpha";

/// One account of the world: its token, fake server limit and accounts-file entry.
pub(crate) struct AccountSpec {
    pub(crate) name: &'static str,
    pub(crate) server_limit: usize,
    /// `max_nodes` in the accounts file.
    pub(crate) max_nodes: i64,
}

pub(crate) struct World {
    pub(crate) hetzner: HetznerServer,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) specs: Vec<AccountSpec>,
    pub(crate) extra_args: Vec<String>,
}

impl AccountSpec {
    pub(crate) fn token(&self) -> String {
        format!("token-{}-0123456789abcdef", self.name)
    }
}

impl World {
    /// A fake API with one project per account, fast actions and a generous rate limit.
    pub(crate) async fn start(specs: Vec<AccountSpec>) -> World {
        World::start_with_delay(specs, Duration::from_millis(20)).await
    }

    /// As [`World::start`], with actions (and deletions) that take `action_delay`.
    pub(crate) async fn start_with_delay(specs: Vec<AccountSpec>, action_delay: Duration) -> World {
        let projects = specs
            .iter()
            .map(|spec| ProjectConfig {
                token: spec.token(),
                server_limit: spec.server_limit,
            })
            .collect();
        let hetzner = HetznerServer::start_local(HetznerConfig {
            projects,
            // 100 per second refill: a 429 costs a 10 ms wait.
            rate_limit: 360_000,
            action_delay,
        })
        .await
        .expect("fake hetzner starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut toml = String::from(
            "[bootstrap]\nscraper_url = \"https://dl.example.org/scraper-d\"\n\
             scraper_sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
             tracker_url = \"https://tracker.example.org/\"\n\n",
        );
        for spec in &specs {
            let token_file = dir.path().join(format!("{}.token", spec.name));
            std::fs::write(&token_file, format!("{}\n", spec.token())).expect("token file");
            // As deploy/swarm.example.toml asks: only the owner may read it.
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600");
            toml.push_str(&format!(
                "[[account]]\nname = \"{}\"\ntoken_file = \"{}\"\nnickname = \"nick-{}\"\nmax_nodes = {}\n\n",
                spec.name,
                token_file.display(),
                spec.name,
                spec.max_nodes
            ));
        }
        std::fs::write(dir.path().join("swarm.toml"), toml).expect("accounts file");
        World {
            hetzner,
            dir,
            specs,
            extra_args: Vec::new(),
        }
    }

    /// One unlimited account with the fake's default limit of 25.
    pub(crate) async fn single() -> World {
        World::start(vec![AccountSpec {
            name: "main",
            server_limit: 25,
            max_nodes: -1,
        }])
        .await
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `swarm-ctl` flags for this world, then `command`.
    pub(crate) fn args(&self, command: &[&str]) -> Args {
        Args::try_parse_from(self.argv(command)).expect("flags parse")
    }

    /// The command line of [`World::args`], program name first.
    pub(crate) fn argv(&self, command: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = [
            "swarm-ctl",
            "--config",
            &self.dir.path().join("swarm.toml").display().to_string(),
            "--state-dir",
            &self.state_dir().display().to_string(),
            "--api-url",
            &self.hetzner.base_url(),
            "--swarm",
            SWARM,
            "--poll-interval",
            "20ms",
            "--api-retries",
            "12",
            "--api-retry-base",
            "5ms",
            "--api-retry-cap",
            "50ms",
            "--wait-timeout",
            "20s",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        argv.extend(self.extra_args.iter().cloned());
        argv.extend(command.iter().map(|arg| (*arg).to_owned()));
        argv
    }

    /// Runs the built `swarm-ctl` binary with `command` and the extra environment `env`
    /// (the only way to test what clap reads from the environment without mutating our own).
    pub(crate) async fn run_binary(
        &self,
        command: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let argv = self.argv(command);
        tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm-ctl"))
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("swarm-ctl binary runs")
    }

    /// Creates node `name` of the swarm in the first account directly through the API, as an
    /// `up` interrupted right after its create call leaves it.
    pub(crate) async fn create_interrupted_node(&self, name: &str) {
        let body = json!({
            "name": name, "server_type": "cx22", "image": "debian-12", "location": "fsn1",
            "labels": { "managed-by": "cah-swarm", "swarm": SWARM, "account": "main" },
        });
        self.api(0, reqwest::Method::POST, "/servers", Some(body))
            .await;
    }

    /// Runs `command`; its result and everything it printed.
    pub(crate) async fn run(&self, command: &[&str]) -> (anyhow::Result<()>, String) {
        let mut out = Vec::new();
        let no_env = |_: &str| None;
        let result = swarm_ctl::run(
            self.args(command),
            &no_env,
            &mut out,
            std::future::pending(),
        )
        .await;
        let text = String::from_utf8(out).expect("utf-8 output");
        for spec in &self.specs {
            assert!(
                !text.contains(&spec.token()),
                "a token was printed:\n{text}"
            );
        }
        (result, text)
    }

    /// Runs `command` and fails the test if it fails.
    pub(crate) async fn ok(&self, command: &[&str]) -> String {
        let (result, text) = self.run(command).await;
        if let Err(error) = result {
            panic!("swarm-ctl {command:?} failed: {error:#}\noutput:\n{text}");
        }
        text
    }

    /// The servers of an account as the API lists them (JSON).
    pub(crate) async fn servers(&self, account: usize) -> Vec<Value> {
        let body = self
            .api(account, reqwest::Method::GET, "/servers?per_page=50", None)
            .await;
        body["servers"].as_array().cloned().unwrap_or_default()
    }

    /// The id of the server named `name` in `account`.
    pub(crate) async fn server_id(&self, account: usize, name: &str) -> i64 {
        self.servers(account)
            .await
            .iter()
            .find(|server| server["name"] == name)
            .and_then(|server| server["id"].as_i64())
            .unwrap_or_else(|| panic!("no server {name} in account {account}"))
    }

    /// Creates a server outside swarm-ctl (someone else's server in the same project).
    pub(crate) async fn foreign_server(&self, account: usize, name: &str, labels: Value) -> i64 {
        let body = json!({ "name": name, "server_type": "cx22", "image": "debian-12", "location": "fsn1", "labels": labels });
        let created = self
            .api(account, reqwest::Method::POST, "/servers", Some(body))
            .await;
        created["server"]["id"].as_i64().expect("server id")
    }

    /// A raw API call with the account's token.
    pub(crate) async fn api(
        &self,
        account: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.hetzner.base_url()))
            .bearer_auth(self.specs[account].token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .expect("fake api answers")
            .json()
            .await
            .expect("json answer")
    }

    /// Recorded requests with `method` whose path starts with `path`.
    pub(crate) fn count_requests(&self, method: &str, path: &str) -> usize {
        self.hetzner
            .requests()
            .iter()
            .filter(|request| request.method == method && request.path.starts_with(path))
            .count()
    }
}

/// Names of servers in a JSON list.
pub(crate) fn names(servers: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = servers
        .iter()
        .filter_map(|server| server["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}
