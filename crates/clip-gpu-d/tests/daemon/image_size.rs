//! The width and height stored in the dataset are those of the image bytes, not the bundle's
//! metadata, which a scraper may get wrong.

use std::io::Read;

use cah_protocol::ClientType;

use crate::parity_support;
use crate::support::{
    RealTracker, daemon_config, good_bundle, hand_in, run_until_completed, with_metadata,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_sizes_come_from_the_decoded_image() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    let photos = &parity_support::photos()[..2];
    let (entries, mut samples) =
        good_bundle(&jobs[0], photos, |i| format!("http://img.test/{i}.jpg"));
    let truth: Vec<(u32, u32)> = samples.iter().map(|s| (s.width, s.height)).collect();
    for sample in &mut samples {
        (sample.width, sample.height) = (123_456, 7);
    }
    let blob = hand_in(
        &cpu,
        jobs[0].number,
        with_metadata(entries, &samples, jobs[0].number),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("dataset");
    let config = daemon_config(&tracker.base_url, &output, &[]);
    run_until_completed(&tracker, config, &[blob]).await;
    tracker.stop().await;

    let mut stored = Vec::new();
    let tar = std::fs::File::open(output.join("00000.tar")).expect("shard tar");
    for entry in tar::Archive::new(tar).entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry
            .path()
            .expect("path")
            .extension()
            .is_some_and(|ext| ext == "json")
        {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("json");
            let meta: serde_json::Value = serde_json::from_str(&text).expect("json");
            let size = |key: &str| u32::try_from(meta[key].as_u64().expect(key)).expect(key);
            stored.push((size("width"), size("height")));
        }
    }
    stored.sort_unstable();
    let mut truth = truth;
    truth.sort_unstable();
    assert_eq!(stored, truth);
}
