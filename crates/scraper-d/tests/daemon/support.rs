//! Shared helpers: the test web, a tracker, configs that reach only 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cah_testkit::dns::{DnsConfig, DnsServer};
use cah_testkit::images::ImageKind;
use cah_testkit::names::DnsBehaviour;
use cah_testkit::photos::PhotoCorpus;
use cah_testkit::web::{Expected, WebConfig, WebServer};
use clap::Parser;
use scraper_d::Candidate;
use scraper_d::config::RunConfig;
use scraper_d::fetch::Fetcher;
use scraper_d::job::Pipeline;
use scraper_d::resolver::Resolver;
use scraper_d::stats::Outcome;

use tracker_d::testing::InProcess;

/// The per-image time budget of the tests.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(1500);

pub(crate) struct TestWeb {
    pub(crate) dns: DnsServer,
    pub(crate) web: WebServer,
}

pub(crate) async fn start_web() -> TestWeb {
    let dns = DnsServer::start_local(DnsConfig::quick())
        .await
        .expect("dns starts");
    let corpus = PhotoCorpus::shared().expect("photos");
    let web = WebServer::start_local(WebConfig::standard(), corpus)
        .await
        .expect("web starts");
    TestWeb { dns, web }
}

/// A run config whose resolver asks only `dns` and whose fetcher may reach only 127.0.0.1.
pub(crate) fn run_config(tracker: &str, dns: SocketAddr, work_dir: &Path) -> RunConfig {
    let argv = [
        "scraper-d",
        "run",
        "--tracker",
        tracker,
        "--nickname",
        "scraper-test",
        "--node-name",
        "node-7",
        "--work-dir",
        &work_dir.display().to_string(),
        "--nameserver",
        &dns.to_string(),
        "--allow-cidr",
        "127.0.0.1/32",
        "--timeout",
        "1500ms",
        "--breaker-threshold",
        "0",
        "--heartbeat",
        "1s",
        "--idle-wait",
        "1s",
        "--shutdown-grace",
        "1s",
        "--exit-when-idle",
    ];
    let args = scraper_d::cli::Args::try_parse_from(argv).expect("flags parse");
    let scraper_d::cli::Command::Run(run) = args.command else {
        panic!("run was given");
    };
    let mut config = RunConfig::try_from(*run).expect("valid config");
    // Shorter than the flags allow, to keep the tests quick.
    config.heartbeat_interval = Duration::from_millis(200);
    config.idle_wait = Duration::from_millis(100);
    // `slow-` names answer after 300 ms; `drop-` names cost one timeout.
    config.resolver.timeout = Duration::from_millis(1000);
    config.resolver.attempts = 1;
    config.fetch.politeness.max_backoff = Duration::from_millis(50);
    config.decode_threads = 2;
    config
}

pub(crate) fn pipeline(config: &RunConfig) -> Pipeline {
    let resolver = Resolver::new(&config.resolver, config.policy.clone()).expect("resolver");
    Pipeline {
        fetcher: Fetcher::new(config.fetch.clone(), resolver).expect("fetcher"),
        validate: Arc::new(config.validate.clone()),
        resize: Arc::new(config.resize.clone()),
        cpu: Arc::new(tokio::sync::Semaphore::new(config.decode_threads)),
        concurrency: config.concurrency,
        tail: config.tail,
    }
}

/// Candidate number `index` of a test half, for `url`.
pub(crate) fn candidate(index: usize, url: String) -> Candidate {
    Candidate {
        sample_id: 1000 + index as u64,
        half: 0,
        url,
        alt: format!("picture number {index}"),
        page_url: "http://blog.test/page.html".to_owned(),
        license: None,
        language: None,
        pair_hash: index as u64,
    }
}

/// What the pipeline made of `candidate`.
pub(crate) async fn outcome(pipeline: &Pipeline, candidate: Candidate) -> Outcome {
    match pipeline.process(candidate).await {
        Ok(_) => Outcome::Ok,
        Err(outcome) => outcome,
    }
}

/// The outcome our fetcher must report for what cah-testkit predicts, with at least
/// `min_bytes` for a picture and `TIMEOUT` per request.
pub(crate) fn outcome_for(expected: &Expected) -> Outcome {
    let image = |kind: &ImageKind| match kind {
        ImageKind::Jpeg | ImageKind::Png | ImageKind::Webp => Outcome::Ok,
        _ => Outcome::BadFormat,
    };
    match expected.after_redirects(5) {
        Expected::Image { kind } | Expected::WrongContentType { kind } => image(&kind),
        Expected::RobotsTag { tag, kind } => {
            if ["noai", "noimageai", "noindex", "noimageindex"].contains(&tag.as_str()) {
                Outcome::OptOut
            } else {
                image(&kind)
            }
        }
        Expected::TdmReserved { .. } => Outcome::OptOut,
        Expected::Status { status, .. } => match status {
            429 => Outcome::RateLimited,
            400..=499 => Outcome::Http4xx,
            500..=599 => Outcome::Http5xx,
            200..=299 => Outcome::BadFormat,
            _ => Outcome::HttpOther,
        },
        Expected::Redirected { .. } => unreachable!("after_redirects resolves chains"),
        Expected::RedirectLoop => Outcome::RedirectLoop,
        Expected::TooManyRedirects => Outcome::TooManyRedirects,
        Expected::PrivateRedirect { .. } => Outcome::PrivateAddress,
        Expected::OverlongRedirect => Outcome::BadUrl,
        Expected::SlowHeaders { delay, then } => {
            if delay >= TIMEOUT {
                Outcome::Timeout
            } else {
                outcome_for(&then)
            }
        }
        Expected::SlowBody | Expected::StalledBody => Outcome::Timeout,
        Expected::EndlessBody | Expected::HugeContentLength => Outcome::TooBig,
        Expected::ConnectionReset => Outcome::BodyError,
        Expected::NotAnImage => Outcome::BadFormat,
        Expected::EmptyBody => Outcome::TooSmall,
        Expected::Truncated | Expected::Corrupt => Outcome::DecodeError,
        Expected::Bomb | Expected::ZipBomb => Outcome::TooBig,
        Expected::ScanBomb => Outcome::DecodeError,
        Expected::RobotsDisallowed => Outcome::Robots,
        Expected::Dns(DnsBehaviour::Private | DnsBehaviour::Metadata) => Outcome::PrivateAddress,
        Expected::Dns(DnsBehaviour::NxDomain | DnsBehaviour::NoData) => Outcome::DnsFailure,
        Expected::Dns(_) => Outcome::ResolverError,
    }
}

/// A running tracker-d on SQLite.
pub(crate) struct TestTracker {
    pub(crate) base: String,
    pub(crate) database_url: String,
    pub(crate) dir: tempfile::TempDir,
    server: Option<InProcess>,
}

impl TestTracker {
    pub(crate) async fn start(extra: &[&str]) -> TestTracker {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = format!("sqlite://{}", dir.path().join("tracker.sqlite").display());
        let server = InProcess::start(&database_url, &dir.path().join("staging"), extra).await;
        TestTracker {
            base: format!("{}/", server.base()),
            database_url,
            dir,
            server: Some(server),
        }
    }

    /// Imports WAT URLs as jobs (two halves each).
    pub(crate) async fn import(&self, urls: &[String]) {
        let db = tracker_d::db::Db::connect(&self.database_url, 2)
            .await
            .expect("db");
        tracker_d::import::import(&db, urls, false, |_| {})
            .await
            .expect("import");
        db.close().await;
    }

    pub(crate) async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// Claims `n` GPU jobs as a GPU client and downloads their bundles.
pub(crate) async fn gpu_bundles(
    tracker_base: &str,
    n: u32,
) -> Vec<(cah_protocol::ext::Job, Vec<u8>)> {
    gpu_claim_bundles(tracker_base, "gpu-test", n).await.1
}

/// [`gpu_bundles`] as a GPU client registered as `nickname`, which is returned too (it holds
/// the jobs, so it may report them invalid).
pub(crate) async fn gpu_claim_bundles(
    tracker_base: &str,
    nickname: &str,
    n: u32,
) -> (
    cah_tracker_client::Session,
    Vec<(cah_protocol::ext::Job, Vec<u8>)>,
) {
    let base = url::Url::parse(tracker_base).expect("base");
    let gpu = cah_tracker_client::TrackerClient::with_defaults(base.clone())
        .expect("client")
        .register(nickname, cah_protocol::ClientType::Gpu)
        .await
        .expect("register");
    let jobs = gpu.claim(n, false).await.expect("claim gpu jobs");
    assert_eq!(jobs.len(), n as usize);
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let mut bundles = Vec::new();
    for job in jobs {
        let location = job.bundle.clone().expect("gpu job has a bundle");
        let bytes = http
            .get(base.join(&location.url).expect("bundle url"))
            .send()
            .await
            .expect("get bundle")
            .error_for_status()
            .expect("bundle status")
            .bytes()
            .await
            .expect("bundle body");
        bundles.push((job, bytes.to_vec()));
    }
    (gpu, bundles)
}

/// CPU jobs the tracker has open (not claimed, not done).
pub(crate) async fn open_cpu_jobs(tracker: &TestTracker) -> u64 {
    let base = url::Url::parse(&tracker.base).expect("base");
    cah_tracker_client::TrackerClient::with_defaults(base)
        .expect("client")
        .job_count(cah_protocol::ClientType::Cpu)
        .await
        .expect("job count")
}

/// Runs the daemon until it exits idle (at most 60 s) and returns its summary.
pub(crate) async fn run_until_idle(config: RunConfig) -> scraper_d::daemon::RunSummary {
    tokio::time::timeout(
        Duration::from_secs(60),
        scraper_d::daemon::run(config, std::future::pending()),
    )
    .await
    .expect("the daemon exits when idle")
    .expect("daemon runs")
}

/// Files under `dir`, in every subfolder; 0 when it does not exist.
pub(crate) fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}
