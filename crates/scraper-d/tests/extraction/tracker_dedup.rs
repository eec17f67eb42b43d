//! Cross-job dedup through a real tracker-d (SQLite): a second job drops the pairs the first sent.

use cah_protocol::ClientType;
use cah_tracker_client::TrackerClient;
use scraper_d::SkipReason;
use scraper_d::dedup::dedup_with_tracker;
use tracker_d::testing::InProcess;

use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_job_drops_pairs_the_tracker_has_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!("sqlite://{}", dir.path().join("tracker.sqlite").display());
    let server = InProcess::start(&database_url, &dir.path().join("staging"), &[]).await;
    let base = url::Url::parse(&format!("{}/", server.base())).expect("url");
    let session = TrackerClient::with_defaults(base)
        .expect("client")
        .register("scraper-test", ClientType::Cpu)
        .await
        .expect("register");

    let config = cah_testkit::wat::WatConfig::small(8080, 61);
    let (bytes, _, _) = cah_testkit::wat::generate_to_vec(&config).expect("generate");
    let (candidates, mut first_counts) = support::extract(bytes.as_slice(), support::both_halves());
    let (first_half, second_half) = candidates.split_at(candidates.len() / 2);
    assert!(!first_half.is_empty());

    let kept = dedup_with_tracker(&session, first_half.to_vec(), &mut first_counts)
        .await
        .expect("dedup");
    assert_eq!(kept, first_half);

    let mut counts = scraper_d::Counts {
        candidates: candidates.len() as u64,
        ..Default::default()
    };
    let kept = dedup_with_tracker(&session, candidates.clone(), &mut counts)
        .await
        .expect("dedup");
    assert_eq!(kept, second_half);
    assert_eq!(
        counts.skipped(SkipReason::SeenByTracker),
        first_half.len() as u64
    );
    assert_eq!(counts.candidates, second_half.len() as u64);

    server.stop().await;
}
