//! Good and hostile bundles through a real tracker become a dataset (with its TFRecord copy);
//! hostile ones are reported.

use std::collections::BTreeSet;

use cah_protocol::ClientType;
use sha2::{Digest, Sha256};

use crate::parity_support;
use crate::support::{
    Entry, RealTracker, check_dataset, daemon_config, eventually, good_bundle, hand_in,
    hand_in_photos, run_until_completed, tar_bytes, with_metadata,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_become_a_dataset_and_hostile_bundles_are_reported() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(4).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(8, false).await.expect("claim");
    assert_eq!(jobs.len(), 8);
    let photos = parity_support::photos();
    let url = |job: u64| move |index: usize| format!("http://img.test/{job}/{index}.jpg");

    // Job 1: 5 photos. Job 2: 4 photos, the first a duplicate pair of job 1's first.
    let (entries, samples) = good_bundle(&jobs[0], &photos[0..5], url(jobs[0].number));
    let mut good = vec![
        hand_in(
            &cpu,
            jobs[0].number,
            with_metadata(entries, &samples, jobs[0].number),
        )
        .await,
    ];
    let (entries, mut samples) = good_bundle(&jobs[1], &photos[5..9], url(jobs[1].number));
    samples[0].url = format!("http://img.test/{}/0.jpg", jobs[0].number);
    samples[0].final_url = samples[0].url.clone();
    samples[0].alt = "a photo called astronaut-0.05mp-base".to_owned();
    assert_eq!(
        photos[0].file_stem().and_then(|s| s.to_str()),
        Some("astronaut-0.05mp-base")
    );
    good.push(
        hand_in(
            &cpu,
            jobs[1].number,
            with_metadata(entries, &samples, jobs[1].number),
        )
        .await,
    );
    // Job 3: an empty bundle (no images), which completes with zero pairs.
    good.push(
        hand_in(
            &cpu,
            jobs[2].number,
            with_metadata(Vec::new(), &[], jobs[2].number),
        )
        .await,
    );

    // Jobs 4 to 8: hostile bundles.
    let mut hostile = BTreeSet::new();
    let evil = |job: usize| {
        let (entries, samples) = good_bundle(&jobs[job], &photos[9..11], url(jobs[job].number));
        (entries, samples)
    };
    // Path traversal.
    let (mut entries, samples) = evil(3);
    if let Entry::File(name, _) = &mut entries[0] {
        *name = format!("../{name}");
    }
    hostile.insert(jobs[3].number);
    hand_in(
        &cpu,
        jobs[3].number,
        with_metadata(entries, &samples, jobs[3].number),
    )
    .await;
    // A digest that does not match the image.
    let (entries, mut samples) = evil(4);
    samples[1].sha256 = hex::encode(Sha256::digest(b"something else"));
    hostile.insert(jobs[4].number);
    hand_in(
        &cpu,
        jobs[4].number,
        with_metadata(entries, &samples, jobs[4].number),
    )
    .await;
    // An image that samples.jsonl does not list.
    let (entries, samples) = evil(5);
    hostile.insert(jobs[5].number);
    hand_in(
        &cpu,
        jobs[5].number,
        with_metadata(entries, &samples[..1], jobs[5].number),
    )
    .await;
    // A symbolic link.
    let (mut entries, samples) = evil(6);
    entries.push(Entry::Symlink(
        "99.jpg".to_owned(),
        "/etc/passwd".to_owned(),
    ));
    hostile.insert(jobs[6].number);
    hand_in(
        &cpu,
        jobs[6].number,
        with_metadata(entries, &samples, jobs[6].number),
    )
    .await;
    // Not a tar at all, and no metadata.
    hostile.insert(jobs[7].number);
    hand_in(
        &cpu,
        jobs[7].number,
        tar_bytes(&[Entry::File("1.jpg".to_owned(), vec![0; 10])]),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &["--shard-size", "4", "--tfrecord"],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let metrics_url = format!(
        "http://{}/metrics",
        metrics_listener.local_addr().expect("addr")
    );
    let daemon =
        clip_gpu_d::daemon::run_with_listener(config, Some(metrics_listener), async move {
            let _ = stopped.await;
        });
    let client = tracker.client();
    let driver = async {
        let completed = eventually("the good jobs to complete", || async {
            let done = client.is_completed(&good).await.expect("is completed");
            (done.len() == good.len()).then_some(done)
        })
        .await;
        assert_eq!(completed.len(), 3);
        // Invalid GPU jobs go back to the CPU queue.
        let mut returned = BTreeSet::new();
        for _ in 0..600 {
            for job in cpu.claim(8, false).await.expect("claim") {
                returned.insert(job.number);
            }
            if returned == hostile {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(returned, hostile, "hostile jobs return to the CPU queue");
        let text = reqwest::get(&metrics_url)
            .await
            .expect("scrape metrics")
            .text()
            .await
            .expect("metrics body");
        for line in [
            "clip_jobs_completed_total 3\n",
            "clip_jobs_invalid_total 5\n",
            "clip_pairs_scored_total 9\n",
            "clip_pairs_kept_total 8\n",
            "clip_pairs_duplicate_total 1\n",
            "clip_shards_written_total 2\n",
            "clip_held_jobs 0\n",
            "clip_queued_samples 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");

    let summary = check_dataset(&output);
    // 9 samples, one a duplicate pair: 8 unique pairs in two shards of 4.
    assert_eq!(summary.rows, 8, "{summary:?}");
    assert_eq!(summary.unique_keys, 8);
    assert_eq!(summary.shards.len(), 2, "{summary:?}");
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    // The TFRecord copy, read by the `tfrecord` package: the same rows in the same order, with
    // the npy files' embeddings and the tar's image bytes.
    assert_eq!(summary.tfrecord_shards, 2, "{summary:?}");
    assert_eq!(summary.tfrecord_keys, summary.keys);
    assert_eq!(summary.tfrecord_max_embedding_diff, 0.0);
    assert!(
        summary.tfrecord_mismatches.is_empty(),
        "{:?}",
        summary.tfrecord_mismatches
    );
    let expected_ids: Vec<u64> = (0..5)
        .map(|index| jobs[0].start_id + index)
        .chain((1..4).map(|index| jobs[1].start_id + index))
        .collect();
    let mut ids = summary.sample_ids.clone();
    ids.sort_unstable();
    // The duplicate is whichever copy came second.
    assert!(
        ids == expected_ids || ids.len() == 8,
        "{ids:?} vs {expected_ids:?}"
    );
    let pending: Vec<_> = std::fs::read_dir(&output)
        .expect("output")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".pending"))
        .collect();
    assert!(pending.is_empty(), "every shard is committed");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_can_be_stored_as_float16() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(2, false).await.expect("claim");
    let photos = parity_support::photos();
    let (blobs, _) = hand_in_photos(&cpu, &jobs, &photos, 3, "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(
        &tracker.base_url,
        &output,
        &["--shard-size", "4", "--embedding-dtype", "f16"],
    );
    run_until_completed(&tracker, config, &blobs).await;

    // check_dataset.py reads the npy files with numpy: float16, as `_stats.json` says, unit
    // vectors whose cosines are the parquet's f32 similarities within 2e-3.
    let summary = check_dataset(&output);
    assert_eq!(summary.rows, 6, "{summary:?}");
    let dtypes: Vec<&str> = summary
        .shards
        .iter()
        .map(|shard| shard["dtype"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(dtypes, ["float16", "float16"]);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("00000_stats.json")).expect("stats"))
            .expect("stats json");
    assert_eq!(stats["embedding_dtype"], "float16");
    let (rows, dim, dtype, values) =
        clip_gpu_d::npy::read(&output.join("img_emb/img_emb_00000.npy")).expect("npy");
    assert_eq!((rows, dtype), (4, clip_gpu_d::npy::EmbeddingDtype::F16));
    assert_eq!(values.len(), rows * dim);
    tracker.stop().await;
}
