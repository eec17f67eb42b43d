//! The `cah-testkit serve` binary: flags, and a real run that prints working addresses.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cah_testkit::cli::{Args, Command as CliCommand};
use clap::Parser;

#[test]
fn flags_validate_into_a_world_config() {
    let args = Args::try_parse_from([
        "cah-testkit",
        "serve",
        "--wat-files",
        "3",
        "--faults",
        "full",
        "--hetzner-tokens",
        "a,b",
        "--server-limit",
        "7",
    ])
    .expect("parse");
    let CliCommand::Serve(serve) = args.command else {
        panic!("serve subcommand")
    };
    let config = serve.to_config().expect("valid");
    assert_eq!(config.n_wat_files, 3);
    assert_eq!(config.hetzner.projects.len(), 2);
    assert_eq!(config.hetzner.projects[1].server_limit, 7);
    assert_eq!(config.faults, cah_testkit::wat::FaultMix::Full);

    let args = Args::try_parse_from(["cah-testkit", "serve", "--faults", "some"]).expect("parse");
    let CliCommand::Serve(serve) = args.command else {
        panic!("serve subcommand")
    };
    assert!(
        serve
            .to_config()
            .expect_err("unknown mix")
            .to_string()
            .contains("unknown fault mix")
    );
    assert!(Args::try_parse_from(["cah-testkit", "serve", "--wat-files", "many"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_reachable_addresses_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cah-testkit"))
        .args([
            "serve",
            "--wat-files",
            "1",
            "--pages-per-wat",
            "10",
            "--action-delay-ms",
            "10",
            "--crawl-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = std::collections::HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            let (key, value) = line.split_once('=').expect("key=value");
            lines.insert(key.to_owned(), value.to_owned());
            if key == "photos" {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("serve starts")
        .expect("reader");

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let listing = client
        .get(&lines["wat_paths"])
        .send()
        .await
        .expect("listing");
    assert_eq!(listing.status(), 200);
    let servers = client
        .get(format!("{}/servers", lines["hetzner"]))
        .bearer_auth("testkit-token")
        .send()
        .await
        .expect("hetzner");
    assert_eq!(servers.status(), 200);
    let web = lines["web"].clone();
    let picture = client
        .get(format!("http://{web}/ok/a.jpg"))
        .header("host", "img-0001.photos.test")
        .send()
        .await
        .expect("web");
    assert_eq!(picture.headers()["content-type"], "image/jpeg");
    let dns: std::net::SocketAddr = lines["dns"].parse().expect("dns address");
    let resolver = cah_testkit::dns::resolver_for(dns, Duration::from_secs(2));
    let answer = resolver
        .ipv4_lookup("img-0001.photos.test.")
        .await
        .expect("lookup");
    assert_eq!(
        answer.iter().next().map(|a| a.0),
        Some(std::net::Ipv4Addr::LOCALHOST)
    );
    assert!(lines["expected_candidates"].parse::<u64>().expect("count") > 0);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "serve exits cleanly on SIGTERM: {exit:?}");
}

#[test]
fn wat_subcommand_writes_a_cached_file_of_the_requested_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        let output = Command::new(env!("CARGO_BIN_EXE_cah-testkit"))
            .args(["wat", "--target-mb", "1", "--compression", "1", "--out-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("utf8");
        stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let first = run();
    let bytes: u64 = first["bytes"].parse().expect("bytes");
    assert!((1_000_000..1_200_000).contains(&bytes), "{bytes}");
    assert_eq!(
        std::fs::metadata(&first["path"]).expect("file").len(),
        bytes
    );
    assert!(
        dir.path()
            .join("crawl-data/CC-MAIN-2024-51/wat.paths.gz")
            .is_file()
    );
    let second = run();
    assert_eq!(
        (second["path"].clone(), second["candidates"].clone()),
        (first["path"].clone(), first["candidates"].clone())
    );
}
