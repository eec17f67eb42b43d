//! The resolver against a hostile nameserver on loopback: long answers kept short, failures
//! cached whatever the SOA, one query for concurrent lookups of a name, names DNS cannot ask
//! for, and one lookup per image at TTL 0.

use std::net::SocketAddr;
use std::time::Duration;

use scraper_d::fetch::{FetchConfig, Fetcher};
use scraper_d::resolver::{ResolveError, Resolver, ResolverSettings};
use scraper_d::safety::AddressPolicy;
use scraper_d::stats::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use super::dns_stub;

fn settings(nameserver: SocketAddr) -> ResolverSettings {
    ResolverSettings {
        nameservers: vec![nameserver],
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..ResolverSettings::standard()
    }
}

fn open_policy() -> AddressPolicy {
    AddressPolicy {
        allow_all: true,
        allowed: Vec::new(),
    }
}

#[tokio::test]
async fn a_name_with_thousands_of_records_keeps_a_few() {
    let (nameserver, queries) = dns_stub::start().await;
    let resolver = Resolver::new(&settings(nameserver), open_policy()).expect("resolver");
    let addresses = resolver.resolve("many2000-a.test").await.expect("resolves");
    assert!(queries.of("many2000-a.test") >= 1, "the stub was asked");
    assert_eq!(addresses.len(), 8, "{} addresses kept", addresses.len());
    assert_eq!(addresses[0], std::net::IpAddr::from([11, 0, 0, 0]));
    // From the cache: the same few, no query.
    let asked = queries.of("many2000-a.test");
    assert_eq!(
        resolver
            .resolve("many2000-a.test")
            .await
            .expect("cached")
            .len(),
        8
    );
    assert_eq!(queries.of("many2000-a.test"), asked);
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_size_in_names() {
    let (nameserver, queries) = dns_stub::start().await;
    let resolver = Resolver::new(
        &ResolverSettings {
            cache_size: 5,
            ..settings(nameserver)
        },
        open_policy(),
    )
    .expect("resolver");
    for index in 0..40 {
        resolver
            .resolve(&format!("many30-{index}.test"))
            .await
            .expect("resolves");
        assert!(resolver.cached_names() <= 5, "{}", resolver.cached_names());
    }
    // The oldest went first: the first name is asked again, the last is not.
    let (first, last) = (queries.of("many30-0.test"), queries.of("many30-39.test"));
    resolver.resolve("many30-39.test").await.expect("cached");
    resolver
        .resolve("many30-0.test")
        .await
        .expect("asked again");
    assert_eq!(queries.of("many30-39.test"), last);
    assert!(queries.of("many30-0.test") > first);
}

/// Queries one lookup of a name of `prefix` costs, then that 20 concurrent and 10 later
/// lookups of another such name cost no more, each failing as `expected` says.
async fn failures_cost_one_lookup(prefix: &str, expected: fn(&ResolveError) -> bool) {
    let (nameserver, queries) = dns_stub::start().await;
    let resolver = Resolver::new(&settings(nameserver), open_policy()).expect("resolver");
    let probe = format!("{prefix}-probe.test");
    let error = resolver.resolve(&probe).await.expect_err("fails");
    assert!(expected(&error), "{error:?}");
    let one_lookup = queries.of(&probe);
    assert!(one_lookup >= 1);
    let name = format!("{prefix}-many.test");
    let lookups = (0..20).map(|_| resolver.resolve(&name));
    for result in futures_util::future::join_all(lookups).await {
        let error = result.expect_err("fails");
        assert!(expected(&error), "{error:?}");
    }
    assert_eq!(
        queries.of(&name),
        one_lookup,
        "{prefix}: 20 concurrent lookups"
    );
    for _ in 0..10 {
        let error = resolver.resolve(&name).await.expect_err("fails");
        assert!(expected(&error), "{error:?}");
    }
    assert_eq!(queries.of(&name), one_lookup, "{prefix}: 10 later lookups");
}

fn unanswered(error: &ResolveError) -> bool {
    matches!(error, ResolveError::Unanswered { .. })
}

#[tokio::test]
async fn a_silent_nameserver_is_asked_once_per_name() {
    failures_cost_one_lookup("silent", unanswered).await;
}

#[tokio::test]
async fn servfail_and_refused_are_asked_once_per_name() {
    failures_cost_one_lookup("servfail", unanswered).await;
    failures_cost_one_lookup("refused", unanswered).await;
}

#[tokio::test]
async fn nxdomain_without_an_soa_is_cached() {
    failures_cost_one_lookup("nx", |error| matches!(error, ResolveError::NotFound { .. })).await;
}

#[tokio::test]
async fn names_dns_cannot_ask_for_are_bad_names_without_a_query() {
    let (nameserver, queries) = dns_stub::start().await;
    let resolver = Resolver::new(&settings(nameserver), open_policy()).expect("resolver");
    let long = format!("{}.test", vec!["a".repeat(62); 4].join("."));
    assert!(long.len() >= 254);
    for name in ["my_site.example.com", "a1_.example.com", long.as_str()] {
        let error = resolver.resolve(name).await.expect_err(name);
        assert!(
            matches!(error, ResolveError::BadName { .. }),
            "{name}: {error:?}"
        );
        assert_eq!(queries.of(&name.to_ascii_lowercase()), 0, "{name}");
    }
}

/// An HTTP server on 127.0.0.1:0: robots.txt 404, anything else 200 with a few bytes.
async fn web_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let reply: &[u8] = if head.starts_with(b"GET /robots.txt") {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nimage"
                };
                let _ = socket.write_all(reply).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

fn fetcher(nameserver: SocketAddr, robots: bool, breaker_threshold: u32) -> Fetcher {
    let mut config = FetchConfig::standard("scraper-d-test (+https://example.org)".to_owned());
    config.timeout = Duration::from_secs(2);
    config.politeness.respect_robots = robots;
    config.politeness.breaker_threshold = breaker_threshold;
    let policy = AddressPolicy {
        allow_all: false,
        allowed: vec!["127.0.0.1/32".parse().expect("net")],
    };
    let resolver = Resolver::new(&settings(nameserver), policy).expect("resolver");
    Fetcher::new(config, resolver).expect("fetcher")
}

#[tokio::test]
async fn an_image_at_ttl_0_is_looked_up_once() {
    let (nameserver, queries) = dns_stub::start().await;
    let web = web_server().await;
    let fetcher = fetcher(nameserver, true, 8);
    let url = Url::parse(&format!("http://ttl0-img.test:{}/a.jpg", web.port())).expect("url");
    let fetched = fetcher.fetch(&url).await.expect("fetched");
    assert_eq!(fetched.bytes, b"image");
    // The image's lookup, robots.txt's and the HTTP client's: one query.
    assert_eq!(queries.of("ttl0-img.test"), 1);
}

#[tokio::test]
async fn a_host_whose_name_does_not_resolve_opens_its_breaker() {
    let (nameserver, queries) = dns_stub::start().await;
    let fetcher = fetcher(nameserver, false, 8);
    let urls: Vec<Url> = (0..60)
        .map(|index| Url::parse(&format!("http://servfail-host.test/{index}.jpg")).expect("url"))
        .collect();
    let outcomes = futures_util::future::join_all(urls.iter().map(|url| fetcher.fetch(url))).await;
    let count = |wanted: Outcome| {
        outcomes
            .iter()
            .filter(|outcome| outcome.as_ref().err() == Some(&wanted))
            .count()
    };
    assert_eq!(count(Outcome::ResolverError), 8, "{outcomes:?}");
    assert_eq!(count(Outcome::CircuitOpen), 52, "{outcomes:?}");
    assert!(
        queries.of("servfail-host.test") <= 2,
        "{}",
        queries.of("servfail-host.test")
    );
}
