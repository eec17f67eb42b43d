//! Damaged input: every hostile variant is counted by reason and extraction goes on after it.

use std::time::SystemTime;

use cah_testkit::wat::{HeaderStyle, Hostility, Html, Link, Page, WatWriter};
use scraper_d::SkipReason;

use super::support;

const WAT_NAME: &str = "CC-MAIN-20241209000000-20241209030000-00000.warc.wat.gz";

fn good_page(index: usize) -> Page {
    Page {
        url: format!("http://site-0001.blog.test/good-{index}.html"),
        status: 200,
        headers: vec![("Content-Type".into(), "text/html".into())],
        html: Some(Html {
            links: vec![Link::image(
                format!("/ok/good-{index}.jpg"),
                Some("a good picture of a lighthouse"),
            )],
            ..Html::default()
        }),
    }
}

fn writer() -> WatWriter<Vec<u8>> {
    WatWriter::new(
        Vec::new(),
        WAT_NAME,
        HeaderStyle::Arrays,
        SystemTime::UNIX_EPOCH,
        7,
    )
    .expect("writer")
}

fn urls(candidates: &[scraper_d::Candidate]) -> Vec<String> {
    candidates.iter().map(|c| c.url.clone()).collect()
}

#[test]
fn each_hostile_record_is_counted_and_the_rest_is_read() {
    let cases: &[(Hostility, &[SkipReason])] = &[
        (Hostility::MalformedJson, &[SkipReason::InvalidJson]),
        (Hostility::InvalidUtf8, &[SkipReason::InvalidUtf8]),
        (
            Hostility::GiantRecord { bytes: 3_000_000 },
            &[SkipReason::RecordTooLarge],
        ),
        (Hostility::BinaryGarbage, &[SkipReason::InvalidJson]),
        // Valid JSON that used to overflow the stack of the thread parsing it.
        (
            Hostility::DeepNesting { depth: 100_000 },
            &[SkipReason::InvalidJson],
        ),
        (Hostility::TruncatedRecord, &[SkipReason::TruncatedRecord]),
        (Hostility::CorruptGzip, &[SkipReason::GzipCorrupt]),
    ];
    for (hostility, reasons) in cases {
        let mut wat = writer();
        wat.write_page(&good_page(0)).expect("page");
        wat.write_hostile(*hostility, "http://site-9999.blog.test/hostile.html")
            .expect("hostile");
        wat.write_page(&good_page(1)).expect("page");
        let bytes = wat.finish().expect("finish");
        let (candidates, counts) = support::extract(bytes.as_slice(), support::both_halves());
        assert_eq!(
            urls(&candidates),
            vec![
                "http://site-0001.blog.test/ok/good-0.jpg",
                "http://site-0001.blog.test/ok/good-1.jpg"
            ],
            "{hostility:?}"
        );
        for reason in *reasons {
            assert_eq!(counts.skipped(*reason), 1, "{hostility:?}: {counts:?}");
        }
        let n_skips: u64 = counts.skipped.values().sum();
        let garbage = counts.skipped(SkipReason::GzipGarbage);
        assert_eq!(
            n_skips - garbage,
            reasons.len() as u64,
            "{hostility:?}: {counts:?}"
        );
    }
}

#[test]
fn a_truncated_member_mid_file_loses_at_most_the_next_record() {
    let mut wat = writer();
    wat.write_page(&good_page(0)).expect("page");
    wat.write_hostile(
        Hostility::TruncatedMember,
        "http://site-9999.blog.test/cut.html",
    )
    .expect("hostile");
    for index in 1..4 {
        wat.write_page(&good_page(index)).expect("page");
    }
    let bytes = wat.finish().expect("finish");
    let (candidates, counts) = support::extract(bytes.as_slice(), support::both_halves());
    let got = urls(&candidates);
    assert_eq!(got[0], "http://site-0001.blog.test/ok/good-0.jpg");
    for index in 2..4 {
        assert!(got.contains(&format!("http://site-0001.blog.test/ok/good-{index}.jpg")));
    }
    assert!(got.iter().all(|url| !url.contains("bait")));
    assert!(
        counts.skipped(SkipReason::GzipCorrupt) + counts.skipped(SkipReason::GzipTruncated) >= 1
    );
}

#[test]
fn terminal_damage_at_the_end_is_counted() {
    let cases = [
        (Hostility::TruncatedMember, SkipReason::GzipTruncated),
        (Hostility::TruncatedRecord, SkipReason::TruncatedRecord),
        (Hostility::CorruptGzip, SkipReason::GzipCorrupt),
    ];
    for (hostility, reason) in cases {
        let mut wat = writer();
        wat.write_page(&good_page(0)).expect("page");
        wat.write_hostile(hostility, "http://site-9999.blog.test/end.html")
            .expect("hostile");
        let bytes = wat.finish().expect("finish");
        let (candidates, counts) = support::extract(bytes.as_slice(), support::both_halves());
        assert_eq!(candidates.len(), 1, "{hostility:?}");
        assert_eq!(counts.skipped(reason), 1, "{hostility:?}: {counts:?}");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut wat = writer();
    for index in 0..20 {
        wat.write_page(&good_page(index)).expect("page");
    }
    let bytes = wat.finish().expect("finish");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..60 {
        let mut damaged = bytes.clone();
        for _ in 0..(1 + round % 8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let position = (state % damaged.len() as u64) as usize;
            damaged[position] ^= (state >> 32) as u8 | 1;
        }
        if round % 3 == 0 {
            damaged.truncate((state % damaged.len() as u64) as usize);
        }
        let (candidates, _) = support::extract(damaged.as_slice(), support::both_halves());
        assert!(candidates.len() <= 20);
    }
}
