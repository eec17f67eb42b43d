//! Cross-job dedup through the tracker's `parsed` set: a WAT whose pairs another job already
//! scraped yields an empty bundle, `--tracker-dedup false` scrapes them again, and a job sent
//! back to scraping after its bundle was reported invalid keeps its own pairs.

use std::io::Read;

use cah_protocol::bundle::{BundleSample, SAMPLES_FILE};
use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::WatConfig;

use super::support::{self, TestTracker};

/// Samples per WAT URL after the daemon has worked every job, read from the bundles.
async fn scrape_twice(tracker_dedup: bool) -> (usize, usize) {
    let test_web = support::start_web().await;
    let root = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 6,
        ..WatConfig::small(test_web.web.port(), 23)
    };
    write_crawl(root.path(), std::slice::from_ref(&config)).expect("crawl written");
    // The same WAT under a second name: every pair of it is in both files.
    let original = root
        .path()
        .join(config.relative_path().trim_start_matches('/'));
    let copy_relative = config
        .relative_path()
        .replace(".warc.wat.gz", "-copy.warc.wat.gz");
    std::fs::copy(
        &original,
        root.path().join(copy_relative.trim_start_matches('/')),
    )
    .expect("copy wat");
    let server = CommonCrawlServer::start_local(root.path())
        .await
        .expect("common crawl server");
    let first = format!("{}{}", server.base_url(), config.relative_path());
    let second = format!("{}{}", server.base_url(), copy_relative);

    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&first)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut run = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    run.tracker_dedup = tracker_dedup;
    let summary = scraper_d::daemon::run(run.clone(), std::future::pending())
        .await
        .expect("first run");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");
    // The copy is imported only now, so the two WATs are scraped one after the other.
    tracker.import(std::slice::from_ref(&second)).await;
    let summary = scraper_d::daemon::run(run, std::future::pending())
        .await
        .expect("second run");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");

    let (mut from_first, mut from_second) = (0, 0);
    for (job, bytes) in support::gpu_bundles(&tracker.base, 4).await {
        let samples = samples_in(&bytes);
        if job.wat_url == first {
            from_first += samples;
        } else {
            assert_eq!(job.wat_url, second);
            from_second += samples;
        }
    }
    tracker.stop().await;
    (from_first, from_second)
}

fn samples_in(bundle: &[u8]) -> usize {
    let mut archive = tar::Archive::new(bundle);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == SAMPLES_FILE {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("samples");
            let samples: Vec<BundleSample> = text
                .lines()
                .map(|line| serde_json::from_str(line).expect("sample line"))
                .collect();
            return samples.len();
        }
    }
    panic!("bundle without {SAMPLES_FILE}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_another_job_scraped_are_skipped() {
    let (first, second) = scrape_twice(true).await;
    assert!(first > 0, "the first WAT stored pictures");
    assert_eq!(
        second, 0,
        "every pair of the copy was already in the parsed set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_dedup_can_be_turned_off() {
    let (first, second) = scrape_twice(false).await;
    assert!(first > 0, "the first WAT stored pictures");
    assert!(
        second > 0,
        "without tracker dedup the copy is scraped again"
    );
}

/// A bundle that clip-gpu-d reported invalid sends its job back to be scraped; the pairs the
/// first scrape added to `parsed` are the job's own, so the second scrape must keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_scraped_again_after_an_invalid_bundle_keeps_its_own_pairs() {
    let test_web = support::start_web().await;
    let root = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 6,
        ..WatConfig::small(test_web.web.port(), 29)
    };
    write_crawl(root.path(), std::slice::from_ref(&config)).expect("crawl written");
    let server = CommonCrawlServer::start_local(root.path())
        .await
        .expect("common crawl server");
    let url = format!("{}{}", server.base_url(), config.relative_path());
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let run = support::run_config(&tracker.base, test_web.dns.addr(), work.path());
    let summary = scraper_d::daemon::run(run.clone(), std::future::pending())
        .await
        .expect("first run");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");

    let (gpu, bundles) = support::gpu_claim_bundles(&tracker.base, "gpu-rejects", 2).await;
    let mut first_scrape = std::collections::BTreeMap::new();
    for (job, bytes) in &bundles {
        first_scrape.insert(job.number, samples_in(bytes));
        gpu.report_invalid(job.number, "test: bundle rejected")
            .await
            .expect("report invalid");
    }
    assert!(
        first_scrape.values().sum::<usize>() > 0,
        "the first scrape stored pictures: {first_scrape:?}"
    );

    let summary = scraper_d::daemon::run(run, std::future::pending())
        .await
        .expect("second run");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");
    let second_scrape: std::collections::BTreeMap<u64, usize> =
        support::gpu_bundles(&tracker.base, 2)
            .await
            .into_iter()
            .map(|(job, bytes)| (job.number, samples_in(&bytes)))
            .collect();
    tracker.stop().await;
    assert_eq!(
        second_scrape, first_scrape,
        "the second scrape keeps the pairs its first scrape added to parsed"
    );
}
