//! Bodies over 1 MiB: at most `--max-large-bodies` held at once, from their first large byte
//! until decoded, against the test web's stalled bodies and a server of one large picture.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use scraper_d::Candidate;
use scraper_d::body::LargeBodyGauge;
use scraper_d::job::Pipeline;
use scraper_d::stats::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::support::{self, candidate, outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_large_bodies_are_held_two_at_a_time_and_small_pictures_pass_freely() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.fetch.max_large_bodies = 2;
    config.validate.min_bytes = 1;
    let pipeline = support::pipeline(&config);
    let gauge = pipeline.fetcher.large_bodies();
    let ok_url = |index: usize| {
        let ext = ["jpg", "png", "webp"][index % 3];
        test_web.web.url(
            &format!("img-{index:04}.photos.test"),
            &format!("/ok/{index}.{ext}"),
        )
    };

    // Honest pictures (all under 1 MiB) never take a permit.
    let small: Vec<Candidate> = (0..12)
        .map(|index| candidate(index, ok_url(index)))
        .collect();
    let half = run_half(&pipeline, small, work.path().join("small.tar")).await;
    assert_eq!(half, BTreeMap::from([("ok".to_owned(), 12)]));
    assert_eq!((gauge.held(), gauge.peak()), (0, 0));

    // Eight bodies stalled 1,000 bytes short of 9.5 MB on eight hosts, and twelve honest
    // pictures, all at once: two stalled bodies are held until their budget runs out, the
    // others time out waiting for a permit, the pictures are stored meanwhile.
    let mut candidates = Vec::new();
    for index in 0..8 {
        let route = if index < 6 { "stall" } else { "stall-unsized" };
        let url = test_web.web.url(
            &format!("stalled-{index:04}.photos.test"),
            &format!("/{route}/{index}.jpg"),
        );
        candidates.push(candidate(100 + index, url));
    }
    candidates.extend((20..32).map(|index| candidate(index, ok_url(index))));
    let half = run_half(&pipeline, candidates, work.path().join("mixed.tar")).await;
    assert_eq!(
        half,
        BTreeMap::from([("ok".to_owned(), 12), ("timeout".to_owned(), 8)])
    );
    assert_eq!(
        gauge.peak(),
        2,
        "at most --max-large-bodies held at once, and the limit was reached"
    );
    assert_eq!(gauge.held(), 0, "every permit came back");
}

/// Runs one job half of `candidates` into `path`; its outcome counts.
async fn run_half(
    pipeline: &Pipeline,
    candidates: Vec<Candidate>,
    path: std::path::PathBuf,
) -> BTreeMap<String, u64> {
    let done = Arc::new(AtomicU64::new(0));
    let half = tokio::time::timeout(
        Duration::from_secs(30),
        pipeline.run_half(1, candidates, &path, done),
    )
    .await
    .expect("the half ends within its budgets")
    .expect("bundle written");
    half.stats.outcomes
}

/// A server on 127.0.0.1:0 answering every request with `body` as a PNG; its port.
async fn picture_server(body: Arc<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let header = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(header.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// A valid PNG of noise, 2 MB or so: a large body that decodes.
fn large_png() -> Vec<u8> {
    let mut state = 0x1234_5678_u32;
    let picture = image::RgbImage::from_fn(900, 800, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("png");
    bytes.into_inner()
}

async fn wait_for(gauge: &LargeBodyGauge, held: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while gauge.held() != held {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} large bodies held, not {held}", gauge.held()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_keeps_its_permit_while_it_waits_for_a_decode_thread() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.fetch.max_large_bodies = 1;
    config.fetch.politeness.respect_robots = false;
    config.decode_threads = 1;
    let pipeline = Arc::new(support::pipeline(&config));
    let gauge = pipeline.fetcher.large_bodies();
    let png = Arc::new(large_png());
    assert!(png.len() > 1024 * 1024, "{}", png.len());
    let port = picture_server(png).await;
    let url = |index: usize| format!("http://big-{index:04}.photos.test:{port}/big.png");

    // The only decode thread is busy: the first large body is downloaded, then waits for it
    // holding its bytes and the only large-body permit.
    let decoding = pipeline.cpu.clone().acquire_owned().await.expect("cpu");
    let first = tokio::spawn({
        let pipeline = pipeline.clone();
        let candidate = candidate(1, url(1));
        async move { outcome(&pipeline, candidate).await }
    });
    wait_for(&gauge, 1).await;
    // Another large body waits for the permit within its time budget, and runs out of it.
    // (Were the permit let go when the download ended, this one would be downloaded too and
    // wait for the decode thread without end: the test bounds that wait.)
    let started = tokio::time::Instant::now();
    let second = tokio::time::timeout(
        support::TIMEOUT * 3,
        outcome(&pipeline, candidate(2, url(2))),
    );
    assert_eq!(second.await, Ok(Outcome::Timeout));
    assert!(
        started.elapsed() >= support::TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        gauge.held(),
        1,
        "still held while waiting for a decode thread"
    );
    assert!(!first.is_finished());

    drop(decoding);
    assert_eq!(first.await.expect("task"), Outcome::Ok);
    assert_eq!((gauge.held(), gauge.peak()), (0, 1));
    // The permit came back: the next large body is stored.
    assert_eq!(outcome(&pipeline, candidate(3, url(3))).await, Outcome::Ok);
    assert_eq!((gauge.held(), gauge.peak()), (0, 1));
}

#[test]
fn zero_large_bodies_is_refused_with_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, "http://img-0001.photos.test/ok/a.jpg\n").expect("list");
    let fetch = |flag: Option<&str>, variable: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scraper-d"));
        command
            .arg("fetch")
            .arg("--urls")
            .arg(&list)
            .arg("--output")
            .arg(dir.path().join("out.tar"))
            .env_clear();
        if let Some(value) = flag {
            command.args(["--max-large-bodies", value]);
        }
        if let Some(value) = variable {
            command.env("SCRAPER_MAX_LARGE_BODIES", value);
        }
        command.output().expect("runs")
    };
    for output in [fetch(Some("0"), None), fetch(None, Some("0"))] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        assert!(
            stderr.contains("--max-large-bodies (SCRAPER_MAX_LARGE_BODIES) must be at least 1"),
            "{stderr}"
        );
    }
    let output = fetch(Some("-1"), None);
    assert_eq!(output.status.code(), Some(64));
    let help = Command::new(env!("CARGO_BIN_EXE_scraper-d"))
        .args(["run", "--help"])
        .env_clear()
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let documented = help
        .split("--max-large-bodies <MAX_LARGE_BODIES>")
        .nth(1)
        .and_then(|rest| rest.split("\n      --").next())
        .expect("the flag is in --help");
    assert!(
        documented.contains("[env: SCRAPER_MAX_LARGE_BODIES=]")
            && documented.contains("[default: 16]"),
        "{documented}"
    );
}
