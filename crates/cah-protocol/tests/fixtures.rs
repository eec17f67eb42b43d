//! Compatibility contract: 2021-shaped request and response bodies decode and re-encode unchanged.

use cah_protocol::legacy::*;
use cah_protocol::{ClientType, IdString, ext};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Decodes the fixture as `T`, re-encodes it and asserts the JSON is the same value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = fixture(name);
    let decoded: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|error| panic!("{name} does not decode: {error}"));
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    assert_eq!(encoded, original, "{name} changed in a round trip");
    decoded
}

#[test]
fn registration() {
    let query: NewQuery = round_trip("new_query.json");
    assert_eq!(query.client_type, ClientType::Gpu);
    let response: NewResponse = round_trip("new_response.json");
    assert_eq!(response.display_name, "quiet-otter-512");
}

#[test]
fn job_handout_keeps_string_ids() {
    let job: JobResponse = round_trip("job_response.json");
    assert_eq!(
        (job.start_id, job.end_id),
        (IdString(0), IdString(1_000_000))
    );
    assert_eq!((job.shard, job.number), (1, 2));
    let gpu: JobResponse = round_trip("gpu_job_response.json");
    assert!(gpu.url.starts_with("rsync "));
}

#[test]
fn worker_calls() {
    let token: TokenRequest = round_trip("token_request.json");
    assert_eq!(token.client_type, ClientType::Cpu);
    let progress: UpdateProgressRequest = round_trip("update_progress.json");
    assert_eq!(progress.progress, "Downloading images");
    let cpu: MarkAsDoneRequest = round_trip("mark_as_done_cpu.json");
    assert_eq!(
        cpu.url.as_deref(),
        Some("rsync 0b5e8a0e2c5e4bb4a3f2b8e9d1c0f7a6")
    );
    assert_eq!(cpu.start_id, Some(IdString(4_000_000)));
    let gpu: MarkAsDoneRequest = round_trip("mark_as_done_gpu.json");
    assert_eq!(gpu.count, Some(7324));
    let is_completed: IsCompletedRequest = round_trip("is_completed.json");
    assert_eq!(is_completed.addresses.len(), 2);
}

#[test]
fn full_wat_endpoints() {
    let lookup: LookupWatRequest = round_trip("lookup_wat_request.json");
    assert!(lookup.token.is_none());
    let shards: CustomResponse = round_trip("lookup_wat_response.json");
    let shards = shards.shards.expect("shards listed");
    assert_eq!(
        shards
            .iter()
            .map(|(n, s)| (*n, s.shard))
            .collect::<Vec<_>>(),
        [(1, 0), (2, 1)]
    );
    let failed: CustomResponse = round_trip("custom_failed.json");
    assert_eq!(failed.status, "failed");
    let done: MarkAsDoneCpuRequest = round_trip("markasdone_cpu_request.json");
    assert_eq!(done.urls["2"], "rsync 7d1f0c2e9a8b4c3d2e1f0a9b8c7d6e5f");
    let response: CustomResponse = round_trip("markasdone_cpu_response.json");
    assert_eq!(response.completed, Some(2));
}

#[test]
fn dashboard_data() {
    let data: DataResponse = round_trip("data.json");
    assert_eq!(data.total_connected_workers, 412);
    assert_eq!(data.failed_jobs, None, "a 2021 tracker does not send it");
    let data: DataResponse = round_trip("data_failed.json");
    assert_eq!(data.failed_jobs, Some(4));
    let worker: WorkerData = round_trip("worker_data.json");
    assert_eq!(worker.shard_number, Some(2));
}

#[test]
fn client_type_matches_on_first_letter() {
    for (text, expected) in [
        ("cpu", ClientType::Cpu),
        ("Cpu", ClientType::Cpu),
        ("g", ClientType::Gpu),
        ("hybrid", ClientType::Hybrid),
        ("GPU", ClientType::Gpu),
    ] {
        let decoded: ClientType = serde_json::from_value(serde_json::json!(text)).expect(text);
        assert_eq!(decoded, expected, "{text}");
    }
    let error = serde_json::from_value::<ClientType>(serde_json::json!("xpu")).unwrap_err();
    assert!(error.to_string().contains("unknown client type"), "{error}");
}

#[test]
fn missing_type_defaults_to_hybrid_as_in_2021() {
    let request: TokenRequest = serde_json::from_str(r#"{"token": "t"}"#).expect("decodes");
    assert_eq!(request.client_type, ClientType::Hybrid);
}

#[test]
fn ids_decode_from_numbers_and_reject_garbage() {
    let job: ShardInfo = serde_json::from_str(
        r#"{"url": "u", "start_id": 500000, "end_id": "1000000", "shard": 1}"#,
    )
    .expect("decodes");
    assert_eq!(job.start_id, IdString(500_000));
    assert!(serde_json::from_str::<IdString>(r#""12a""#).is_err());
    assert!(serde_json::from_str::<IdString>("-4").is_err());
}

#[test]
fn unknown_fields_are_tolerated() {
    let request: LookupWatRequest =
        serde_json::from_str(r#"{"url": "u", "password": "password"}"#).expect("decodes");
    assert_eq!(request.url, "u");
}

#[test]
fn extension_defaults() {
    let claim: ext::ClaimRequest = serde_json::from_str(r#"{"token": "t"}"#).expect("decodes");
    assert_eq!((claim.max_jobs, claim.whole_wat), (1, false));
    let dedup: ext::DedupRequest = serde_json::from_str(
        r#"{"token": "t", "set": "clipped", "hashes": [18446744073709551615]}"#,
    )
    .expect("decodes");
    assert_eq!(dedup.set, ext::DedupSet::Clipped);
    assert_eq!(dedup.hashes, [u64::MAX]);
    assert!(dedup.add);
    assert!(serde_json::from_str::<ext::DedupSet>(r#""nolang""#).is_err());
}

#[test]
fn bundle_metadata_names_width_and_height() {
    let line = r#"{"sample_id": 500001, "file": "500001.jpg", "url": "http://a.test/x.jpg", "final_url": "http://cdn.test/x.jpg", "alt": "a red bicycle", "page_url": "http://a.test/", "license": null, "language": "eng", "original_width": 1024, "original_height": 768, "width": 341, "height": 256, "bytes": 18211, "sha256": "00"}"#;
    let sample: cah_protocol::bundle::BundleSample = serde_json::from_str(line).expect("decodes");
    assert_eq!((sample.original_width, sample.original_height), (1024, 768));
    assert_eq!((sample.width, sample.height), (341, 256));
    let encoded = serde_json::to_value(&sample).expect("encodes");
    assert_eq!(
        encoded,
        serde_json::from_str::<serde_json::Value>(line).unwrap()
    );
}
