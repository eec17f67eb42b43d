//! Tests of the shard writer: visibility order, restart recovery and the optional formats.

use std::collections::BTreeSet;

use super::*;

fn pair(sample_id: u64) -> KeptPair {
    KeptPair {
        sample: BundleSample {
            sample_id,
            file: format!("{sample_id}.jpg"),
            url: format!("http://a.test/{sample_id}.jpg"),
            final_url: format!("http://a.test/{sample_id}.jpg"),
            alt: format!("caption {sample_id}"),
            page_url: "http://a.test/".to_owned(),
            license: None,
            language: Some("eng".to_owned()),
            original_width: 10,
            original_height: 20,
            width: 10,
            height: 20,
            bytes: 3,
            sha256: "00".to_owned(),
        },
        image: vec![1, 2, 3],
        hash: sample_id * 7,
        job: 1,
        claim: 1,
        similarity: 0.5,
        nsfw: NsfwTag::Unlikely,
        image_embedding: vec![1.0, 0.0],
        text_embedding: vec![0.0, 1.0],
    }
}

fn format(shard_size: usize, tfrecord: bool) -> ShardFormat {
    ShardFormat {
        shard_size,
        tfrecord,
        embedding_dtype: EmbeddingDtype::F32,
    }
}

#[test]
fn shards_appear_whole_and_recovery_cleans_half_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    let none = BTreeSet::new();
    let next = recover(out, &none).expect("recover").next_number;
    let mut writer = ShardWriter::new(out, format(2, false), next);
    assert!(writer.push(pair(1)).expect("push").is_none());
    assert!(!out.join("00000_stats.json").is_file());
    let finished = writer.push(pair(2)).expect("push").expect("full shard");
    assert_eq!(
        (finished.number, finished.hashes.as_slice()),
        (0, &[7, 14][..])
    );
    for name in [
        "00000.tar",
        "00000.parquet",
        "00000_stats.json",
        "img_emb/img_emb_00000.npy",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    assert!(!out.join("00000.tfrecord").exists(), "tfrecord is opt-in");
    // A crash after shard 0 became visible but before it was committed, and in shard 1.
    writer.push(pair(3)).expect("push");
    drop(writer);
    let recovery = recover(out, &none).expect("recover");
    assert_eq!(recovery.next_number, 1);
    assert_eq!(recovery.complete, [0]);
    assert_eq!(recovery.uncommitted.len(), 1);
    assert_eq!(recovery.uncommitted[0].hashes, [7, 14]);
    assert!(
        !out.join("00001.tar.tmp").is_file(),
        "temporary files are removed"
    );
    mark_committed(out, 0).expect("commit");
    assert!(recover(out, &none).expect("recover").uncommitted.is_empty());
    assert_eq!(digits(9_999), 4);
    assert_eq!(shard_number("00012_stats.json", "_stats.json"), Some(12));
    assert_eq!(shard_number("x_stats.json", "_stats.json"), None);
}

#[test]
fn tfrecord_holds_one_record_per_row_and_is_renamed_before_the_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    recover(out, &BTreeSet::new()).expect("recover");
    let mut writer = ShardWriter::new(out, format(3, true), 0);
    writer.push(pair(1)).expect("push");
    writer.push(pair(2)).expect("push");
    assert!(out.join("00000.tfrecord.tmp").is_file());
    writer.finish().expect("finish").expect("a short shard");
    let bytes = std::fs::read(out.join("00000.tfrecord")).expect("tfrecord");
    let mut offset = 0;
    let mut n_records = 0;
    while offset < bytes.len() {
        let length = u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8"));
        offset += 8 + 4 + length as usize + 4;
        n_records += 1;
    }
    assert_eq!((offset, n_records), (bytes.len(), 2));
    assert_eq!(
        shard_files(0).last().map(String::as_str),
        Some("00000_stats.json")
    );
    assert!(out.join("00000_stats.json").is_file());
    // A discarded shard leaves nothing, and the next one takes its number.
    writer.push(pair(3)).expect("push");
    assert!(out.join("00001.tar.tmp").is_file() && out.join("00001.tfrecord.tmp").is_file());
    writer.discard().expect("discard");
    assert_eq!((writer.open_rows(), writer.number()), (0, 1));
    assert!(!out.join("00001.tar.tmp").exists() && !out.join("00001.tfrecord.tmp").exists());
    assert!(
        writer.finish().expect("finish").is_none(),
        "nothing left to close"
    );
}

#[test]
fn shards_published_elsewhere_count_as_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    recover(out, &BTreeSet::new()).expect("recover");
    // Shard 4 was uploaded and its local files deleted, but its commit did not finish;
    // shard 5 never completed anywhere.
    std::fs::write(out.join("00004.pending"), br#"{"hashes":[9],"jobs":[1]}"#).expect("marker");
    std::fs::write(out.join("00005.pending"), br#"{"hashes":[8],"jobs":[2]}"#).expect("marker");
    std::fs::write(out.join("00005.tar"), b"half").expect("tar");
    let recovery = recover(out, &BTreeSet::from([2, 4])).expect("recover");
    assert_eq!(recovery.next_number, 5);
    assert_eq!(recovery.uncommitted.len(), 1);
    assert_eq!(
        (
            recovery.uncommitted[0].number,
            recovery.uncommitted[0].hashes.as_slice()
        ),
        (4, &[9][..])
    );
    assert_eq!(recovery.deleted, [5]);
    assert!(!out.join("00005.tar").exists() && !out.join("00005.pending").exists());
    assert!(recovery.complete.is_empty());
}

#[test]
fn rows_taken_out_leave_no_trace_in_any_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    recover(out, &BTreeSet::new()).expect("recover");
    let mut writer = ShardWriter::new(out, format(10, true), 0);
    let of_claim = |sample_id: u64, claim: u64| KeptPair {
        claim,
        image_embedding: vec![sample_id as f32, 0.5],
        ..pair(sample_id)
    };
    for (sample_id, claim) in [(1, 1), (2, 2), (3, 1)] {
        assert!(
            writer
                .push(of_claim(sample_id, claim))
                .expect("push")
                .is_none()
        );
    }
    assert_eq!(writer.take_out(1), [7, 21]);
    assert_eq!((writer.open_rows(), writer.room()), (1, 9));
    assert!(writer.take_out(1).is_empty(), "taken out once");
    writer.push(of_claim(4, 2)).expect("push");
    let finished = writer.finish().expect("finish").expect("a shard");
    assert_eq!(finished.hashes, [14, 28]);

    // The tar holds the two rows' entries, under their own keys, and nothing else.
    let mut archive = tar::Archive::new(File::open(out.join("00000.tar")).expect("tar"));
    let mut names = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut body = String::new();
        if name.ends_with(".txt") {
            std::io::Read::read_to_string(&mut entry, &mut body).expect("caption");
            names.push(format!("{name}={body}"));
        } else {
            names.push(name);
        }
    }
    assert_eq!(
        names,
        [
            "000000001.jpg",
            "000000001.txt=caption 2",
            "000000001.json",
            "000000003.jpg",
            "000000003.txt=caption 4",
            "000000003.json"
        ]
    );
    let bytes = std::fs::read(out.join("00000.tfrecord")).expect("tfrecord");
    let mut offset = 0;
    let mut n_records = 0;
    while offset < bytes.len() {
        let length = u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8"));
        let record = &bytes[offset + 12..offset + 12 + length as usize];
        assert!(
            !record
                .windows(9)
                .any(|w| w == b"caption 1" || w == b"caption 3")
        );
        offset += 8 + 4 + length as usize + 4;
        n_records += 1;
    }
    assert_eq!((offset, n_records), (bytes.len(), 2));
    let (rows, cols, values) =
        crate::npy::read_f32(&out.join("img_emb/img_emb_00000.npy")).expect("npy");
    assert_eq!((rows, cols, values), (2, 2, vec![2.0, 0.5, 4.0, 0.5]));
    let marker = std::fs::read_to_string(out.join("00000.pending")).expect("marker");
    assert_eq!(marker, r#"{"hashes":[14,28],"jobs":[1]}"#);

    // A shard whose every row was taken out is never shown, and the next takes its number.
    writer.push(of_claim(5, 3)).expect("push");
    assert_eq!(writer.take_out(3), [35]);
    assert!(writer.finish().expect("finish").is_none());
    assert_eq!(writer.number(), 1);
    assert!(!out.join("00001.tar.tmp").exists() && !out.join("00001.tfrecord.tmp").exists());
    writer.push(of_claim(6, 3)).expect("push");
    let finished = writer.finish().expect("finish").expect("a shard");
    assert_eq!((finished.number, finished.hashes), (1, vec![42]));
}

#[test]
fn a_complete_shard_with_its_marker_is_uncommitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    assert!(!has_uncommitted(out));
    // Half-written (no stats): deleted at restart, not held back.
    std::fs::write(out.join("00003.pending"), b"{}").expect("marker");
    assert!(!has_uncommitted(out));
    std::fs::write(out.join("00003_stats.json"), b"{}").expect("stats");
    assert!(has_uncommitted(out));
    mark_committed(out, 3).expect("commit");
    assert!(!has_uncommitted(out));
    assert!(
        has_uncommitted(&out.join("missing")),
        "unreadable: the cautious answer"
    );
}
