//! Dedup sets and the calls that read the tracker's state: `ext/info`, `ext/clients`, `/data`.

use cah_protocol::ClientType;
use cah_protocol::ext::{ClientInfo, DedupSet, InfoResponse};
use cah_protocol::legacy::DataResponse;

use super::support::{Backend, RealTracker, eventually, now_ms};

on_both_databases!(
    dedup_reports_new_then_seen,
    info_clients_and_data,
    clients_lists_past_the_trackers_default
);

async fn dedup_reports_new_then_seen(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    // A hybrid client may add to every set (a GPU client only to `clipped` and `main`).
    let session = tracker.register("dedup", ClientType::Hybrid).await;
    let big = u64::MAX - 3;
    let check = async |set: DedupSet, hashes: &[u64], add: bool| {
        session
            .dedup(set, hashes, add)
            .await
            .unwrap_or_else(|error| panic!("dedup {set:?} {hashes:?}: {error}"))
    };
    assert_eq!(
        check(DedupSet::Parsed, &[1, 2, 2, big], true).await,
        [true, true, false, true],
        "a hash repeated within a request is new only at its first place"
    );
    assert_eq!(
        check(DedupSet::Parsed, &[2, 3, big], true).await,
        [false, true, false]
    );
    assert_eq!(
        check(DedupSet::Parsed, &[3, 4], false).await,
        [false, true],
        "a check without add"
    );
    assert_eq!(
        check(DedupSet::Parsed, &[4], false).await,
        [true],
        "added nothing"
    );
    assert_eq!(
        check(DedupSet::Clipped, &[1, 2], true).await,
        [true, true],
        "sets are separate"
    );
    assert_eq!(check(DedupSet::Main, &[], true).await, Vec::<bool>::new());
    tracker.stop().await;
}

async fn info_clients_and_data(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    tracker.import(1).await;
    let client = tracker.client();
    assert_eq!(
        client.info().await.expect("info"),
        InfoResponse {
            api_version: cah_protocol::API_VERSION,
            // tracker-d and this crate both take the workspace's version.
            server: format!("tracker-d {}", env!("CARGO_PKG_VERSION")),
            lease_seconds: 30 * 60,
            max_bundle_bytes: 4 << 30,
        }
    );

    let started_s = now_ms() / 1000;
    let scraper = tracker.register("erin", ClientType::Cpu).await;
    let scorer = tracker.register("frank", ClientType::Gpu).await;
    let hybrid = tracker.register("grace", ClientType::Hybrid).await;
    scraper.heartbeat("parsing WAT").await.expect("heartbeat");
    scorer
        .update_progress("loading model")
        .await
        .expect("progress");
    let expected = [
        (
            scraper.display_name(),
            ClientType::Cpu,
            "erin",
            "parsing WAT",
        ),
        (
            scorer.display_name(),
            ClientType::Gpu,
            "frank",
            "loading model",
        ),
        (
            hybrid.display_name(),
            ClientType::Hybrid,
            "grace",
            "Initialized",
        ),
    ];
    // Progress reaches the database with the tracker's once-a-second write of client touches.
    let listed: Vec<ClientInfo> = eventually("progress written", || async {
        let mut listed = client.clients().await.expect("clients");
        listed.sort_by(|a, b| a.nickname.cmp(&b.nickname));
        (listed.len() == 3
            && listed[0].progress == "parsing WAT"
            && listed[1].progress == "loading model")
            .then_some(listed)
    })
    .await;
    let finished_s = now_ms() / 1000;
    for (info, (display_name, client_type, nickname, progress)) in listed.iter().zip(expected) {
        assert_eq!(
            (
                info.display_name.as_str(),
                info.client_type,
                info.nickname.as_str(),
                info.progress.as_str()
            ),
            (display_name, client_type, nickname, progress)
        );
        assert!(
            (started_s..=finished_s).contains(&info.last_seen),
            "last seen {} outside {started_s}..={finished_s}",
            info.last_seen
        );
    }

    assert_eq!(
        client.data().await.expect("data"),
        DataResponse {
            completion_str: "0 / 2".to_owned(),
            completion_float: 0.0,
            total_connected_workers: 3,
            total_pairs_scraped: 0,
            eta: "Calculating...".to_owned(),
            failed_jobs: Some(0),
        }
    );
    tracker.stop().await;
}

/// tracker-d lists 1,000 clients unless asked for more; the client asks for its cap, so a swarm
/// of more nodes still finds every heartbeat.
async fn clients_lists_past_the_trackers_default(backend: Backend) {
    let tracker = RealTracker::start(backend, &[]).await;
    let client = tracker.client();
    for index in 0..1_050 {
        tracker
            .register(&format!("node{index}"), ClientType::Cpu)
            .await;
    }
    let listed = client.clients().await.expect("clients");
    assert_eq!(listed.len(), 1_050);
}
