//! Command line of `tracker-d`: every flag also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The Crawling@Home tracker: hands out Common Crawl jobs with leases to scrapers and GPU
/// scorers, stages their bundles and keeps the dedup sets, leaderboard and dashboard.
#[derive(Debug, Parser)]
#[command(name = "tracker-d", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "TRACKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr (journald adds its own timestamps under systemd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tracker's HTTP server.
    Serve(Box<ServeArgs>),
    /// Add jobs from a Common Crawl `wat.paths.gz` or a list of WAT URLs.
    Import(ImportArgs),
}

/// Flags of `tracker-d serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TRACKER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database: `sqlite://PATH` (created if missing) or `postgres://USER:PASS@HOST/NAME`.
    #[arg(
        long,
        env = "TRACKER_DATABASE_URL",
        default_value = "sqlite://tracker.sqlite"
    )]
    pub database_url: String,
    /// Most database connections (PostgreSQL; SQLite always uses one writer).
    #[arg(long, env = "TRACKER_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    /// URL that workers reach this tracker at, used in signed bundle URLs.
    /// Defaults to `http://` plus the bound address; required when listening on 0.0.0.0.
    #[arg(long, env = "TRACKER_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,
    /// Folder of the staging blob store (bundles between scrapers and GPU daemons).
    #[arg(long, env = "TRACKER_BLOB_DIR", default_value = "staging")]
    pub blob_dir: PathBuf,
    /// Key that signs bundle URLs (at least 32 characters). Defaults to a random key kept in the database.
    #[arg(long, env = "TRACKER_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// Secret for the admin endpoints, sent in the `x-cah-admin-secret` header. Unset: admin endpoints refuse everyone.
    #[arg(long, env = "TRACKER_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,
    /// How long a claimed job stays with its client without a heartbeat (e.g. `30m`, `90s`).
    #[arg(long, env = "TRACKER_LEASE", default_value = "30m", value_parser = humantime::parse_duration)]
    pub lease: std::time::Duration,
    /// Forget clients silent for this long (2021: 2 h); their jobs go back to the queue.
    #[arg(long, env = "TRACKER_CLIENT_TIMEOUT", default_value = "2h", value_parser = humantime::parse_duration)]
    pub client_timeout: std::time::Duration,
    /// How often the reaper expires leases, forgets idle clients and collects blobs.
    #[arg(long, env = "TRACKER_REAP_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reap_interval: std::time::Duration,
    /// How long the answers of the reads that need no token are reused: the dashboard, `/data`,
    /// `/leaderboard`, `/metrics`, `/api/jobCount` and `/api/ext/clients`. However many callers
    /// poll them, the database counts once per this period, one count at a time. `0s` counts
    /// on every call.
    #[arg(long, env = "TRACKER_READ_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub read_cache_ttl: std::time::Duration,
    /// How long signed upload and download URLs stay valid.
    #[arg(long, env = "TRACKER_URL_TTL", default_value = "6h", value_parser = humantime::parse_duration)]
    pub url_ttl: std::time::Duration,
    /// Keep a closed job's bundle this long before deleting it.
    #[arg(long, env = "TRACKER_BLOB_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub blob_grace: std::time::Duration,
    /// Largest bundle accepted, in bytes.
    #[arg(long, env = "TRACKER_MAX_BUNDLE_BYTES", default_value_t = 4 << 30)]
    pub max_bundle_bytes: u64,
    /// Largest JSON request body of the routes that take batches (`/api/ext/dedup`,
    /// `/api/isCompleted`), in bytes; every other route takes at most 64 KiB (or this, if
    /// smaller). Larger bodies get 413.
    #[arg(long, env = "TRACKER_MAX_JSON_BYTES", default_value_t = 8 << 20)]
    pub max_json_bytes: usize,
    /// Bytes that all JSON request bodies being read may hold at once. A body reserves its
    /// `Content-Length` before it is read (a chunked one, its buffer as it grows); one that
    /// does not fit gets 503 with `Retry-After` at once. Bodies of the batch routes may hold
    /// at most three quarters of it, so heartbeats and completions find room.
    #[arg(long, env = "TRACKER_JSON_BODY_BUDGET", default_value_t = 256 << 20)]
    pub json_body_budget: usize,
    /// Bytes of that budget the batch bodies (`/api/ext/dedup`, `/api/isCompleted`) from one
    /// address (IPv4, or an IPv6 /64) may hold at once, at least `--max-json-bytes`; beyond
    /// it, 503 with `Retry-After`. One host that opens batch bodies and never finishes them
    /// then cannot keep the budget full for everyone; its small bodies are not counted.
    /// Behind a reverse proxy every client has the proxy's address: raise it to the budget.
    #[arg(long, env = "TRACKER_JSON_BODY_BUDGET_PER_ADDRESS", default_value_t = 32 << 20)]
    pub json_body_budget_per_address: usize,
    /// Longest time to read a whole JSON request body; a slower one gets 408 (the body
    /// timeout bounds only the gaps between its bytes).
    #[arg(long, env = "TRACKER_JSON_BODY_DEADLINE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub json_body_deadline: std::time::Duration,
    /// Most jobs one client may hold at once. A claim beyond it gets fewer jobs, or an empty
    /// list (no work now), never an error. scraper-d holds 2 (one WAT) and clip-gpu-d up to
    /// its `--max-jobs` (default 8).
    #[arg(long, env = "TRACKER_MAX_JOBS_PER_CLIENT", default_value_t = 64)]
    pub max_jobs_per_client: u32,
    /// Hashes a client may add to each dedup set per job it completed. The default is a job's
    /// sample IDs, the most pairs a job can produce.
    #[arg(long, env = "TRACKER_DEDUP_PER_JOB", default_value_t = crate::import::IDS_PER_JOB)]
    pub dedup_per_job: u64,
    /// Hashes the clients registered from one address (IPv4, or an IPv6 /64) may add to each
    /// dedup set together beyond what their completed jobs earned, with no job held: what a
    /// restarted clip-gpu-d commits before it holds a job. A completion pays its client's part
    /// back; registering again buys nothing.
    #[arg(long, env = "TRACKER_DEDUP_START", default_value_t = 20_000)]
    pub dedup_start: u64,
    /// Held jobs of the asking client that each let its address add `--dedup-per-job` more
    /// hashes per set on credit, repaid by completions: clip-gpu-d adds a job's scored pairs
    /// before it completes the job. What is added on credit and never repaid (the jobs were
    /// released or expired) stays owed by the address until the tracker restarts, so an address
    /// adds at most `--dedup-start` plus this many jobs' worth without completing any.
    #[arg(long, env = "TRACKER_DEDUP_HELD_JOBS", default_value_t = 2)]
    pub dedup_held_jobs: u64,
    /// Registrations allowed per minute from one address, on average.
    #[arg(long, env = "TRACKER_REGISTER_PER_MINUTE", default_value_t = 30)]
    pub register_per_minute: u32,
    /// Registrations allowed at once from one address.
    #[arg(long, env = "TRACKER_REGISTER_BURST", default_value_t = 60)]
    pub register_burst: u32,
    /// Most clients registered at once, from all addresses together: beyond it a registration
    /// gets 503 with `Retry-After: 60` until clients say bye or are forgotten after
    /// `--client-timeout`. It bounds what a flood of registrations from many addresses (an
    /// IPv6 /48 holds 65,536 of the /64s the per-address limit counts) can add to the
    /// database and to memory.
    #[arg(long, env = "TRACKER_MAX_CLIENTS", default_value_t = 50_000)]
    pub max_clients: u64,
    /// Accept CPU completions that hand off a bundle stored elsewhere: an http(s) URL or a 2021
    /// `rsync <id>` (with `--upload-address`), which GPU clients then fetch, so turn it on only
    /// for CPU clients you trust (a URL naming a link-local or cloud metadata address, such as
    /// 169.254.169.254, is refused). Off: only bundles uploaded to this tracker (`blob:<key>`)
    /// are accepted.
    /// The variable takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "TRACKER_EXTERNAL_BUNDLES", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub external_bundles: bool,
    /// Reports that a CPU job's WAT cannot be used (scraper-d: no WARC record in it, cut inside
    /// a gzip member, over its `--max-wat-bytes`, 404 or 410) before the job fails for good.
    /// Each report sends the job behind every other open job; at this many it gets status
    /// `failed` and is never handed out again, until `POST /admin/reset-job` reopens it.
    #[arg(long, env = "TRACKER_MAX_WAT_FAILURES", default_value_t = 3)]
    pub max_wat_failures: u32,
    /// Legacy `upload_address` string for 2021 clients (an rsync target); defaults to our upload-URL endpoint.
    #[arg(long, env = "TRACKER_UPLOAD_ADDRESS")]
    pub upload_address: Option<String>,
    /// Most connections open at once; past it new connections wait in the listen backlog.
    /// Defaults to half of what the open-file limit (`ulimit -n`) leaves after 256 for the
    /// database and files, at least 16.
    #[arg(long, env = "TRACKER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Close a connection that has not sent a whole request head this long after it opened or
    /// after its last response (idle keep-alive connections included).
    #[arg(long, env = "TRACKER_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// Drop a request whose body (JSON or bundle upload) sends nothing for this long; a bundle's
    /// part file is deleted.
    #[arg(long, env = "TRACKER_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,
    /// Close a connection whose client reads nothing of its response for this long. The kernel
    /// reports progress only after about a third of the socket's send buffer (up to 4 MiB) was
    /// read, so a reader slower than that third per timeout is cut too: 5 min keeps readers of
    /// 5 KB/s and more.
    #[arg(long, env = "TRACKER_RESPONSE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub response_timeout: std::time::Duration,
    /// On SIGTERM, wait this long for requests in flight.
    #[arg(long, env = "TRACKER_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: std::time::Duration,
}

/// Flags of `tracker-d import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Database, as for `serve`.
    #[arg(
        long,
        env = "TRACKER_DATABASE_URL",
        default_value = "sqlite://tracker.sqlite"
    )]
    pub database_url: String,
    /// A `wat.paths.gz` (gzip or plain text, local path or http(s) URL), one WAT per line.
    #[arg(env = "TRACKER_IMPORT_SOURCE")]
    pub source: String,
    /// Base URL for relative paths in the source.
    #[arg(
        long,
        env = "TRACKER_IMPORT_BASE_URL",
        default_value = "https://data.commoncrawl.org/"
    )]
    pub base_url: url::Url,
    /// Import at most this many WATs (at least 1).
    #[arg(long, env = "TRACKER_IMPORT_LIMIT", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub limit: Option<usize>,
    /// Shuffle the WATs (claims then spread over crawl segments instead of walking them in
    /// order). The variable takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "TRACKER_IMPORT_SHUFFLE", value_parser = clap::builder::BoolishValueParser::new())]
    pub shuffle: bool,
}

/// `--public-url`: an absolute URL; an empty value (`TRACKER_PUBLIC_URL=` in an env file) is
/// explained instead of reported as a relative URL.
fn parse_public_url(value: &str) -> Result<url::Url, String> {
    if value.trim().is_empty() {
        return Err(
            "it is empty: give the http(s) URL workers reach this tracker at, or remove the variable"
                .to_owned(),
        );
    }
    url::Url::parse(value).map_err(|error| {
        format!("{error}: give an absolute http(s) URL such as https://tracker.example.org")
    })
}
