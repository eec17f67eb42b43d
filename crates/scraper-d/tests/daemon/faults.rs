//! Every fault class of the test web gives exactly the outcome cah-testkit predicts, per URL
//! and in a bundle's counts.

use std::collections::BTreeMap;

use cah_protocol::bundle::BundleStats;
use cah_testkit::web::{Expected, classify};
use clap::Parser;
use futures_util::future::join_all;
use scraper_d::Candidate;
use scraper_d::resolver::ResolveError;
use scraper_d::stats::Outcome;

use super::support::{self, candidate, outcome, outcome_for};

const PATHS: &[&str] = &[
    "/ok/a.jpg",
    "/ok/b.png",
    "/ok/c.webp",
    "/ok/d.gif",
    "/pixel/e.gif",
    "/status/404/f.jpg",
    "/status/403/g.jpg",
    "/status/500/h.jpg",
    "/status/503/i.jpg",
    "/status/200/j.jpg",
    "/ratelimit/1/k.jpg",
    "/redirect/2/ok/l.jpg",
    "/redirect/5/ok/m.png",
    "/redirect/6/ok/n.jpg",
    "/redirect-host/img-0999.cdn.test/ok/o.jpg",
    "/redirect-host/dead-img.cdn.test/ok/o.jpg",
    "/loop/p.jpg",
    "/private-redirect/10/q.jpg",
    "/private-redirect/172/q.jpg",
    "/private-redirect/192/q.jpg",
    "/private-redirect/metadata/q.jpg",
    "/private-redirect/hetzner-metadata/q.jpg",
    "/private-redirect/localhost/q.jpg",
    "/private-redirect/zero/q.jpg",
    "/private-redirect/ipv6/q.jpg",
    "/long-redirect/q.jpg",
    "/slow/200/ok/r.jpg",
    "/slow/3000/ok/s.jpg",
    "/drip/t.jpg",
    "/endless/u.jpg",
    "/huge-length/v.jpg",
    "/stall/v.jpg",
    "/stall-unsized/v.png",
    "/reset/w.jpg",
    "/wrongtype/x.png",
    "/notimage/y.jpg",
    "/empty/z.jpg",
    "/truncated/a.png",
    "/corrupt/b.png",
    "/corrupt/b.webp",
    "/bomb/c.png",
    "/bomb/d.jpg",
    "/bomb/e.webp",
    "/zipbomb/f.png",
    "/scanbomb/g.jpg",
    "/xrobots/noai/g.jpg",
    "/xrobots/noimageai/g.jpg",
    "/xrobots/noindex/g.jpg",
    "/xrobots/noimageindex/g.jpg",
    "/xrobots/none/g.jpg",
    "/tdm/1/g.jpg",
    "/tdm/0/g.png",
    "/private/h.jpg",
    "/nothing-here/i.jpg",
];

const FLAGGED_HOSTS: &[&str] = &[
    "dead-img.photos.test",
    "servfail-img.photos.test",
    "refused-img.photos.test",
    "drop-img.photos.test",
    "nodata-img.photos.test",
    "private-img.photos.test",
    "metadata-img.photos.test",
    "slow-img.photos.test",
    "nobots-img.photos.test",
    "robotserror-img.photos.test",
    "endlessbots-img.photos.test",
    "noai-img.photos.test",
    "noimageindex-img.photos.test",
    "img.unknown-zone.example",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_class_gets_the_predicted_outcome() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.validate.min_bytes = 1;
    let pipeline = support::pipeline(&config);

    let mut urls = Vec::new();
    for (index, path) in PATHS.iter().enumerate() {
        urls.push(
            test_web
                .web
                .url(&format!("img-{index:04}.photos.test"), path),
        );
    }
    for host in FLAGGED_HOSTS {
        urls.push(test_web.web.url(host, "/ok/a.jpg"));
    }
    urls.push(
        test_web
            .web
            .url("norobots-img.photos.test", "/private/a.jpg"),
    );

    let expected: Vec<Outcome> = urls
        .iter()
        .map(|url| match classify(url) {
            // A corrupt WebP keeps only 8 bytes of magic (`RIFF` and a size), not `WEBP`
            // at bytes 8..12, so sniffing from the bytes cannot tell it is WebP at all.
            Expected::Corrupt if url.ends_with(".webp") => Outcome::BadFormat,
            expected => outcome_for(&expected),
        })
        .collect();
    let candidates: Vec<Candidate> = urls
        .iter()
        .enumerate()
        .map(|(index, url)| candidate(index, url.clone()))
        .collect();
    let got: Vec<Outcome> = join_all(
        candidates
            .clone()
            .into_iter()
            .map(|candidate| outcome(&pipeline, candidate)),
    )
    .await;
    let mismatches: Vec<String> = urls
        .iter()
        .zip(expected.iter().zip(&got))
        .filter(|(_, (want, got))| want != got)
        .map(|(url, (want, got))| format!("{url}: want {want:?}, got {got:?}"))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The same list as one job half: the bundle's stats count exactly these outcomes.
    let mut want_counts: BTreeMap<String, u64> = BTreeMap::new();
    for outcome in &expected {
        *want_counts.entry(outcome.as_str().to_owned()).or_default() += 1;
    }
    let path = work.path().join("job-1.tar");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let half = pipeline
        .run_half(1, candidates, &path, done.clone())
        .await
        .expect("bundle written");
    assert_eq!(half.stats.outcomes, want_counts);
    assert_eq!(half.stats.candidates, urls.len() as u64);
    assert_eq!(
        done.load(std::sync::atomic::Ordering::Relaxed),
        urls.len() as u64
    );
    let stats: BundleStats = read_stats(&path);
    assert_eq!(stats.outcomes, want_counts);
    assert_eq!(stats.stored, want_counts["ok"]);
    assert!(!work.path().join("job-1.tar.tmp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tdm_reservation_opts_out_unless_the_node_ignores_it() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let reserved = test_web.web.url("img-tdm.photos.test", "/tdm/1/a.jpg");
    let unreserved = test_web.web.url("img-tdm.photos.test", "/tdm/0/b.jpg");
    for (respect, want) in [(true, Outcome::OptOut), (false, Outcome::Ok)] {
        let mut config =
            support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
        config.fetch.politeness.respect_tdm_reservation = respect;
        let pipeline = support::pipeline(&config);
        let got = outcome(&pipeline, candidate(0, reserved.clone())).await;
        assert_eq!(got, want, "respect_tdm_reservation {respect}");
        let got = outcome(&pipeline, candidate(1, unreserved.clone())).await;
        assert_eq!(got, Outcome::Ok, "tdm-reservation: 0 reserves nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_only_answers_429_is_cut_off_by_its_breaker() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.fetch.politeness.breaker_threshold = 3;
    config.fetch.politeness.per_host = 1;
    let pipeline = support::pipeline(&config);
    let got: Vec<Outcome> = join_all((0..20).map(|index| {
        let url = test_web
            .web
            .url("busy-cdn.photos.test", &format!("/ratelimit/1/{index}.jpg"));
        outcome(&pipeline, candidate(index, url))
    }))
    .await;
    let limited = got.iter().filter(|o| **o == Outcome::RateLimited).count();
    let cut_off = got.iter().filter(|o| **o == Outcome::CircuitOpen).count();
    // One request may already wait for the slot when the third 429 opens the breaker.
    assert!((3..=4).contains(&limited), "{got:?}");
    assert_eq!(limited + cut_off, 20, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_into_the_blocklist_is_not_followed() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let list = work.path().join("blocklist.txt");
    std::fs::write(&list, "# a Re-LAION-style list\nblocked-cdn.photos.test\n").expect("list");
    let argv = [
        "scraper-d",
        "run",
        "--tracker",
        "http://127.0.0.1:9/",
        "--nickname",
        "n",
        "--blocklist",
        &list.display().to_string(),
        "--languages",
        "eng,deu",
    ];
    let args = scraper_d::cli::Args::try_parse_from(argv).expect("flags parse");
    let scraper_d::cli::Command::Run(run) = args.command else {
        panic!("run was given");
    };
    let parsed = scraper_d::config::RunConfig::try_from(*run).expect("valid config");
    // `run` takes the filter flags of `extract`, and hands the blocklist to the fetcher too.
    assert_eq!(
        parsed.filters.blocklist.as_ref().map(|list| list.len()),
        Some(1)
    );
    assert_eq!(
        parsed.filters.languages.as_ref().map(|codes| codes.len()),
        Some(2)
    );
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.fetch.blocklist = parsed.fetch.blocklist.clone();
    config.validate.min_bytes = 1;
    let pipeline = support::pipeline(&config);
    let fetch = |index: usize, target: &str| {
        let url = test_web.web.url(
            &format!("img-{index:04}.photos.test"),
            &format!("/redirect-host/{target}/ok/a.jpg"),
        );
        outcome(&pipeline, candidate(index, url))
    };
    assert_eq!(
        fetch(1, "blocked-cdn.photos.test").await,
        Outcome::Blocklisted
    );
    assert_eq!(
        fetch(2, "img.blocked-cdn.photos.test").await,
        Outcome::Blocklisted
    );
    assert_eq!(fetch(3, "open-cdn.photos.test").await, Outcome::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_refuses_connections_is_a_connect_failure_not_robots() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    config.fetch.politeness.breaker_threshold = 3;
    let pipeline = support::pipeline(&config);
    // A port nobody listens on (bound, then closed): the name resolves, the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let got: Vec<Outcome> = join_all((0..6).map(|index| {
        let url = format!("http://gone.photos.test:{port}/ok/{index}.jpg");
        outcome(&pipeline, candidate(index, url))
    }))
    .await;
    // Its robots.txt could not be asked for: the images are connection failures (they were all
    // `robots` before), and the breaker sees them.
    let refused = got
        .iter()
        .filter(|o| **o == Outcome::ConnectFailure)
        .count();
    let cut_off = got.iter().filter(|o| **o == Outcome::CircuitOpen).count();
    assert!(refused >= 3, "{got:?}");
    assert_eq!(refused + cut_off, 6, "{got:?}");
}

fn read_stats(path: &std::path::Path) -> BundleStats {
    let mut archive = tar::Archive::new(std::fs::File::open(path).expect("bundle"));
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == "stats.json" {
            return serde_json::from_reader(entry).expect("stats json");
        }
    }
    panic!("no stats.json in the bundle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_caches_answers_and_failures_and_refuses_private_ones() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
    let resolver = scraper_d::resolver::Resolver::new(&config.resolver, config.policy.clone())
        .expect("resolver");
    for _ in 0..3 {
        let addresses = resolver.resolve("img-0001.photos.test").await.expect("ok");
        assert_eq!(addresses, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
        let error = resolver
            .resolve("dead-img.photos.test")
            .await
            .expect_err("nx");
        assert!(matches!(error, ResolveError::NotFound { .. }), "{error}");
        let error = resolver
            .resolve("metadata-img.photos.test")
            .await
            .expect_err("refused");
        assert!(matches!(error, ResolveError::Refused { .. }), "{error}");
    }
    // No such name, or no address: the host's fault. No answer: the resolver's.
    let error = resolver
        .resolve("nodata-img.photos.test")
        .await
        .expect_err("nodata");
    assert!(matches!(error, ResolveError::NotFound { .. }), "{error}");
    for name in ["servfail-img.photos.test", "refused-img.photos.test"] {
        let error = resolver.resolve(name).await.expect_err(name);
        assert!(matches!(error, ResolveError::Unanswered { .. }), "{error}");
    }
    let stats = test_web.dns.stats();
    // A and AAAA at most once each: later lookups come from the cache (negative ones too).
    for name in [
        "img-0001.photos.test",
        "dead-img.photos.test",
        "metadata-img.photos.test",
    ] {
        assert!(
            stats.queries_for(name) <= 2,
            "{name}: {}",
            stats.queries_for(name)
        );
    }
    let error = resolver.resolve("localhost").await.expect_err("localhost");
    assert!(matches!(error, ResolveError::Refused { .. }));
    let error = resolver
        .resolve("169.254.169.254")
        .await
        .expect_err("metadata literal");
    assert!(matches!(error, ResolveError::Refused { .. }));
}
