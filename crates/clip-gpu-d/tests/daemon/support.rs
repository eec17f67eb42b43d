//! A real tracker-d on 127.0.0.1:0, a CPU client that uploads bundles, bundle builders and the
//! Python dataset checker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::bundle::{BundleSample, SAMPLES_FILE, STATS_FILE};
use cah_protocol::ext::Job;
use cah_tracker_client::{BundleBody, JobOutput, Session, TrackerClient};
use clap::Parser;
use sha2::{Digest, Sha256};
use tracker_d::testing::InProcess;
use url::Url;

use crate::parity_support;

/// A tracker-d serving in this test's runtime.
pub(crate) struct RealTracker {
    pub(crate) base_url: Url,
    database_url: String,
    server: InProcess,
    _dir: tempfile::TempDir,
}

impl RealTracker {
    pub(crate) async fn start(extra: &[&str]) -> RealTracker {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        RealTracker::start_on(any_port, extra).await
    }

    pub(crate) async fn start_on(addr: SocketAddr, extra: &[&str]) -> RealTracker {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = format!("sqlite://{}", dir.path().join("tracker.sqlite").display());
        let server =
            InProcess::start_on(addr, &database_url, &dir.path().join("staging"), extra).await;
        RealTracker {
            base_url: Url::parse(&format!("{}/", server.base())).expect("base url"),
            database_url,
            server,
            _dir: dir,
        }
    }

    /// Stops this tracker and starts another on the same address with an empty database, as
    /// a tracker whose database was lost: it knows no client and no job of the old one.
    pub(crate) async fn replace_with_fresh(self, extra: &[&str]) -> RealTracker {
        let addr = self.server.addr;
        self.stop().await;
        RealTracker::start_on(addr, extra).await
    }

    /// Imports `n_wats` WATs: `2 n_wats` jobs.
    pub(crate) async fn import(&self, n_wats: usize) {
        let urls: Vec<String> = (0..n_wats)
            .map(|index| format!("http://cc.test/wat/{index}.warc.wat.gz"))
            .collect();
        tracker_d::testing::import_urls(&self.database_url, &urls).await;
    }

    /// Runs one SQL statement on the tracker's database, as an operator's tool would.
    pub(crate) async fn execute(&self, sql: &str) {
        tracker_d::testing::execute(&self.database_url, sql).await;
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub(crate) fn client(&self) -> TrackerClient {
        TrackerClient::with_defaults(self.base_url.clone()).expect("client")
    }

    pub(crate) async fn register(&self, nickname: &str, client_type: ClientType) -> Session {
        self.client()
            .register(nickname, client_type)
            .await
            .expect("register")
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// One tar entry of a hand-built bundle.
pub(crate) enum Entry {
    File(String, Vec<u8>),
    Symlink(String, String),
}

/// A bundle's bytes from raw entries; names go into the header unchecked, as an attacker would.
pub(crate) fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (name, data, kind, link) = match entry {
            Entry::File(name, data) => (name, data.as_slice(), tar::EntryType::Regular, None),
            Entry::Symlink(name, target) => (name, &[][..], tar::EntryType::Symlink, Some(target)),
        };
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(target) = link {
            header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// A well-formed bundle of `photos` for `job`; `alt` names each sample's caption.
pub(crate) fn good_bundle(
    job: &Job,
    photos: &[PathBuf],
    url_of: impl Fn(usize) -> String,
) -> (Vec<Entry>, Vec<BundleSample>) {
    let mut entries = Vec::new();
    let mut samples = Vec::new();
    for (index, photo) in photos.iter().enumerate() {
        let bytes = std::fs::read(photo).expect("photo");
        let ext = photo.extension().and_then(|ext| ext.to_str()).expect("ext");
        let (width, height) = image::image_dimensions(photo).expect("dimensions");
        let sample_id = job.start_id + index as u64;
        let file = format!("{sample_id}.{ext}");
        samples.push(BundleSample {
            sample_id,
            file: file.clone(),
            url: url_of(index),
            final_url: url_of(index),
            alt: format!(
                "a photo called {}",
                photo.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
            ),
            page_url: format!("http://page.test/{}", job.number),
            license: (index % 2 == 0)
                .then(|| "https://creativecommons.org/licenses/by/4.0/".to_owned()),
            language: Some("eng".to_owned()),
            original_width: width,
            original_height: height,
            width,
            height,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        entries.push(Entry::File(file, bytes));
    }
    (entries, samples)
}

/// Appends `samples.jsonl` and `stats.json` to image entries.
pub(crate) fn with_metadata(
    mut entries: Vec<Entry>,
    samples: &[BundleSample],
    job: u64,
) -> Vec<u8> {
    let lines: String = samples
        .iter()
        .map(|sample| serde_json::to_string(sample).expect("json") + "\n")
        .collect();
    entries.push(Entry::File(SAMPLES_FILE.to_owned(), lines.into_bytes()));
    let stats = serde_json::json!({"format_version": 1, "job": job, "candidates": samples.len(), "stored": samples.len(), "outcomes": {}});
    entries.push(Entry::File(
        STATS_FILE.to_owned(),
        stats.to_string().into_bytes(),
    ));
    tar_bytes(&entries)
}

/// Uploads `bundle` for a job the CPU session holds and completes it; returns `blob:<key>`.
/// Hands in one good bundle per job, `per_job` of `photos` each in order, with image URLs
/// `http://img.test/{url_prefix}{number}/{i}.jpg`; returns the blob names and the samples.
pub(crate) async fn hand_in_photos(
    cpu: &Session,
    jobs: &[Job],
    photos: &[PathBuf],
    per_job: usize,
    url_prefix: &str,
) -> (Vec<String>, Vec<BundleSample>) {
    let mut blobs = Vec::new();
    let mut all = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let chosen = &photos[index * per_job..(index + 1) * per_job];
        let (number, prefix) = (job.number, url_prefix.to_owned());
        let (entries, samples) = good_bundle(job, chosen, move |i| {
            format!("http://img.test/{prefix}{number}/{i}.jpg")
        });
        blobs.push(hand_in(cpu, number, with_metadata(entries, &samples, number)).await);
        all.extend(samples);
    }
    (blobs, all)
}

pub(crate) async fn hand_in(cpu: &Session, number: u64, bundle: Vec<u8>) -> String {
    let target = cpu.upload_url(number).await.expect("upload url");
    cpu.upload_bundle(&target, BundleBody::Bytes(bundle.into()))
        .await
        .expect("upload");
    let blob = format!("blob:{}", target.key);
    cpu.complete(number, JobOutput::Bundle(blob.clone()))
        .await
        .expect("complete cpu job");
    blob
}

/// A daemon config for the tiny checkpoint on the CPU; a flag in `extra` replaces its default.
/// Without `--poll-interval` in `extra`, claims are tried every 100 ms (below the flag's 1 s
/// floor, which guards the tracker from a busy loop; tests want speed).
pub(crate) fn daemon_config(
    tracker: &Url,
    output: &Path,
    extra: &[&str],
) -> clip_gpu_d::daemon::Config {
    clip_gpu_d::telemetry::init(clip_gpu_d::telemetry::LogFormat::Text);
    let model = parity_support::tiny_model();
    let defaults = [
        ("--tracker", tracker.to_string()),
        ("--model", model.display().to_string()),
        ("--output", output.display().to_string()),
        ("--devices", "cpu".to_owned()),
        ("--cpu-threads", "2".to_owned()),
        ("--threshold", "-1".to_owned()),
        // Random weights tag everything as underage; the tag rules have their own unit tests.
        ("--tags", "off".to_owned()),
        ("--batch-size", "4".to_owned()),
        ("--flush-interval", "1s".to_owned()),
    ];
    let mut argv: Vec<String> = vec!["clip-gpu-d".into(), "run".into()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend([flag.to_owned(), value]);
        }
    }
    argv.extend(extra.iter().map(|flag| (*flag).to_owned()));
    let args = <clip_gpu_d::embed::Args as Parser>::try_parse_from(argv).expect("flags parse");
    let clip_gpu_d::embed::Command::Run(run) = args.command else {
        unreachable!("run was given");
    };
    let mut config = clip_gpu_d::daemon::Config::try_from(*run).expect("valid config");
    if !extra.contains(&"--poll-interval") {
        config.poll_interval = Duration::from_millis(100);
    }
    config
}

/// A metrics listener on an ephemeral port, and its URL.
pub(crate) async fn metrics_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    (listener, url)
}

/// The daemon in-process with its metrics on an ephemeral port: its future (run it beside the
/// test's driver), the metrics URL, and the sender that asks it to stop (drain).
pub(crate) async fn daemon_with_metrics(
    config: clip_gpu_d::daemon::Config,
) -> (
    impl Future<Output = anyhow::Result<()>>,
    String,
    tokio::sync::oneshot::Sender<()>,
) {
    let (listener, metrics_url) = metrics_listener().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = clip_gpu_d::daemon::run_with_listener(config, Some(listener), async move {
        let _ = stopped.await;
    });
    (daemon, metrics_url, stop)
}

/// Scrapes the daemon's Prometheus text from `metrics_url`.
pub(crate) async fn scrape(metrics_url: &str) -> Option<String> {
    reqwest::get(metrics_url).await.ok()?.text().await.ok()
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` every 100 ms until it yields, for at most 60 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until the daemon released at least `n` jobs, checks that it reported none invalid,
/// and returns the metrics text.
pub(crate) async fn released_none_invalid(metrics_url: &str, n: f64) -> String {
    let text = eventually(&format!("{n} jobs to be released"), || async {
        let text = scrape(metrics_url).await?;
        (metric(&text, "clip_jobs_released_total")? >= n).then_some(text)
    })
    .await;
    assert_eq!(
        metric(&text, "clip_jobs_invalid_total"),
        Some(0.0),
        "{text}"
    );
    text
}

/// Runs the daemon until it released at least `n` jobs without reporting any invalid, then
/// stops it.
pub(crate) async fn run_until_released_none_invalid(config: clip_gpu_d::daemon::Config, n: f64) {
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        released_none_invalid(&metrics_url, n).await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
}

/// What check_dataset.py found.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DatasetSummary {
    pub(crate) shards: Vec<serde_json::Value>,
    pub(crate) rows: usize,
    /// Parquet keys, shard by shard.
    pub(crate) keys: Vec<String>,
    pub(crate) unique_keys: usize,
    pub(crate) sample_ids: Vec<u64>,
    /// Image URLs of every row, sorted.
    pub(crate) urls: Vec<String>,
    pub(crate) leftover_tmp: Vec<String>,
    /// Shards with a `.tfrecord`, and their records' keys, as read by the `tfrecord` package.
    pub(crate) tfrecord_shards: usize,
    pub(crate) tfrecord_keys: Vec<String>,
    /// Largest difference between a record's embeddings and its npy rows.
    pub(crate) tfrecord_max_embedding_diff: f64,
    /// Record fields that differ from the parquet or the tar, as `key: field`.
    pub(crate) tfrecord_mismatches: Vec<String>,
}

/// Reads the dataset with webdataset, pyarrow, numpy and tfrecord; fails with the fix when they
/// are missing.
pub(crate) fn check_dataset(output: &Path) -> DatasetSummary {
    let python = parity_support::python();
    let works = std::process::Command::new(&python)
        .args(["-c", "import webdataset, pyarrow, numpy, tfrecord, crc32c"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        works,
        "the dataset tests need webdataset, pyarrow, numpy and tfrecord in {}: run scripts/setup-torch.sh",
        python.display()
    );
    let output = std::process::Command::new(&python)
        .arg(parity_support::test_script("check_dataset.py"))
        .arg(output)
        .output()
        .expect("spawn python");
    assert!(
        output.status.success(),
        "check_dataset.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("summary json")
}

/// Runs the daemon in-process until every job of `blobs` is completed, then drains it.
pub(crate) async fn run_until_completed(
    tracker: &RealTracker,
    config: clip_gpu_d::daemon::Config,
    blobs: &[String],
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = clip_gpu_d::daemon::run(config, async move {
        let _ = stopped.await;
    });
    let client = tracker.client();
    let driver = async {
        eventually("the jobs to complete", || async {
            let done = client.is_completed(blobs).await.expect("is completed");
            (done.len() == blobs.len()).then_some(())
        })
        .await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
}

/// Runs the daemon in-process until `path` exists, then drops it there (a crash: nothing
/// drains, nothing is released).
pub(crate) async fn run_until_file(config: clip_gpu_d::daemon::Config, path: &Path) {
    tokio::select! {
        result = clip_gpu_d::daemon::run(config, std::future::pending()) => panic!("daemon stopped early: {result:?}"),
        () = eventually("the file", || async { path.is_file().then_some(()) }) => {}
    }
}

/// Sends SIGTERM to a spawned clip-gpu-d, as systemd stops it.
pub(crate) fn sigterm(child: &tokio::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().expect("pid").to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// SIGTERM, then the exit status, which must come within 60 s.
pub(crate) async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    sigterm(child);
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("clip-gpu-d exits after SIGTERM")
        .expect("wait")
}

/// `clip-gpu-d run` on the CPU with `model`, in `dir`, against a tracker port nothing listens
/// on: a daemon that accepted its configuration waits there, so a refusal shows as an exit.
pub(crate) fn run_against_no_tracker(dir: &Path, model: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"));
    command
        .current_dir(dir)
        .args([
            "run",
            "--devices",
            "cpu",
            "--tracker",
            "http://127.0.0.1:1/",
        ])
        .arg("--model")
        .arg(model)
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end, which must come within a minute.
pub(crate) async fn output_within_a_minute(
    mut command: tokio::process::Command,
) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("clip-gpu-d stops within a minute")
        .expect("run clip-gpu-d")
}
