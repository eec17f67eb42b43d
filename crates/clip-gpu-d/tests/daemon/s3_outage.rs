//! An S3 store that is unreachable when a shard closes is waited out: the upload retries for
//! minutes instead of failing the daemon after about 2 s (object_store's default), and the
//! shard reaches the bucket once the store is back, every pair once, its job completed. One
//! unreachable at start is waited for too, instead of the daemon exiting.

use std::path::PathBuf;
use std::time::Duration;

use cah_protocol::ClientType;

use crate::parity_support;
use crate::relay::Relay;
use crate::s3s::{BUCKET, S3sServer};
use crate::support::{
    RealTracker, check_dataset, daemon_config, daemon_with_metrics, eventually, hand_in_photos,
    metric, scrape,
};

const PREFIX: &str = "outage";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_waited_out_when_a_shard_closes() {
    let Some(s3) = S3sServer::start("an_unreachable_store_is_waited_out_when_a_shard_closes").await
    else {
        return;
    };
    let upstream = s3.endpoint.socket_addrs(|| None).expect("s3s-fs address")[0];
    let relay = Relay::start(upstream).await;
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    let photos = parity_support::photos();

    let mut flags = s3.flags();
    flags[1] = format!("http://{}/", relay.addr);
    flags.extend(["--shard-size", "2"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut with_spool = flags.clone();
    let spool = dir.path().join("spool");
    let spool_flag = spool.display().to_string();
    with_spool.extend(["--spool-dir", spool_flag.as_str()]);
    let output = PathBuf::from(format!("s3://{BUCKET}/{PREFIX}/"));
    let config = daemon_config(&tracker.base_url, &output, &with_spool);

    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let client = tracker.client();
    let driver = async {
        // Started (the prefix listed, the metrics served); then the store goes away, and the
        // job arrives: its two pairs fill a shard, whose upload finds the store unreachable.
        eventually("the daemon to start", || scrape(&metrics_url)).await;
        relay.cut();
        let (blobs, samples) = hand_in_photos(&cpu, &jobs, &photos, 2, "").await;
        eventually("the shard upload to hit the outage", || async {
            (relay.refused() >= 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        relay.heal();
        eventually("the job to complete", || async {
            let done = client.is_completed(&blobs).await.ok()?;
            (done.len() == blobs.len()).then_some(())
        })
        .await;
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_shards_written_total"),
            Some(1.0),
            "{text}"
        );
        let _ = stop.send(());
        samples
    };
    let (result, samples) = tokio::join!(daemon, driver);
    result.expect("the daemon outlived the outage");

    let summary = check_dataset(&s3.folder(PREFIX));
    assert_eq!(summary.rows, samples.len(), "{summary:?}");
    assert_eq!(summary.unique_keys, summary.rows);
    assert!(summary.leftover_tmp.is_empty(), "{summary:?}");
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_at_start_is_waited_for() {
    let Some(s3) = S3sServer::start("a_store_unreachable_at_start_is_waited_for").await else {
        return;
    };
    let upstream = s3.endpoint.socket_addrs(|| None).expect("s3s-fs address")[0];
    let relay = Relay::start(upstream).await;
    // Down before the daemon starts: its first listing of the prefix fails.
    relay.cut();
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    let photos = parity_support::photos();

    let mut flags = s3.flags();
    flags[1] = format!("http://{}/", relay.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool").display().to_string();
    flags.extend(["--shard-size", "2", "--spool-dir", spool.as_str()].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let output = PathBuf::from(format!("s3://{BUCKET}/{PREFIX}-start/"));
    let config = daemon_config(&tracker.base_url, &output, &flags);

    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let client = tracker.client();
    let driver = async {
        eventually("the start-up listing to hit the outage", || async {
            (relay.refused() >= 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        relay.heal();
        eventually("the daemon to start", || scrape(&metrics_url)).await;
        let (blobs, samples) = hand_in_photos(&cpu, &jobs, &photos, 2, "").await;
        eventually("the job to complete", || async {
            let done = client.is_completed(&blobs).await.ok()?;
            (done.len() == blobs.len()).then_some(())
        })
        .await;
        let _ = stop.send(());
        samples
    };
    let daemon = async {
        let result = daemon.await;
        // Fail at once rather than after the driver's minute of waiting.
        assert!(result.is_ok(), "the daemon gave up: {result:?}");
    };
    let ((), samples) = tokio::join!(daemon, driver);

    let summary = check_dataset(&s3.folder(&format!("{PREFIX}-start")));
    assert_eq!(summary.rows, samples.len(), "{summary:?}");
    tracker.stop().await;
}
