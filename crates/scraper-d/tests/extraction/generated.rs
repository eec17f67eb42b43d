//! Whole generated files: the exact candidate list, halves and sample IDs.

use std::sync::OnceLock;

use cah_testkit::wat::{FaultMix, HeaderStyle, WatConfig, generate_to_vec};
use scraper_d::{HalfJob, IdRange, SkipReason};

use super::support::{self, HALF0, HALF1};

/// A generated file and its adapted expectation, built once per test binary (debug builds of the
/// generator are slow).
struct Fixture {
    bytes: Vec<u8>,
    expected: Vec<support::Row>,
}

fn fixture(style: HeaderStyle) -> &'static Fixture {
    static ARRAYS: OnceLock<Fixture> = OnceLock::new();
    static LEGACY: OnceLock<Fixture> = OnceLock::new();
    let (cell, seed) = match style {
        HeaderStyle::Arrays => (&ARRAYS, 11),
        HeaderStyle::Legacy => (&LEGACY, 12),
    };
    cell.get_or_init(|| {
        let config = config(style, seed);
        let (bytes, expected, summary) = generate_to_vec(&config).expect("generate");
        let licenses = support::generated_licenses(&config, summary.n_pages);
        let expected = support::adapt(&expected, &licenses);
        Fixture { bytes, expected }
    })
}

fn config(style: HeaderStyle, seed: u64) -> WatConfig {
    WatConfig {
        n_pages: 250,
        faults: FaultMix::Fast,
        header_style: style,
        ..WatConfig::small(8080, seed)
    }
}

#[test]
fn both_header_styles_give_the_builders_candidates_with_halves_and_ids() {
    for style in [HeaderStyle::Arrays, HeaderStyle::Legacy] {
        let Fixture { bytes, expected } = fixture(style);
        assert!(
            expected.len() > 300,
            "{style:?}: only {} candidates",
            expected.len()
        );

        let (candidates, counts) = support::extract(bytes.as_slice(), support::both_halves());
        let got: Vec<support::Row> = candidates.iter().map(support::row).collect();
        assert_eq!(&got, expected, "{style:?}");
        assert!(counts.skipped(SkipReason::Extension) > 0);
        assert!(counts.skipped(SkipReason::DataUri) > 0);
        assert!(counts.skipped(SkipReason::AltMissing) > 0);
        assert!(counts.skipped(SkipReason::Non2xxStatus) > 0);
        assert_eq!(counts.candidates, candidates.len() as u64);
        assert_eq!(counts.bytes_compressed, bytes.len() as u64);

        // Without hostile records, page p's response is record 3p + 2: half p mod 2.
        let mut next = [HALF0.start, HALF1.start];
        for candidate in &candidates {
            let half = support::page_index(&candidate.page_url) % 2;
            assert_eq!(u64::from(candidate.half), half, "{}", candidate.page_url);
            assert_eq!(candidate.sample_id, next[half as usize]);
            next[half as usize] += 1;
            assert!(candidate.language.is_some(), "{}", candidate.alt);
            assert_eq!(
                candidate.pair_hash,
                scraper_d::dedup::pair_hash(&candidate.url, &candidate.alt)
            );
        }
        assert!(
            candidates
                .iter()
                .any(|candidate| candidate.license.is_some())
        );
    }
}

#[test]
fn one_half_at_a_time_gives_the_same_candidates_and_ids() {
    let bytes = &fixture(HeaderStyle::Arrays).bytes;
    let (both, _) = support::extract(bytes.as_slice(), support::both_halves());
    for (half, ids) in [(0u8, HALF0), (1, HALF1)] {
        let mut extract_config = support::both_halves();
        extract_config.halves = vec![HalfJob::new(half, ids).expect("half")];
        let (only, counts) = support::extract(bytes.as_slice(), extract_config);
        let expected: Vec<_> = both.iter().filter(|c| c.half == half).cloned().collect();
        assert_eq!(only, expected, "half {half}");
        assert!(counts.records_other_half > 0);
    }
}

#[test]
fn running_out_of_ids_is_a_counted_skip() {
    let bytes = &fixture(HeaderStyle::Legacy).bytes;
    let (all, _) = support::extract(bytes.as_slice(), support::both_halves());
    let n_half0 = all.iter().filter(|c| c.half == 0).count() as u64;
    let mut extract_config = support::both_halves();
    extract_config.halves = vec![
        HalfJob::new(
            0,
            IdRange {
                start: 100,
                end: 110,
            },
        )
        .expect("half"),
    ];
    let (candidates, counts) = support::extract(bytes.as_slice(), extract_config);
    let ids: Vec<u64> = candidates.iter().map(|c| c.sample_id).collect();
    assert_eq!(ids, (100..110).collect::<Vec<_>>());
    assert_eq!(counts.skipped(SkipReason::IdsExhausted), n_half0 - 10);
}

/// `wat` with `edit` applied to every record body, each record re-framed (`Content-Length`)
/// in its own gzip member.
fn edit_bodies(wat: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(wat)
        .read_to_string(&mut text)
        .expect("the generated WAT inflates");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("WARC/1.0\r\n") {
        rest = &rest[start..];
        let header_end = rest.find("\r\n\r\n").expect("headers end") + 4;
        let headers = &rest[..header_end];
        let length: usize = headers
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .expect("a Content-Length")
            .trim()
            .parse()
            .expect("a number");
        let body = edit(&rest[header_end..header_end + length]);
        let headers = headers.replace(
            &format!("Content-Length: {length}\r\n"),
            &format!("Content-Length: {}\r\n", body.len()),
        );
        let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        member
            .write_all(format!("{headers}{body}\r\n\r\n").as_bytes())
            .expect("gzip");
        out.extend(member.finish().expect("gzip"));
        rest = &rest[header_end + length..];
    }
    out
}

#[test]
fn json_that_escapes_every_slash_gives_the_same_candidates() {
    // `\/` is valid JSON for `/` (PHP's json_encode writes it): the `"IMG@/src"` and licence
    // prefilters must not skip such records.
    let Fixture { bytes, expected } = fixture(HeaderStyle::Arrays);
    let escaped = edit_bodies(bytes, |body| body.replace('/', "\\/"));
    let (plain, _) = support::extract(
        edit_bodies(bytes, str::to_owned).as_slice(),
        support::both_halves(),
    );
    let (candidates, _) = support::extract(escaped.as_slice(), support::both_halves());
    let got: Vec<support::Row> = candidates.iter().map(support::row).collect();
    assert_eq!(
        plain.len(),
        expected.len(),
        "the re-framing alone changes nothing"
    );
    assert!(
        got.iter().any(|row| row.3.is_some()),
        "licences are found too"
    );
    assert_eq!(&got, expected);
}
