//! A whole job through a real tracker: claim, extract, download, bundle, upload, complete;
//! then the bundle is downloaded as a GPU client would and checked entry by entry.

use std::io::Read;

use cah_protocol::bundle::{BundleSample, BundleStats, SAMPLES_FILE, STATS_FILE};
use cah_testkit::commoncrawl::{CommonCrawlServer, write_crawl};
use cah_testkit::wat::WatConfig;
use sha2::{Digest, Sha256};

use super::support::{self, TestTracker};

pub(crate) struct Crawl {
    pub(crate) server: CommonCrawlServer,
    pub(crate) wat_url: String,
    _root: tempfile::TempDir,
}

/// A crawl with one small WAT file whose images live on the test web.
pub(crate) async fn small_crawl(web_port: u16, n_pages: usize) -> Crawl {
    let root = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages,
        ..WatConfig::small(web_port, 17)
    };
    write_crawl(root.path(), std::slice::from_ref(&config)).expect("crawl written");
    let server = CommonCrawlServer::start_local(root.path())
        .await
        .expect("common crawl server");
    let wat_url = format!("{}{}", server.base_url(), config.relative_path());
    Crawl {
        server,
        wat_url,
        _root: root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_wat_becomes_two_verified_bundles() {
    let test_web = support::start_web().await;
    let crawl = small_crawl(test_web.web.port(), 6).await;
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = support::run_config(&tracker.base, test_web.dns.addr(), work.path());

    let summary = scraper_d::daemon::run(config, std::future::pending())
        .await
        .expect("daemon runs");
    assert_eq!(summary.completed.len(), 2, "{summary:?}");
    assert!(summary.released.is_empty() && summary.lost.is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(work.path()).expect("work dir").collect();
    assert!(leftovers.is_empty(), "bundles are removed after upload");

    // Download both bundles as a GPU client and check every entry.
    let mut total_stored = 0;
    for (job, bytes) in support::gpu_bundles(&tracker.base, 2).await {
        let stored = check_bundle(&bytes, job.number, job.start_id..job.end_id, &test_web.web);
        total_stored += stored;
    }
    assert!(total_stored > 0, "some pictures were stored");
    tracker.stop().await;
}

/// Checks a bundle's layout and metadata; returns the number of images.
fn check_bundle(
    bytes: &[u8],
    job: u64,
    ids: std::ops::Range<u64>,
    web: &cah_testkit::web::WebServer,
) -> u64 {
    let mut archive = tar::Archive::new(bytes);
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    let mut samples: Vec<BundleSample> = Vec::new();
    let mut stats: Option<BundleStats> = None;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        if name == SAMPLES_FILE {
            assert!(stats.is_none(), "samples come before stats");
            for line in String::from_utf8(data).expect("utf-8").lines() {
                samples.push(serde_json::from_str(line).expect("sample line"));
            }
        } else if name == STATS_FILE {
            stats = Some(serde_json::from_slice(&data).expect("stats"));
        } else {
            assert!(samples.is_empty(), "images come first");
            assert!(name.ends_with(".jpg") && !name.contains('/'), "{name}");
            images.push((name, data));
        }
    }
    let stats = stats.expect("stats.json present");
    assert_eq!(stats.job, job);
    assert_eq!(
        stats.format_version,
        cah_protocol::bundle::BUNDLE_FORMAT_VERSION
    );
    assert_eq!(samples.len(), images.len());
    assert_eq!(stats.stored, images.len() as u64);
    assert_eq!(stats.outcomes.get("ok").copied().unwrap_or(0), stats.stored);
    assert_eq!(stats.outcomes.values().sum::<u64>(), stats.candidates);
    for ((name, data), sample) in images.iter().zip(&samples) {
        assert_eq!(name, &sample.file);
        assert_eq!(sample.file, format!("{}.jpg", sample.sample_id));
        assert!(ids.contains(&sample.sample_id));
        assert_eq!(sample.bytes, data.len() as u64);
        assert_eq!(sample.sha256, scraper_d::job::hex(&Sha256::digest(data)));
        let decoded = image::load_from_memory(data).expect("stored jpeg decodes");
        assert_eq!(
            (decoded.width(), decoded.height()),
            (sample.width, sample.height)
        );
        assert!(sample.width.min(sample.height) <= 256);
        let photo = web.expected_photo(&sample.url).expect("a picture url");
        assert_eq!(
            (sample.original_width, sample.original_height),
            (photo.width, photo.height)
        );
        assert_eq!(sample.final_url, sample.url);
    }
    images.len() as u64
}
