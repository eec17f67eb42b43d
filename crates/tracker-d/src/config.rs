//! Validated configuration of `tracker-d serve`, built from the command line before anything binds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::cli::ServeArgs;
use crate::connections::{self, ConnectionLimits};
use crate::http::JsonBodyLimits;

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for comparisons and signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Database URL (may hold a password).
    pub database_url: Secret,
    /// Most PostgreSQL connections.
    pub db_connections: u32,
    /// Public URL; `None` means derive it from the bound address.
    pub public_url: Option<Url>,
    /// Staging folder.
    pub blob_dir: PathBuf,
    /// URL signing key; `None` means the one kept in the database.
    pub signing_key: Option<Secret>,
    /// Largest bundle.
    pub max_bundle_bytes: u64,
    /// Caps, budget and deadline of JSON bodies.
    pub json_bodies: JsonBodyLimits,
    /// Reaper period.
    pub reap_interval: Duration,
    /// Grace on shutdown.
    pub shutdown_grace: Duration,
    /// Cap on connections and their timeouts.
    pub connections: ConnectionLimits,
    /// Settings the running tracker consults.
    pub settings: Settings,
}

/// Run-time settings of the tracker service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lease of a claim.
    pub lease: Duration,
    /// Idle time after which a client is forgotten.
    pub client_timeout: Duration,
    /// Lifetime of signed URLs.
    pub url_ttl: Duration,
    /// How long bundles of closed jobs are kept.
    pub blob_grace: Duration,
    /// Registration rate per address.
    pub register_per_minute: u32,
    /// Registration burst per address.
    pub register_burst: u32,
    /// Most clients registered at once.
    pub max_clients: u64,
    /// Admin secret.
    pub admin_secret: Option<Secret>,
    /// Legacy upload address.
    pub upload_address: Option<String>,
    /// Whether CPU completions may hand off bundles stored elsewhere (not `blob:`).
    pub external_bundles: bool,
    /// Most jobs one client holds at once; a claim beyond it gets fewer jobs, or none.
    pub max_jobs_per_client: u32,
    /// Dedup hashes each job a client completed earns it per set, and each counted held job
    /// lends (see `dedup::quota`).
    pub dedup_per_job: u64,
    /// Dedup hashes the clients of one address may owe per set beyond what their jobs earned.
    pub dedup_start: u64,
    /// Most held jobs of a client that lend it dedup credit.
    pub dedup_held_jobs: u64,
    /// Reports that a CPU job's WAT cannot be used before the job fails for good.
    pub max_wat_failures: u32,
    /// How long the answers of the tokenless reads are reused (zero: not at all).
    pub read_cache_ttl: Duration,
}

/// The largest `--max-json-bytes`: a body's bytes are reserved in the budget as one count.
const MAX_JSON_BYTES_LIMIT: usize = 1 << 30;

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = ConfigError;

    fn try_from(args: ServeArgs) -> Result<Self, Self::Error> {
        let fail = |message: &str| Err(ConfigError(message.to_owned()));
        if !(args.database_url.starts_with("sqlite:")
            || args.database_url.starts_with("postgres://")
            || args.database_url.starts_with("postgresql://"))
        {
            return fail("--database-url must start with sqlite:// or postgres://");
        }
        if args.listen.ip().is_unspecified() && args.public_url.is_none() {
            return fail(
                "--public-url is required when listening on all interfaces, so signed bundle urls point somewhere reachable",
            );
        }
        if let Some(url) = &args.public_url
            && (!matches!(url.scheme(), "http" | "https") || url.host().is_none())
        {
            return fail("--public-url must be an http(s) URL with a host");
        }
        if args.signing_key.as_ref().is_some_and(|key| key.len() < 32) {
            return fail("--signing-key must be at least 32 characters");
        }
        if args
            .admin_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 16)
        {
            return fail("--admin-secret must be at least 16 characters");
        }
        if args
            .admin_secret
            .as_ref()
            .is_some_and(|secret| secret.to_ascii_lowercase().contains("change-me"))
        {
            return fail(
                "--admin-secret (TRACKER_ADMIN_SECRET) is still the example's placeholder: set a random one (openssl rand -hex 32)",
            );
        }
        if args.lease < Duration::from_millis(100) {
            return Err(ConfigError(format!(
                "--lease {} is too short: at least 100ms",
                humantime::format_duration(args.lease)
            )));
        }
        if args.client_timeout < args.lease {
            return Err(ConfigError(format!(
                "--client-timeout {} is shorter than --lease {}: a client would be forgotten while it holds a lease; raise --client-timeout (TRACKER_CLIENT_TIMEOUT) or lower --lease (TRACKER_LEASE)",
                humantime::format_duration(args.client_timeout),
                humantime::format_duration(args.lease)
            )));
        }
        if args.reap_interval.is_zero() || args.url_ttl.is_zero() {
            return fail("--reap-interval and --url-ttl must be positive");
        }
        if args.max_clients == 0 {
            return fail("--max-clients must be at least 1");
        }
        if args.max_jobs_per_client == 0 {
            return fail("--max-jobs-per-client must be at least 1");
        }
        if args.max_wat_failures == 0 {
            return fail("--max-wat-failures must be at least 1");
        }
        if args.dedup_per_job == 0 {
            return fail("--dedup-per-job must be at least 1");
        }
        if args.max_bundle_bytes == 0 || args.max_json_bytes < 1024 || args.db_connections == 0 {
            return fail(
                "--max-bundle-bytes, --db-connections must be positive and --max-json-bytes at least 1024",
            );
        }
        if args.max_json_bytes > MAX_JSON_BYTES_LIMIT {
            return fail("--max-json-bytes must be at most 1 GiB");
        }
        let json_bodies = JsonBodyLimits {
            max_bytes: args.max_json_bytes,
            budget_bytes: args.json_body_budget,
            per_address_bytes: args.json_body_budget_per_address,
            deadline: args.json_body_deadline,
        };
        if args.json_body_budget_per_address < args.max_json_bytes {
            return Err(ConfigError(format!(
                "--json-body-budget-per-address {} is less than --max-json-bytes {}: no address could send its largest batch; raise it (TRACKER_JSON_BODY_BUDGET_PER_ADDRESS)",
                args.json_body_budget_per_address, args.max_json_bytes
            )));
        }
        if json_bodies.batch_budget() < args.max_json_bytes || args.json_body_budget > 1 << 40 {
            return Err(ConfigError(format!(
                "--json-body-budget {} leaves batch bodies {} bytes, less than --max-json-bytes {}: raise it (TRACKER_JSON_BODY_BUDGET) to at least 4/3 of --max-json-bytes, and at most 1 TiB",
                args.json_body_budget,
                json_bodies.batch_budget(),
                args.max_json_bytes
            )));
        }
        if args.json_body_deadline.is_zero() {
            return fail("--json-body-deadline must be positive");
        }
        if args.max_connections == Some(0)
            || args.header_timeout.is_zero()
            || args.body_timeout.is_zero()
            || args.response_timeout.is_zero()
        {
            return fail(
                "--max-connections, --header-timeout, --body-timeout and --response-timeout must be positive",
            );
        }
        Ok(ServeConfig {
            listen: args.listen,
            database_url: Secret(args.database_url),
            db_connections: args.db_connections,
            public_url: args.public_url,
            blob_dir: args.blob_dir,
            signing_key: args.signing_key.map(Secret),
            max_bundle_bytes: args.max_bundle_bytes,
            json_bodies,
            reap_interval: args.reap_interval,
            shutdown_grace: args.shutdown_grace,
            connections: ConnectionLimits {
                max_connections: args
                    .max_connections
                    .unwrap_or_else(connections::default_max_connections),
                header_timeout: args.header_timeout,
                body_timeout: args.body_timeout,
                response_timeout: args.response_timeout,
            },
            settings: Settings {
                lease: args.lease,
                client_timeout: args.client_timeout,
                url_ttl: args.url_ttl,
                blob_grace: args.blob_grace,
                register_per_minute: args.register_per_minute,
                register_burst: args.register_burst,
                max_clients: args.max_clients,
                admin_secret: args.admin_secret.map(Secret),
                upload_address: args.upload_address,
                external_bundles: args.external_bundles,
                max_jobs_per_client: args.max_jobs_per_client,
                dedup_per_job: args.dedup_per_job,
                dedup_start: args.dedup_start,
                dedup_held_jobs: args.dedup_held_jobs,
                max_wat_failures: args.max_wat_failures,
                read_cache_ttl: args.read_cache_ttl,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> Result<ServeConfig, ConfigError> {
        let mut argv = vec!["tracker-d", "serve"];
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("serve expected");
        };
        ServeConfig::try_from(*args)
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]).expect("valid");
        assert_eq!(config.settings.lease, Duration::from_secs(1800));
        assert_eq!(config.settings.max_jobs_per_client, 64);
        assert_eq!(config.settings.dedup_per_job, 500_000);
        assert_eq!(config.settings.dedup_held_jobs, 2);
        assert_eq!(config.settings.max_wat_failures, 3);
        assert!(format!("{config:?}").contains("***"));
    }

    #[test]
    fn refuses_what_cannot_work() {
        for bad in [
            &["--database-url", "mysql://x"][..],
            &["--listen", "0.0.0.0:80"],
            &["--signing-key", "short"],
            &["--lease", "10ms"],
            &["--lease", "3h"],
            &["--public-url", "ftp://x"],
            &["--max-jobs-per-client", "0"],
            &["--max-clients", "0"],
            &["--dedup-per-job", "0"],
            &["--max-wat-failures", "0"],
            &["--max-connections", "0"],
            &["--header-timeout", "0s"],
            &["--body-timeout", "0s"],
            &["--json-body-deadline", "0s"],
            &[
                "--json-body-budget",
                "1000000",
                "--max-json-bytes",
                "800000",
            ],
            &["--max-json-bytes", "2000000000"],
            &[
                "--json-body-budget-per-address",
                "1000000",
                "--max-json-bytes",
                "2000000",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let message = parse(&["--lease", "3h"]).expect_err("longer than the client timeout");
        assert!(
            message
                .to_string()
                .contains("--client-timeout 2h is shorter than --lease 3h"),
            "{message}"
        );
        assert!(
            parse(&[
                "--listen",
                "0.0.0.0:80",
                "--public-url",
                "http://tracker.example"
            ])
            .is_ok()
        );
    }

    #[test]
    fn placeholders_and_empty_values_are_explained() {
        let message = parse(&["--admin-secret", "change-me-to-a-long-random-secret"])
            .expect_err("the example's placeholder");
        assert!(
            message.to_string().contains("placeholder")
                && message.to_string().contains("openssl rand -hex 32"),
            "{message}"
        );
        let empty = Cli::try_parse_from(["tracker-d", "serve", "--public-url", ""])
            .expect_err("an empty url")
            .to_string();
        assert!(empty.contains("it is empty"), "{empty}");
        let Command::Serve(args) =
            Cli::try_parse_from(["tracker-d", "serve", "--external-bundles", "1"])
                .expect("1 is true")
                .command
        else {
            panic!("serve expected");
        };
        assert!(args.external_bundles);
    }

    #[test]
    fn secrets_never_print() {
        let config = parse(&["--admin-secret", "0123456789abcdef-admin"]).expect("valid");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
