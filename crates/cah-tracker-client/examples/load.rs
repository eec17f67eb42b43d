//! Load generator for a tracker: N simulated workers loop claim → heartbeat → complete.
//!
//! Each worker registers, then claims one job at a time through the extension API, renews its
//! lease once and completes it, until the duration ends or the tracker runs out of jobs. HYBRID
//! workers (the default) close a job in one cycle; `--role pipeline` alternates CPU workers,
//! which hand a bundle off, and GPU workers, which close the resulting GPU jobs.
//!
//! Without `--rate` the loop is closed: each worker starts its next cycle as soon as the last
//! one ended, which measures the most cycles per second the tracker sustains. With `--rate R`
//! the load is open-loop: cycle `n` (counted over all workers) is due `n / R` seconds after the
//! start, and the next free worker starts it then, or at once if it is already late. Latencies
//! are still measured per call from the moment the request is sent; how late cycles started
//! is reported apart (`start lag`), so a tracker that cannot keep up shows as lag and as fewer
//! achieved cycles per second than offered, not as a quietly lower offered load. Use enough
//! workers to cover the rate times a cycle's latency, or the workers themselves are the limit.
//!
//! It prints job cycles per second, latency percentiles per call and errors by kind, as a table
//! and as one JSON line (`scripts/bench-tracker.sh` collects the JSON).

// Stdout is this tool's report.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use cah_protocol::ClientType;
use cah_tracker_client::{
    BundleBody, ClientConfig, JobOutput, RetryPolicy, Session, TrackerClient, TrackerError,
};
use clap::Parser;
use tokio::time::Instant;
use url::Url;

/// Simulated tracker workers, for throughput and latency measurements.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the tracker.
    #[arg(long, env = "LOAD_TRACKER_URL")]
    tracker_url: Url,
    /// Concurrent simulated workers.
    #[arg(long, env = "LOAD_WORKERS", default_value_t = 200)]
    workers: usize,
    /// How long to run (humantime: `20s`, `2m`).
    #[arg(long, env = "LOAD_DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// What the workers register as.
    #[arg(long, env = "LOAD_ROLE", value_enum, default_value_t = Role::Hybrid)]
    role: Role,
    /// Keep polling when the tracker has no job, instead of stopping the worker.
    #[arg(long, env = "LOAD_KEEP_GOING")]
    keep_going: bool,
    /// Bytes each CPU job uploads through the staging store; 0 hands off a placeholder
    /// 2021-style string (`rsync load-<number>`) instead of a `blob:` key.
    #[arg(long, env = "LOAD_UPLOAD_BYTES", default_value_t = 0)]
    upload_bytes: usize,
    /// Attempts per call, the first included (1: errors show as they happen).
    #[arg(long, env = "LOAD_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Limit of one request.
    #[arg(long, env = "LOAD_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Leaderboard nickname prefix of the workers.
    #[arg(long, env = "LOAD_NICKNAME", default_value = "load")]
    nickname: String,
    /// Free-form label copied into the JSON line (the database, say).
    #[arg(long, env = "LOAD_LABEL", default_value = "")]
    label: String,
    /// Offered load in job cycles per second, all workers together (open loop); unset runs
    /// closed loop at the highest rate the tracker sustains.
    #[arg(long, env = "LOAD_RATE", value_parser = parse_rate)]
    rate: Option<f64>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of cycles per second"
        )),
    }
}

/// A paced cycle that starts later than this after its due time counts as late. Tokio's
/// timers tick in whole milliseconds, so a start on time still shows up to about 1 ms of lag.
const LATE_AFTER: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Every worker is HYBRID: one cycle closes a job.
    Hybrid,
    /// Every worker is CPU: a cycle turns a CPU job into a GPU job.
    Cpu,
    /// Every worker is GPU: a cycle closes a GPU job.
    Gpu,
    /// Alternating CPU and GPU workers.
    Pipeline,
}

/// Latencies and errors one worker saw.
#[derive(Debug, Default)]
struct Recorder {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
    cycles: u64,
    empty_claims: u64,
    /// With `--rate`: how long after its due time each cycle started.
    start_lags: Vec<Duration>,
}

impl Recorder {
    /// Awaits `call` and records its latency, and its error kind if it failed.
    async fn timed<T>(
        &mut self,
        name: &'static str,
        call: impl Future<Output = Result<T, TrackerError>>,
    ) -> Result<T, TrackerError> {
        let started = Instant::now();
        let result = call.await;
        self.latencies
            .entry(name)
            .or_default()
            .push(started.elapsed());
        if let Err(error) = &result {
            *self
                .errors
                .entry(format!("{name}:{}", error.kind()))
                .or_default() += 1;
        }
        result
    }

    fn merge(&mut self, other: Recorder) {
        for (name, latencies) in other.latencies {
            self.latencies.entry(name).or_default().extend(latencies);
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.cycles += other.cycles;
        self.empty_claims += other.empty_claims;
        self.start_lags.extend(other.start_lags);
    }
}

/// What every worker shares.
struct Plan {
    client: TrackerClient,
    args: Args,
    /// When the measured run began: at launch in closed loop; with `--rate`, once every worker
    /// has registered, so registrations do not eat into the paced run. It ends `duration` later.
    epoch: OnceLock<Instant>,
    /// The shared open-loop schedule, with `--rate`.
    schedule: Option<Schedule>,
    /// CPU and HYBRID workers still running; GPU workers wait for their output while any are.
    producers: AtomicUsize,
    upload: Bytes,
}

impl Plan {
    fn epoch(&self) -> Instant {
        *self
            .epoch
            .get()
            .expect("the epoch is set before any worker starts cycles")
    }

    fn deadline(&self) -> Instant {
        self.epoch() + self.args.duration
    }
}

/// The open-loop schedule of `--rate`: cycle `n` (over all workers) is due at `epoch + n / rate`.
struct Schedule {
    rate: f64,
    next_cycle: AtomicU64,
    /// Every worker waits here after registering; the first one through sets the epoch.
    registered: tokio::sync::Barrier,
}

impl Schedule {
    /// Takes the next cycle of the schedule; `None` once cycles would be due after the deadline.
    fn next_due(&self, epoch: Instant, deadline: Instant) -> Option<Instant> {
        let cycle = self.next_cycle.fetch_add(1, Ordering::Relaxed);
        let due = epoch + Duration::from_secs_f64(cycle as f64 / self.rate);
        (due < deadline).then_some(due)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let mut config = ClientConfig::new(args.tracker_url.clone());
    config.request_timeout = args.request_timeout;
    config.retry = RetryPolicy {
        max_attempts: args.max_attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
        max_elapsed: Duration::from_secs(10),
    };
    let client = TrackerClient::new(config).context("failed to build the tracker client")?;
    let producers = (0..args.workers)
        .filter(|index| role_of(args.role, *index) != ClientType::Gpu)
        .count();
    let schedule = args.rate.map(|rate| Schedule {
        rate,
        next_cycle: AtomicU64::new(0),
        registered: tokio::sync::Barrier::new(args.workers),
    });
    let epoch = OnceLock::new();
    if schedule.is_none() {
        epoch.get_or_init(Instant::now);
    }
    let plan = Arc::new(Plan {
        client,
        epoch,
        schedule,
        producers: AtomicUsize::new(producers),
        upload: Bytes::from(vec![0x5a; args.upload_bytes]),
        args,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.args.workers {
        tasks.spawn(worker(Arc::clone(&plan), index));
    }
    let mut total = Recorder::default();
    while let Some(result) = tasks.join_next().await {
        total.merge(result.context("a worker panicked")?);
    }
    report(&plan.args, &total, plan.epoch().elapsed());
    Ok(())
}

fn role_of(role: Role, index: usize) -> ClientType {
    match role {
        Role::Hybrid => ClientType::Hybrid,
        Role::Cpu => ClientType::Cpu,
        Role::Gpu => ClientType::Gpu,
        Role::Pipeline if index.is_multiple_of(2) => ClientType::Cpu,
        Role::Pipeline => ClientType::Gpu,
    }
}

async fn worker(plan: Arc<Plan>, index: usize) -> Recorder {
    let client_type = role_of(plan.args.role, index);
    let mut recorder = Recorder::default();
    let nickname = format!("{}-{index}", plan.args.nickname);
    let registered = recorder
        .timed("register", plan.client.register(&nickname, client_type))
        .await;
    if let Some(schedule) = &plan.schedule {
        // Every worker passes here, registered or not, or the others would wait forever.
        schedule.registered.wait().await;
        plan.epoch.get_or_init(Instant::now);
    }
    if let Ok(mut session) = registered {
        work(&plan, &mut session, &mut recorder).await;
        let _ = recorder.timed("bye", session.bye()).await;
    }
    if client_type != ClientType::Gpu {
        plan.producers.fetch_sub(1, Ordering::SeqCst);
    }
    recorder
}

async fn work(plan: &Plan, session: &mut Session, recorder: &mut Recorder) {
    let deadline = plan.deadline();
    loop {
        match &plan.schedule {
            None if Instant::now() >= deadline => return,
            None => {}
            Some(schedule) => {
                let Some(due) = schedule.next_due(plan.epoch(), deadline) else {
                    return;
                };
                tokio::time::sleep_until(due).await;
                recorder
                    .start_lags
                    .push(Instant::now().saturating_duration_since(due));
            }
        }
        let jobs = match recorder.timed("claim", session.claim(1, false)).await {
            Ok(jobs) => jobs,
            Err(TrackerError::TimedOut) => {
                let _ = recorder.timed("register", session.reregister()).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            recorder.empty_claims += 1;
            let waiting_for_producers = session.client_type() == ClientType::Gpu
                && plan.producers.load(Ordering::SeqCst) > 0;
            if !plan.args.keep_going && !waiting_for_producers {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for job in jobs {
            if cycle(plan, session, recorder, job.number).await.is_ok() {
                recorder.cycles += 1;
            }
        }
    }
}

/// Heartbeat, optional upload, complete: the rest of one job cycle.
async fn cycle(
    plan: &Plan,
    session: &Session,
    recorder: &mut Recorder,
    number: u64,
) -> Result<(), TrackerError> {
    recorder
        .timed("heartbeat", session.heartbeat("load test"))
        .await?;
    let output = match session.client_type() {
        ClientType::Cpu if plan.upload.is_empty() => {
            JobOutput::Bundle(format!("rsync load-{number}"))
        }
        ClientType::Cpu => {
            let target = recorder
                .timed("upload_url", session.upload_url(number))
                .await?;
            let body = BundleBody::Bytes(plan.upload.clone());
            let stored = recorder
                .timed("upload", session.upload_bundle(&target, body))
                .await?;
            JobOutput::Bundle(format!("blob:{}", stored.key))
        }
        ClientType::Hybrid | ClientType::Gpu => JobOutput::Pairs(number % 1000),
    };
    recorder
        .timed("complete", session.complete(number, output))
        .await
        .map(drop)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Hybrid => "hybrid",
        Role::Cpu => "cpu",
        Role::Gpu => "gpu",
        Role::Pipeline => "pipeline",
    }
}

/// Count, p50, p99 and max in milliseconds of a set of latencies.
fn summary(latencies: &mut [Duration]) -> serde_json::Value {
    latencies.sort_unstable();
    let percentile = |fraction: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = (fraction * latencies.len() as f64).ceil() as usize;
        milliseconds(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    serde_json::json!({
        "count": latencies.len(),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": latencies.last().copied().map(milliseconds).unwrap_or(0.0),
    })
}

fn milliseconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn report(args: &Args, total: &Recorder, elapsed: Duration) {
    let mut calls = serde_json::Map::new();
    let mut all = Vec::new();
    for (name, latencies) in &total.latencies {
        let mut latencies = latencies.clone();
        all.extend_from_slice(&latencies);
        calls.insert((*name).to_owned(), summary(&mut latencies));
    }
    let overall = summary(&mut all);
    let cycles_per_s = total.cycles as f64 / elapsed.as_secs_f64().max(1e-9);
    let start_lag = summary(&mut total.start_lags.clone());
    let late_starts = total
        .start_lags
        .iter()
        .filter(|lag| **lag > LATE_AFTER)
        .count();

    let offered = match args.rate {
        Some(rate) => format!("offered {rate} cycles/s (open loop)"),
        None => "closed loop".to_owned(),
    };
    println!(
        "{} {} workers for {:.1} s, {offered}: {} job cycles, {:.1} cycles/s, {} empty claims",
        args.workers,
        role_name(args.role),
        elapsed.as_secs_f64(),
        total.cycles,
        cycles_per_s,
        total.empty_claims
    );
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>10}",
        "call", "count", "p50 ms", "p99 ms", "max ms"
    );
    let rows = calls.iter().map(|(name, row)| (name.as_str(), row));
    for (name, row) in rows.chain([("overall", &overall)]) {
        println!(
            "{:<12} {:>9} {:>10.3} {:>10.3} {:>10.3}",
            name,
            row["count"].as_u64().unwrap_or(0),
            row["p50_ms"].as_f64().unwrap_or(0.0),
            row["p99_ms"].as_f64().unwrap_or(0.0),
            row["max_ms"].as_f64().unwrap_or(0.0),
        );
    }
    if args.rate.is_some() {
        println!(
            "{:<12} {:>9} {:>10.3} {:>10.3} {:>10.3}",
            "start lag",
            total.start_lags.len(),
            start_lag["p50_ms"].as_f64().unwrap_or(0.0),
            start_lag["p99_ms"].as_f64().unwrap_or(0.0),
            start_lag["max_ms"].as_f64().unwrap_or(0.0),
        );
        println!(
            "late starts (more than {} ms after due): {late_starts} of {}",
            LATE_AFTER.as_millis(),
            total.start_lags.len()
        );
    }
    if total.errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors:");
        for (kind, count) in &total.errors {
            println!("  {kind:<30} {count:>9}");
        }
    }
    let line = serde_json::json!({
        "label": args.label,
        "role": role_name(args.role),
        "workers": args.workers,
        "elapsed_s": elapsed.as_secs_f64(),
        "cycles": total.cycles,
        "cycles_per_s": cycles_per_s,
        "rate": args.rate,
        "start_lag": start_lag,
        "late_starts": late_starts,
        "empty_claims": total.empty_claims,
        "calls": calls,
        "overall": overall,
        "errors": total.errors,
    });
    println!("{line}");
}
