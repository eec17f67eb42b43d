//! The `scraper-d extract` binary: atomic output files, Parquet and JSON lines, the summary.

use std::process::Command;

use cah_testkit::wat::{FaultMix, WatConfig, generate_to_vec};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scraper-d"))
}

#[test]
fn extract_writes_parquet_and_jsonl_with_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        n_pages: 100,
        faults: FaultMix::Fast,
        ..WatConfig::small(8080, 51)
    };
    let (bytes, _, _) = generate_to_vec(&config).expect("generate");
    let wat = dir.path().join("file.warc.wat.gz");
    std::fs::write(&wat, &bytes).expect("write wat");

    let parquet_path = dir.path().join("out.parquet");
    let output = binary()
        .args([
            "extract",
            "--format",
            "parquet",
            "--summary-json",
            "--output",
        ])
        .arg(&parquet_path)
        .arg(&wat)
        .output()
        .expect("run scraper-d");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary_line = stderr.lines().last().expect("summary line");
    let summary: serde_json::Value = serde_json::from_str(summary_line).expect("summary json");
    let n_candidates = summary["candidates"].as_u64().expect("candidates");
    assert!(n_candidates > 50);
    assert!(summary["skipped"]["extension"].as_u64().is_some());
    let file = std::fs::File::open(&parquet_path).expect("parquet file");
    let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet reads");
    let rows = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .num_rows();
    assert_eq!(rows as u64, n_candidates);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let output = binary()
        .args(["extract", "--half", "1"])
        .arg(&wat)
        .output()
        .expect("run scraper-d");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8 jsonl");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert!(!lines.is_empty() && (lines.len() as u64) < n_candidates);
    assert!(lines.iter().all(|line| line["half"] == 1));
    assert_eq!(lines[0]["sample_id"], 1_000_000_000u64);
    assert!(String::from_utf8_lossy(&output.stderr).contains("skipped:"));

    let failed_output = dir.path().join("failed.jsonl");
    let failed = binary()
        .args(["extract", "--output"])
        .arg(&failed_output)
        .arg(dir.path().join("missing.warc.wat.gz"))
        .output()
        .expect("run scraper-d");
    assert_eq!(failed.status.code(), Some(1));
    let mut failed_tmp = failed_output.clone().into_os_string();
    failed_tmp.push(".tmp");
    assert!(std::fs::metadata(&failed_output).is_err() && std::fs::metadata(&failed_tmp).is_err());

    let refused = binary()
        .args(["extract", "--format", "parquet"])
        .arg(&wat)
        .output()
        .expect("run scraper-d");
    assert_eq!(refused.status.code(), Some(64));

    // A language filter the detector cannot satisfy would keep nothing: refused with the fix.
    for (flags, expected) in [
        (&["--languages", "en,deu"][..], "en -> eng"),
        (
            &["--languages", "eng", "--language-detector", "off"][..],
            "detector is off",
        ),
    ] {
        let refused = binary()
            .arg("extract")
            .args(flags)
            .arg(&wat)
            .output()
            .expect("run scraper-d");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "no colour codes into a pipe: {stderr}"
        );
    }

    // Bytes that hold no WARC record: an error, not an empty output that looks like a WAT
    // without images.
    let junk = dir.path().join("junk.gz");
    std::fs::write(&junk, b"this is not a gzip member, let alone a WAT").expect("junk");
    let junk_output = dir.path().join("junk.jsonl");
    let refused = binary()
        .args(["extract", "--output"])
        .arg(&junk_output)
        .arg(&junk)
        .output()
        .expect("run scraper-d");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds no WARC record"), "{stderr}");
    assert!(std::fs::metadata(&junk_output).is_err(), "no output file");

    // An output the disk refuses at the final flush (a file-size limit here, where a full
    // disk gives ENOSPC; SIGXFSZ ignored so that the write fails instead): exit 1, the path in
    // the message, no temporary file left.
    let limited = dir.path().join("limited.jsonl");
    let failed = std::process::Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 16; exec \"$0\" extract --output \"$1\" \"$2\"")
        .arg(binary().get_program())
        .arg(&limited)
        .arg(&wat)
        .output()
        .expect("run scraper-d");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("limited.jsonl"), "{stderr}");
    assert!(
        std::fs::metadata(dir.path().join("limited.jsonl.tmp")).is_err(),
        "{stderr}"
    );
    assert!(std::fs::metadata(&limited).is_err(), "{stderr}");
}

/// Runs `scraper-d extract` with `args` and no environment; its exit code and stderr.
fn extract(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let output = binary()
        .arg("extract")
        .args(args)
        .env_clear()
        .output()
        .expect("run scraper-d");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn unreadable_files_are_named_with_their_flag_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let wat = dir.path().join("file.warc.wat.gz");

    let (code, stderr) = extract(&["--blocklist".as_ref(), missing.as_ref(), wat.as_ref()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--blocklist (SCRAPER_BLOCKLIST) {}: cannot read it",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("leave the flag unset"), "{stderr}");

    let bad_list = dir.path().join("blocklist.txt");
    std::fs::write(&bad_list, "example.com\nnot a url or a hash\n").expect("write");
    let (code, stderr) = extract(&["--blocklist".as_ref(), bad_list.as_ref(), wat.as_ref()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--blocklist (SCRAPER_BLOCKLIST)"),
        "{stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");

    // A folder as the WAT: refused at once, with the path, not as "Is a directory" mid-read.
    let (code, stderr) = extract(&[dir.path().as_ref()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the wat source {} (SOURCE, SCRAPER_WAT) is a folder",
            dir.path().display()
        )),
        "{stderr}"
    );
    let (code, stderr) = extract(&[missing.as_ref()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the wat source {} (SOURCE, SCRAPER_WAT) cannot be opened",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn an_empty_wat_source_is_refused() {
    let output = binary()
        .arg("extract")
        .env_clear()
        .env("SCRAPER_WAT", "")
        .output()
        .expect("run scraper-d");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("the wat source (SOURCE, SCRAPER_WAT) is empty"),
        "{stderr}"
    );
}
