//! WAT files read back with an independent reader: member layout, record headers, the JSON
//! envelope, both header styles, the candidate list, hostile variants, and size targets.

use std::io::{BufRead, BufReader, Read};

use cah_testkit::wat::{
    ExpectedCandidate, FaultMix, HeaderStyle, Hostility, WatConfig, generate, generate_to_vec,
    resolve_image_url,
};
use flate2::read::{GzDecoder, MultiGzDecoder};
use serde_json::Value;

/// One WARC record: header lines and body.
struct Record {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Record {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Reads every record of a WAT stream; `Err` carries the records read before the failure.
fn read_records(bytes: &[u8]) -> Result<Vec<Record>, (Vec<Record>, String)> {
    let mut reader = BufReader::new(MultiGzDecoder::new(bytes));
    let mut records = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(records),
            Ok(_) => {}
            Err(error) => return Err((records, format!("inflate: {error}"))),
        }
        if line != "WARC/1.0\r\n" {
            return Err((records, format!("expected a version line, got {line:?}")));
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if let Err(error) = reader.read_line(&mut line) {
                return Err((records, format!("header: {error}")));
            }
            let line = line.trim_end_matches("\r\n");
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(": ")
                .expect("header lines are `Name: value`");
            headers.push((name.to_owned(), value.to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "Content-Length")
            .expect("length")
            .1
            .parse()
            .expect("number");
        let mut body = vec![0u8; length];
        if let Err(error) = reader.read_exact(&mut body) {
            return Err((records, format!("body: {error}")));
        }
        let mut trailer = [0u8; 4];
        if reader.read_exact(&mut trailer).is_err() || &trailer != b"\r\n\r\n" {
            return Err((records, "missing record trailer".into()));
        }
        records.push(Record { headers, body });
    }
}

/// Candidates extracted independently from the JSON, by the rule documented in `cah_testkit::wat`.
fn extract(records: &[Record]) -> Vec<(String, String, String, Option<String>)> {
    let mut out = Vec::new();
    for record in records.iter().skip(1) {
        let Ok(json) = serde_json::from_slice::<Value>(&record.body) else {
            continue;
        };
        let envelope = &json["Envelope"];
        if envelope["WARC-Header-Metadata"]["WARC-Type"] != "response" {
            continue;
        }
        let response = &envelope["Payload-Metadata"]["HTTP-Response-Metadata"];
        let status: u16 = response["Response-Message"]["Status"]
            .as_str()
            .expect("status is a string")
            .parse()
            .expect("number");
        let html = &response["HTML-Metadata"];
        if !(200..300).contains(&status) || html.is_null() {
            continue;
        }
        let page_url = envelope["WARC-Header-Metadata"]["WARC-Target-URI"]
            .as_str()
            .expect("target")
            .to_owned();
        let page = url::Url::parse(&page_url).expect("page url");
        let base = html["Head"]["Base"]
            .as_str()
            .and_then(|base| page.join(base.trim()).ok())
            .unwrap_or(page);
        let mut license = None;
        for link in html["Links"].as_array().expect("links") {
            let url = link["url"].as_str().expect("url");
            if url.contains("creativecommons.org/licenses/") {
                license = Some(url.to_owned());
                continue;
            }
            let Some(alt) = link["alt"].as_str().filter(|alt| !alt.trim().is_empty()) else {
                continue;
            };
            if link["path"] != "IMG@/src" {
                continue;
            }
            if let Some(resolved) = resolve_image_url(&base, url) {
                out.push((resolved, alt.to_owned(), page_url.clone(), license.clone()));
            }
        }
    }
    out
}

fn as_tuples(candidates: &[ExpectedCandidate]) -> Vec<(String, String, String, Option<String>)> {
    candidates
        .iter()
        .map(|c| {
            (
                c.url.clone(),
                c.alt.clone(),
                c.page_url.clone(),
                c.license.clone(),
            )
        })
        .collect()
}

#[test]
fn layout_matches_common_crawl() {
    let config = WatConfig {
        n_pages: 40,
        faults: FaultMix::Fast,
        ..WatConfig::small(8080, 3)
    };
    let (bytes, candidates, summary) = generate_to_vec(&config).expect("generate");
    assert_eq!(summary.n_bytes, bytes.len() as u64);

    // One gzip member per record: a single-member decoder sees only the warcinfo record.
    let mut first_member = String::new();
    GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut first_member)
        .expect("first member");
    assert!(
        first_member.starts_with("WARC/1.0\r\nWARC-Type: warcinfo\r\n"),
        "{first_member}"
    );
    assert!(first_member.ends_with("\r\n\r\n") && !first_member.contains("WARC-Type: metadata"));

    let records = read_records(&bytes).unwrap_or_else(|(_, error)| panic!("{error}"));
    assert_eq!(records.len() as u64, summary.n_records);
    assert_eq!(records.len() as u64, 1 + 3 * summary.n_pages);
    assert_eq!(
        records[0].header("WARC-Filename"),
        Some(config.wat_filename().as_str())
    );
    assert_eq!(
        records[0].header("Content-Type"),
        Some("application/warc-fields")
    );
    let mut types = Vec::new();
    for record in &records[1..] {
        assert_eq!(record.header("WARC-Type"), Some("metadata"));
        assert_eq!(record.header("Content-Type"), Some("application/json"));
        for name in [
            "WARC-Target-URI",
            "WARC-Date",
            "WARC-Record-ID",
            "WARC-Refers-To",
        ] {
            assert!(record.header(name).is_some(), "missing {name}");
        }
        assert!(
            record
                .header("WARC-Record-ID")
                .is_some_and(|id| id.starts_with("<urn:uuid:") && id.len() == 47)
        );
        let json: Value = serde_json::from_slice(&record.body).expect("json");
        let inner = &json["Envelope"]["WARC-Header-Metadata"];
        types.push(inner["WARC-Type"].as_str().expect("type").to_owned());
        assert_eq!(
            inner["WARC-Target-URI"].as_str(),
            record.header("WARC-Target-URI")
        );
        assert!(
            json["Container"]["Offset"].is_string(),
            "scalars are strings"
        );
    }
    assert_eq!(&types[..3], ["request", "response", "metadata"]);
    assert_eq!(extract(&records), as_tuples(&candidates));
    assert!(
        candidates.iter().any(|c| c.license.is_some())
            && candidates.iter().any(|c| c.license.is_none())
    );
    assert!(
        candidates.iter().any(|c| c.raw_url.starts_with('/'))
            && candidates.iter().any(|c| c.raw_url.starts_with("//"))
    );
    assert!(
        candidates.iter().any(|c| !c.alt.is_ascii()),
        "some alt texts are not ASCII"
    );

    let (again, _, _) = generate_to_vec(&config).expect("generate");
    assert_eq!(again, bytes, "generation is deterministic");
}

#[test]
fn header_styles_before_and_after_december_2024() {
    for (crawl, style) in [
        ("CC-MAIN-2024-46", HeaderStyle::Legacy),
        ("CC-MAIN-2024-51", HeaderStyle::Arrays),
    ] {
        let config = WatConfig {
            crawl: crawl.into(),
            header_style: HeaderStyle::for_crawl(crawl),
            ..WatConfig::small(8080, 5)
        };
        assert_eq!(config.header_style, style);
        let (bytes, _, _) = generate_to_vec(&config).expect("generate");
        let records = read_records(&bytes).unwrap_or_else(|(_, error)| panic!("{error}"));
        let (mut n_arrays, mut n_repeated_strings) = (0, 0);
        for record in &records[1..] {
            let json: Value = serde_json::from_slice(&record.body).expect("json");
            let envelope = &json["Envelope"];
            let maps = [
                &envelope["WARC-Header-Metadata"],
                &envelope["Payload-Metadata"]["HTTP-Response-Metadata"]["Headers"],
            ];
            for map in maps.into_iter().filter_map(Value::as_object) {
                for (name, value) in map {
                    match value {
                        Value::Array(values) => {
                            assert!(
                                values.len() >= 2 && values.iter().all(Value::is_string),
                                "{name}: {value}"
                            );
                            n_arrays += 1;
                        }
                        Value::String(_)
                            if matches!(name.as_str(), "Set-Cookie" | "Vary" | "WARC-Protocol") =>
                        {
                            n_repeated_strings += 1
                        }
                        Value::String(_) => {}
                        other => panic!("{name} is {other}"),
                    }
                }
            }
        }
        match style {
            HeaderStyle::Legacy => assert!(
                n_arrays == 0 && n_repeated_strings > 0,
                "{crawl}: {n_arrays} arrays"
            ),
            HeaderStyle::Arrays => assert!(
                n_arrays > 0 && n_repeated_strings == 0,
                "{crawl}: {n_repeated_strings} strings"
            ),
        }
    }
}

#[test]
fn hostile_records_hide_their_candidates_and_terminal_damage_ends_the_file() {
    let inline = [
        Hostility::MalformedJson,
        Hostility::InvalidUtf8,
        Hostility::GiantRecord { bytes: 2_000_000 },
        Hostility::BinaryGarbage,
        Hostility::DeepNesting { depth: 10_000 },
    ];
    let config = WatConfig {
        n_pages: 30,
        hostile: inline.to_vec(),
        ..WatConfig::small(8080, 9)
    };
    let (bytes, candidates, _) = generate_to_vec(&config).expect("generate");
    let records = read_records(&bytes)
        .unwrap_or_else(|(_, error)| panic!("inline damage must not break the stream: {error}"));
    let mut failures = Vec::new();
    for record in &records[1..] {
        if let Err(error) = serde_json::from_slice::<Value>(&record.body) {
            failures.push(error.to_string());
        }
    }
    assert_eq!(failures.len(), 4, "{failures:?}");
    for expected in ["invalid unicode code point", "recursion limit exceeded"] {
        assert!(
            failures.iter().any(|error| error.contains(expected)),
            "{expected}: {failures:?}"
        );
    }
    assert!(
        records.iter().any(|record| record.body.len() >= 2_000_000),
        "a giant record is present"
    );
    assert_eq!(
        extract(&records),
        as_tuples(&candidates),
        "hostile records add no candidates"
    );

    for terminal in [
        Hostility::TruncatedMember,
        Hostility::CorruptGzip,
        Hostility::TruncatedRecord,
    ] {
        let config = WatConfig {
            n_pages: 5,
            hostile: vec![terminal],
            ..WatConfig::small(8080, 9)
        };
        let (bytes, candidates, summary) = generate_to_vec(&config).expect("generate");
        let (before, error) = match read_records(&bytes) {
            Ok(records) => panic!("{terminal:?}: read {} records without error", records.len()),
            Err(partial) => partial,
        };
        assert_eq!(
            before.len() as u64,
            1 + 3 * summary.n_pages,
            "{terminal:?}: {error}"
        );
        assert_eq!(extract(&before), as_tuples(&candidates), "{terminal:?}");
    }
}

#[test]
fn size_targets_stream_with_bounded_memory() {
    let config = WatConfig {
        target_bytes: Some(600_000),
        faults: FaultMix::Full,
        compression: 1,
        ..WatConfig::small(8080, 4)
    };
    let mut n_seen = 0u64;
    let mut counter = CountingSink(0);
    let (summary, _) = generate(&config, &mut counter, |_| n_seen += 1).expect("generate");
    assert!(
        summary.n_bytes >= 600_000 && summary.n_bytes < 700_000,
        "{}",
        summary.n_bytes
    );
    assert_eq!(counter.0, summary.n_bytes);
    assert_eq!(n_seen, summary.n_candidates);
    assert!(summary.n_pages > 50, "{}", summary.n_pages);
}

struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
