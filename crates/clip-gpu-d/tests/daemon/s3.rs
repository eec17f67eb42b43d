//! The S3 output against a real S3 server (s3s-fs): shards reach the bucket whole with their
//! stats object last, shard numbers continue from the bucket's listing, and a shard that a crash
//! left in the spool is uploaded at the restart, every pair exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cah_protocol::ClientType;

use crate::parity_support;
use crate::s3s::{ACCESS_KEY, BUCKET, S3sServer, SECRET_KEY};
use crate::support::{
    RealTracker, check_dataset, daemon_config, eventually, hand_in_photos, run_until_completed,
    run_until_file, terminate,
};

const PREFIX: &str = "runs/2021";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_reach_s3_whole_and_numbering_continues_from_the_bucket() {
    let Some(s3) =
        S3sServer::start("shards_reach_s3_whole_and_numbering_continues_from_the_bucket").await
    else {
        return;
    };
    let tracker = RealTracker::start(&[]).await;
    tracker.import(2).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(3, false).await.expect("claim");
    assert_eq!(jobs.len(), 3);
    let photos = parity_support::photos();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = PathBuf::from(format!("s3://{BUCKET}/{PREFIX}/"));
    let mut expected = BTreeSet::new();

    // First run: two jobs of three pairs in shards of four, so 00000 (4 pairs) and 00001 (2).
    let (first, samples) = hand_in_photos(&cpu, &jobs[..2], &photos, 3, "").await;
    expected.extend(samples.iter().map(|sample| sample.sample_id));
    let spools = [dir.path().join("spool-a"), dir.path().join("spool-b")];
    let mut flags = s3.flags();
    flags.extend(["--shard-size", "4", "--tfrecord", "--spool-dir"].map(str::to_owned));
    let flags_with = |spool: &Path| {
        let mut flags = flags.clone();
        flags.push(spool.display().to_string());
        flags
    };
    let config = config_with(&tracker, &output, &flags_with(&spools[0]));
    run_until_completed(&tracker, config, &first).await;
    // Second run with an empty spool: the next number comes from the bucket's listing.
    let (second, samples) = hand_in_photos(&cpu, &jobs[2..3], &photos[6..8], 2, "").await;
    expected.extend(samples.iter().map(|sample| sample.sample_id));
    let config = config_with(&tracker, &output, &flags_with(&spools[1]));
    run_until_completed(&tracker, config, &second).await;

    let bucket = s3.folder(PREFIX);
    let summary = check_dataset(&bucket);
    let names: Vec<&str> = summary
        .shards
        .iter()
        .filter_map(|shard| shard["shard"].as_str())
        .collect();
    assert_eq!(names, ["00000", "00001", "00002"], "{summary:?}");
    assert_eq!(summary.rows, 8);
    assert_eq!(summary.unique_keys, 8);
    let ids: BTreeSet<u64> = summary.sample_ids.iter().copied().collect();
    assert_eq!((ids, summary.sample_ids.len()), (expected, 8));
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    assert_eq!(summary.tfrecord_shards, 3, "the tfrecords were uploaded");
    assert_eq!(summary.tfrecord_keys, summary.keys);
    assert_eq!(summary.tfrecord_max_embedding_diff, 0.0);
    assert!(summary.tfrecord_mismatches.is_empty());
    for name in names {
        assert_stats_stored_last(&bucket, name);
    }
    for spool in &spools {
        assert_eq!(shard_files_in(spool), Vec::<String>::new(), "spool emptied");
    }
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_left_in_the_spool_by_a_crash_is_uploaded_once() {
    let Some(s3) = S3sServer::start("a_shard_left_in_the_spool_by_a_crash_is_uploaded_once").await
    else {
        return;
    };
    let tracker = RealTracker::start(&["--lease", "2s", "--reap-interval", "100ms"]).await;
    tracker.import(2).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(4, false).await.expect("claim");
    assert_eq!(jobs.len(), 4);
    let photos = parity_support::photos();
    let (blobs, samples) = hand_in_photos(&cpu, &jobs, &photos, 3, "").await;
    let expected: BTreeSet<u64> = samples.iter().map(|sample| sample.sample_id).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");

    // The crashed run: shards written in the spool folder (a local output has the spool's
    // layout), killed as soon as shard 00000 is complete there, before any upload.
    let config = daemon_config(
        &tracker.base_url,
        &spool,
        &["--shard-size", "4", "--max-jobs", "4"],
    );
    run_until_file(config, &spool.join("00000_stats.json")).await;
    // And the leftovers of a half-written shard.
    std::fs::write(spool.join("00090.tar.tmp"), b"partial").expect("plant");
    std::fs::write(spool.join("00090.pending"), br#"{"hashes":[1],"jobs":[1]}"#).expect("plant");
    let bucket = s3.folder(PREFIX);
    assert!(!bucket.exists(), "nothing was uploaded yet");

    // The restart: the real binary, configured as under systemd, by environment variables only
    // (credentials and endpoint from the standard AWS_* ones).
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .arg("run")
        .env("CLIP_TRACKER_URL", tracker.base_url.as_str())
        .env("CLIP_MODEL_DIR", parity_support::tiny_model())
        .env("CLIP_OUTPUT", format!("s3://{BUCKET}/{PREFIX}"))
        .env("CLIP_SPOOL_DIR", &spool)
        .env_remove("CLIP_S3_ENDPOINT")
        .env("AWS_ENDPOINT_URL", s3.endpoint.as_str())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .envs([
            ("CLIP_DEVICES", "cpu"),
            ("CLIP_CPU_THREADS", "2"),
            ("CLIP_THRESHOLD", "-1"),
            ("CLIP_TAGS", "off"),
            ("CLIP_BATCH_SIZE", "4"),
            ("CLIP_SHARD_SIZE", "4"),
            ("CLIP_POLL_INTERVAL", "1s"),
            ("CLIP_FLUSH_INTERVAL", "1s"),
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn clip-gpu-d");
    let client = tracker.client();
    eventually("every job to complete", || async {
        let done = client.is_completed(&blobs).await.expect("is completed");
        (done.len() == blobs.len()).then_some(())
    })
    .await;
    let exit = terminate(&mut child).await;
    assert!(exit.success(), "{exit:?}");

    let summary = check_dataset(&bucket);
    let ids: BTreeSet<u64> = summary.sample_ids.iter().copied().collect();
    assert_eq!(
        summary.sample_ids.len(),
        ids.len(),
        "no pair twice: {summary:?}"
    );
    assert_eq!(ids, expected, "no pair lost");
    assert_eq!(summary.unique_keys, summary.rows);
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    let names: Vec<String> = summary
        .shards
        .iter()
        .filter_map(|shard| shard["shard"].as_str().map(str::to_owned))
        .collect();
    let contiguous: Vec<String> = (0..names.len()).map(|n| format!("{n:05}")).collect();
    assert_eq!(
        names, contiguous,
        "shard 00000 from the spool, then the rest"
    );
    for name in &names {
        assert_stats_stored_last(&bucket, name);
    }
    assert_eq!(
        shard_files_in(&spool),
        Vec::<String>::new(),
        "spool emptied"
    );
    tracker.stop().await;
}

fn config_with(
    tracker: &RealTracker,
    output: &Path,
    flags: &[String],
) -> clip_gpu_d::daemon::Config {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    daemon_config(&tracker.base_url, output, &flags)
}

/// s3s-fs writes each object's file when the object is stored (a multipart upload when it
/// completes), so the stats file of shard `name` must be the newest of the shard's files.
fn assert_stats_stored_last(bucket: &Path, name: &str) {
    let modified = |path: PathBuf| -> SystemTime {
        std::fs::metadata(&path)
            .and_then(|metadata| metadata.modified())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    };
    let stats = modified(bucket.join(format!("{name}_stats.json")));
    let mut others = vec![
        bucket.join(format!("img_emb/img_emb_{name}.npy")),
        bucket.join(format!("text_emb/text_emb_{name}.npy")),
        bucket.join(format!("{name}.parquet")),
        bucket.join(format!("{name}.tar")),
    ];
    let tfrecord = bucket.join(format!("{name}.tfrecord"));
    if tfrecord.is_file() {
        others.push(tfrecord);
    }
    for path in others {
        let display = path.display().to_string();
        assert!(modified(path) <= stats, "{display} stored after the stats");
    }
}

/// Shard files (data, stats, markers, temporaries) left anywhere in a spool folder.
fn shard_files_in(spool: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![spool.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("spool folder") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                // Bundles being downloaded are not shard files.
                if !name.ends_with(".downloads") {
                    folders.push(path);
                }
            } else if [
                ".npy",
                ".parquet",
                ".tar",
                ".tfrecord",
                "_stats.json",
                ".pending",
                ".tmp",
            ]
            .iter()
            .any(|suffix| name.ends_with(suffix))
            {
                found.push(name);
            }
        }
    }
    found
}
