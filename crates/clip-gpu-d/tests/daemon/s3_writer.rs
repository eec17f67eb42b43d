//! One daemon per S3 prefix, against a real S3 server (s3s-fs): a second daemon started on a
//! prefix another one writes waits until that one stops instead of numbering shards from the
//! same listing and overwriting them; a daemon whose prefix was taken over uploads nothing more;
//! a writer object nobody renewed for five minutes is taken over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::ext::Job;
use cah_tracker_client::Session;

use crate::parity_support;
use crate::s3s::{BUCKET, S3sServer};
use crate::support::{RealTracker, check_dataset, daemon_config, eventually, hand_in_photos};

const PREFIX: &str = "runs/gpu";
const WRITER: &str = "_clip-gpu-d-writer.json";

/// An S3 server, a tracker and `n_jobs` jobs of one WAT claimed by a CPU client.
struct World {
    s3: S3sServer,
    tracker: RealTracker,
    cpu: Session,
    jobs: Vec<Job>,
}

impl World {
    /// `None` where s3s-fs is not installed (see [`S3sServer::start`]).
    async fn start(test: &str, n_jobs: u32) -> Option<World> {
        let s3 = S3sServer::start(test).await?;
        let tracker = RealTracker::start(&[]).await;
        tracker.import(1).await;
        let cpu = tracker.register("cpu", ClientType::Cpu).await;
        let jobs = cpu.claim(n_jobs, false).await.expect("claim");
        assert_eq!(jobs.len(), n_jobs as usize);
        Some(World {
            s3,
            tracker,
            cpu,
            jobs,
        })
    }
}

/// A daemon config writing to [`PREFIX`] of `s3` through `spool`, one job's three pairs a shard.
fn config(s3: &S3sServer, tracker: &RealTracker, spool: &Path) -> clip_gpu_d::daemon::Config {
    let output = PathBuf::from(format!("s3://{BUCKET}/{PREFIX}/"));
    let mut flags = s3.flags();
    flags.extend(["--shard-size", "3", "--spool-dir"].map(str::to_owned));
    flags.push(spool.display().to_string());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    daemon_config(&tracker.base_url, &output, &flags)
}

/// The writer object's holder, if it exists.
fn holder(s3: &S3sServer) -> Option<String> {
    let text = std::fs::read(s3.folder(PREFIX).join(WRITER)).ok()?;
    let writer: serde_json::Value = serde_json::from_slice(&text).expect("writer json");
    Some(writer["holder"].as_str().expect("holder").to_owned())
}

/// Shard stats objects in the bucket.
fn published(s3: &S3sServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s3.folder(PREFIX))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with("_stats.json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_prefix_waits_until_the_first_one_stops() {
    let Some(world) = World::start(
        "a_second_daemon_on_a_prefix_waits_until_the_first_one_stops",
        2,
    )
    .await
    else {
        return;
    };
    let World {
        s3,
        tracker,
        cpu,
        jobs,
    } = world;
    let photos = parity_support::photos();
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool_a, spool_b) = (dir.path().join("spool-a"), dir.path().join("spool-b"));

    // The first daemon takes the prefix.
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(clip_gpu_d::daemon::run(
        config(&s3, &tracker, &spool_a),
        async move {
            let _ = stopped_a.await;
        },
    ));
    let held = eventually("the first daemon to take the prefix", || async {
        holder(&s3)
    })
    .await;
    assert!(held.ends_with(&spool_a.display().to_string()), "{held}");

    // The second one, a copy of its configuration on another spool, waits at its start.
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(clip_gpu_d::daemon::run(
        config(&s3, &tracker, &spool_b),
        async move {
            let _ = stopped_b.await;
        },
    ));
    let (first_jobs, _) = hand_in_photos(&cpu, &jobs[..1], &photos, 3, "a").await;
    let client = tracker.client();
    eventually("the first job to complete", || async {
        let done = client
            .is_completed(&first_jobs)
            .await
            .expect("is completed");
        (done.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !second.is_finished(),
        "the second daemon stopped: {second:?}"
    );
    assert_eq!(
        holder(&s3),
        Some(held),
        "the second daemon wrote the prefix's writer"
    );
    assert_eq!(published(&s3), ["00000_stats.json"]);

    // The first one stops cleanly and frees the prefix; the second one starts and goes on
    // numbering from the bucket.
    let _ = stop_a.send(());
    first.await.expect("first task").expect("first daemon ran");
    let (second_jobs, _) = hand_in_photos(&cpu, &jobs[1..2], &photos[3..], 3, "b").await;
    eventually("the second job to complete", || async {
        let done = client
            .is_completed(&second_jobs)
            .await
            .expect("is completed");
        (done.len() == 1).then_some(())
    })
    .await;
    let taken = holder(&s3).expect("the second daemon's writer object");
    assert!(taken.ends_with(&spool_b.display().to_string()), "{taken}");
    let _ = stop_b.send(());
    second
        .await
        .expect("second task")
        .expect("second daemon ran");

    assert_eq!(published(&s3), ["00000_stats.json", "00001_stats.json"]);
    let summary = check_dataset(&s3.folder(PREFIX));
    assert_eq!((summary.rows, summary.unique_keys), (6, 6), "{summary:?}");
    assert_eq!(holder(&s3), None, "a clean stop deletes the writer object");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_prefix_was_taken_over_uploads_nothing_more() {
    let Some(world) = World::start(
        "a_daemon_whose_prefix_was_taken_over_uploads_nothing_more",
        1,
    )
    .await
    else {
        return;
    };
    let World {
        s3,
        tracker,
        cpu,
        jobs,
    } = world;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let daemon = tokio::spawn(clip_gpu_d::daemon::run(
        config(&s3, &tracker, &spool),
        std::future::pending(),
    ));
    eventually("the daemon to take the prefix", || async { holder(&s3) }).await;
    // Its spool is prepared once the claim was read back and the bucket listed.
    eventually("the daemon to prepare its spool", || async {
        spool.is_dir().then_some(())
    })
    .await;
    // Another daemon, started while this one was silent for the freshness window, took it.
    std::fs::write(
        s3.folder(PREFIX).join(WRITER),
        r#"{"holder":"gpu-2:/var/spool/clip-gpu-d","instance":"7-1"}"#,
    )
    .expect("write the other writer object");
    hand_in_photos(&cpu, &jobs, &parity_support::photos(), 3, "").await;

    let result = tokio::time::timeout(Duration::from_secs(120), daemon)
        .await
        .expect("the daemon stops")
        .expect("daemon task");
    let error = format!("{:#}", result.expect_err("the daemon fails"));
    assert!(
        error.contains("another clip-gpu-d (gpu-2:/var/spool/clip-gpu-d) took over"),
        "{error}"
    );
    assert_eq!(published(&s3), Vec::<String>::new(), "nothing uploaded");
    assert!(
        spool.join("00000_stats.json").is_file(),
        "the shard stays in the spool"
    );
    assert_eq!(
        holder(&s3).as_deref(),
        Some("gpu-2:/var/spool/clip-gpu-d"),
        "the other daemon's writer object is left alone"
    );
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_object_not_renewed_for_five_minutes_is_taken_over() {
    let Some(world) = World::start(
        "a_writer_object_not_renewed_for_five_minutes_is_taken_over",
        1,
    )
    .await
    else {
        return;
    };
    let World {
        s3,
        tracker,
        cpu,
        jobs,
    } = world;
    let (blobs, _) = hand_in_photos(&cpu, &jobs, &parity_support::photos(), 3, "").await;
    write_dead_writer(&s3);

    let dir = tempfile::tempdir().expect("tempdir");
    crate::support::run_until_completed(&tracker, config(&s3, &tracker, dir.path()), &blobs).await;
    assert_eq!(published(&s3), ["00000_stats.json"]);
    assert_eq!(
        holder(&s3),
        None,
        "taken over, then deleted at the clean stop"
    );
    tracker.stop().await;
}

/// The writer object of a daemon of another machine that died six minutes ago (s3s-fs dates
/// an object by its file's modification time).
fn write_dead_writer(s3: &S3sServer) {
    let folder = s3.folder(PREFIX);
    std::fs::create_dir_all(&folder).expect("prefix folder");
    let object = folder.join(WRITER);
    std::fs::write(&object, r#"{"holder":"gpu-old:/spool","instance":"1-1"}"#).expect("write");
    let status = std::process::Command::new("touch")
        .args(["-d", "6 minutes ago"])
        .arg(&object)
        .status()
        .expect("touch");
    assert!(status.success());
}

/// A client of [`PREFIX`] on `s3` for a daemon writing from `spool`.
fn bucket(s3: &S3sServer, spool: &str) -> clip_gpu_d::output::s3::ShardBucket {
    let location = clip_gpu_d::output::S3Location {
        bucket: BUCKET.to_owned(),
        prefix: PREFIX.to_owned(),
    };
    let settings = clip_gpu_d::output::S3Settings {
        endpoint: Some(s3.endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        access_key_id: Some(crate::s3s::ACCESS_KEY.to_owned()),
        secret_access_key: Some(crate::s3s::SECRET_KEY.parse().expect("secret")),
    };
    let writer = clip_gpu_d::output::s3::Writer::this_process(Path::new(spool));
    clip_gpu_d::output::s3::ShardBucket::connect(&location, &settings, writer).expect("connect")
}

/// Asserts that `error` is a busy prefix held by the daemon writing from `spool`.
fn assert_busy_with(error: &clip_gpu_d::output::s3::S3Error, spool: &str) {
    match error {
        clip_gpu_d::output::s3::S3Error::PrefixBusy { holder, .. } => {
            assert!(holder.ends_with(&format!(":{spool}")), "{holder}");
        }
        other => panic!("expected a busy prefix, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_daemons_that_found_the_prefix_free_only_one_takes_it() {
    let Some(s3) =
        S3sServer::start("of_two_daemons_that_found_the_prefix_free_only_one_takes_it").await
    else {
        return;
    };
    // Both read the same state (no object, then a dead daemon's); the second writes its own
    // before the first does.
    for dead_writer in [false, true] {
        if dead_writer {
            write_dead_writer(&s3);
        }
        let (first, second) = (bucket(&s3, "/spool/a"), bucket(&s3, "/spool/b"));
        let seen = first.read_writer_state().await.expect("read");
        second
            .claim_writer()
            .await
            .expect("the second takes the prefix");
        let error = first
            .take_writer(seen)
            .await
            .expect_err("the first is refused");
        assert_busy_with(&error, "/spool/b");
        assert!(holder(&s3).expect("writer object").ends_with(":/spool/b"));
        second.release_writer().await.expect("release");
        assert_eq!(holder(&s3), None);
    }

    // Once the second stopped cleanly, the first takes the prefix.
    let first = bucket(&s3, "/spool/a");
    first
        .claim_writer()
        .await
        .expect("the first takes the prefix");
    assert!(holder(&s3).expect("writer object").ends_with(":/spool/a"));
}
