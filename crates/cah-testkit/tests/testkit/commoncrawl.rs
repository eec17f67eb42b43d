//! The Common Crawl look-alike over HTTP: listings, Range requests, injected failures.

use std::io::Read;

use cah_testkit::commoncrawl::{CommonCrawlServer, cached_wat_file, wat_paths_gz, write_crawl};
use cah_testkit::wat::{HeaderStyle, WatConfig};

fn configs(n_files: u32) -> Vec<WatConfig> {
    (0..n_files)
        .map(|file_index| WatConfig {
            file_index,
            seed: u64::from(file_index),
            ..WatConfig::small(8080, 0)
        })
        .collect()
}

#[tokio::test]
async fn serves_the_listing_and_byte_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crawl = write_crawl(dir.path(), &configs(3)).expect("crawl");
    let server = CommonCrawlServer::start_local(dir.path())
        .await
        .expect("server");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = server.base_url();

    let listing = client
        .get(format!("{base}{}", crawl.listing_path()))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(listing.as_ref())
        .read_to_string(&mut text)
        .expect("gzip listing");
    let paths: Vec<&str> = text.lines().collect();
    let expected: Vec<&str> = crawl
        .files
        .iter()
        .map(|file| file.summary.relative_path.as_str())
        .collect();
    assert_eq!(paths, expected);
    assert!(
        paths[0].starts_with("crawl-data/CC-MAIN-2024-51/segments/")
            && paths[0].ends_with("-00000.warc.wat.gz")
    );

    let path = paths[1];
    let whole = std::fs::read(dir.path().join(path)).expect("file");
    let full = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("get");
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.content_length(), Some(whole.len() as u64));
    assert_eq!(full.bytes().await.expect("body").as_ref(), whole.as_slice());

    let len = whole.len();
    for (range, start, end) in [
        ("bytes=10-99".to_owned(), 10, 100),
        (format!("bytes={}-", len - 50), len - 50, len),
        ("bytes=-25".to_owned(), len - 25, len),
        (format!("bytes=0-{}", len * 2), 0, len),
    ] {
        let response = client
            .get(format!("{base}{path}"))
            .header("range", &range)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().expect("ascii"),
            format!("bytes {start}-{}/{len}", end - 1)
        );
        assert_eq!(response.content_length(), Some((end - start) as u64));
        assert_eq!(
            response.bytes().await.expect("body").as_ref(),
            &whole[start..end],
            "{range}"
        );
    }
    let unsatisfiable = client
        .get(format!("{base}{path}"))
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .expect("get");
    assert_eq!(unsatisfiable.status(), 416);
    assert_eq!(
        unsatisfiable.headers()["content-range"]
            .to_str()
            .expect("ascii"),
        format!("bytes */{len}")
    );
    let head = client
        .head(format!("{base}{path}"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().expect("ascii"),
        len.to_string()
    );

    assert_eq!(
        client
            .get(format!("{base}crawl-data/missing.gz"))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    // A raw request, since URL parsers normalise `..` away before sending.
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET /crawl-data/../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut raw = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut raw)
        .await
        .expect("read");
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert_eq!(
        client
            .post(format!("{base}{path}"))
            .send()
            .await
            .expect("post")
            .status(),
        405
    );

    server.inject_failures(2, 503);
    for _ in 0..2 {
        assert_eq!(
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("get")
                .status(),
            503
        );
    }
    assert_eq!(
        client
            .get(format!("{base}{path}"))
            .header("range", "bytes=0-0")
            .send()
            .await
            .expect("get")
            .status(),
        206
    );

    let log = server.requests();
    assert_eq!(log.len(), 14);
    assert_eq!(log[2].range.as_deref(), Some("bytes=10-99"));
    assert_eq!(
        log.iter().filter(|request| request.status == 503).count(),
        2
    );
}

#[test]
fn listing_is_gzip_of_lines() {
    let bytes = wat_paths_gz(&["a/b.warc.wat.gz", "c/d.warc.wat.gz"]);
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(text, "a/b.warc.wat.gz\nc/d.warc.wat.gz\n");
}

#[test]
fn cached_files_are_generated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WatConfig {
        crawl: "CC-MAIN-2024-46".into(),
        header_style: HeaderStyle::Legacy,
        ..WatConfig::small(8080, 1)
    };
    let (path, summary) = cached_wat_file(dir.path(), &config).expect("first");
    let modified = std::fs::metadata(&path)
        .expect("metadata")
        .modified()
        .expect("mtime");
    let (again, cached_summary) = cached_wat_file(dir.path(), &config).expect("second");
    assert_eq!(
        (again.clone(), cached_summary),
        (path.clone(), summary.clone())
    );
    assert_eq!(
        std::fs::metadata(&again)
            .expect("metadata")
            .modified()
            .expect("mtime"),
        modified
    );
    assert_eq!(
        std::fs::metadata(&path).expect("metadata").len(),
        summary.n_bytes
    );
    assert!(
        path.to_string_lossy()
            .contains("crawl-data/CC-MAIN-2024-46/segments/")
    );
}
