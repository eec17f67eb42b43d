//! The fetcher against servers that break HTTP on purpose (raw TCP on 127.0.0.1): lying or
//! conflicting lengths, garbage instead of HTTP, slow redirect chains, silent nameservers,
//! credentials in URLs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scraper_d::fetch::{FetchConfig, Fetcher};
use scraper_d::resolver::{Resolver, ResolverSettings};
use scraper_d::safety::AddressPolicy;
use scraper_d::stats::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// What the raw server sends for a request path: a pause, then bytes, then it closes.
type Script = fn(&str, SocketAddr) -> (Duration, Vec<u8>);

/// A server on 127.0.0.1:0 answering every request by `script`; the paths it was asked.
async fn raw_server(script: Script) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                log.lock().expect("log").push(head);
                let (pause, reply) = script(&path, addr);
                tokio::time::sleep(pause).await;
                let _ = socket.write_all(&reply).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn fetcher(timeout: Duration, max_body_bytes: u64, nameservers: Vec<SocketAddr>) -> Fetcher {
    fetcher_with_breaker(timeout, max_body_bytes, nameservers, 0)
}

fn fetcher_with_breaker(
    timeout: Duration,
    max_body_bytes: u64,
    nameservers: Vec<SocketAddr>,
    breaker_threshold: u32,
) -> Fetcher {
    let mut config = FetchConfig::standard("scraper-d-test (+https://example.org)".to_owned());
    config.timeout = timeout;
    config.max_body_bytes = max_body_bytes;
    config.politeness.respect_robots = false;
    config.politeness.breaker_threshold = breaker_threshold;
    let policy = AddressPolicy {
        allow_all: false,
        allowed: vec!["127.0.0.1/32".parse().expect("net")],
    };
    let resolver = Resolver::new(
        &ResolverSettings {
            nameservers,
            ..ResolverSettings::standard()
        },
        policy,
    )
    .expect("resolver");
    Fetcher::new(config, resolver).expect("fetcher")
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("url")
}

#[tokio::test]
async fn a_huge_declared_length_is_not_allocated() {
    // The cap allows it, so only the server's claim decides the first allocation.
    let (addr, _) = raw_server(|_, _| {
        (
            Duration::ZERO,
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nonly this".to_vec(),
        )
    })
    .await;
    let fetcher = fetcher(Duration::from_secs(5), 100_000_000_000, Vec::new());
    let outcome = fetcher
        .fetch(&url(&format!("http://{addr}/a.jpg")))
        .await
        .err();
    assert_eq!(outcome, Some(Outcome::BodyError));
}

#[tokio::test]
async fn answers_that_are_not_http_are_bad_responses() {
    let (addr, _) = raw_server(|path, _| {
        let reply: &[u8] = match path {
            "/garbage" => b"\x00\x01\x02 this is no http at all\r\n\r\n",
            "/two-lengths" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789"
            }
            _ => b"HTTP/1.1 abc Nope\r\n\r\n",
        };
        (Duration::ZERO, reply.to_vec())
    })
    .await;
    let fetcher = fetcher(Duration::from_secs(5), 10_000_000, Vec::new());
    for path in ["/garbage", "/two-lengths", "/bad-status"] {
        let outcome = fetcher
            .fetch(&url(&format!("http://{addr}{path}")))
            .await
            .err();
        assert_eq!(outcome, Some(Outcome::BadResponse), "{path}");
    }
}

#[tokio::test]
async fn one_budget_covers_the_whole_redirect_chain() {
    // Each hop answers after 600 ms: four hops fit no 2 s budget, however fast each one is.
    let (addr, seen) = raw_server(|path, _| {
        let hop: u32 = path.trim_start_matches("/hop/").parse().unwrap_or_default();
        let reply = if hop == 0 {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage".to_vec()
        } else {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: /hop/{}\r\nContent-Length: 0\r\n\r\n",
                hop - 1
            )
            .into_bytes()
        };
        (Duration::from_millis(600), reply)
    })
    .await;
    let fetcher = fetcher(Duration::from_secs(2), 10_000_000, Vec::new());
    let started = Instant::now();
    let outcome = fetcher
        .fetch(&url(&format!("http://{addr}/hop/3")))
        .await
        .err();
    assert_eq!(outcome, Some(Outcome::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The fourth request may have gone out; its answer never came in time.
    assert!(seen.lock().expect("log").len() <= 4);
    // A chain that fits the budget is followed, and the fragment of a Location is dropped.
    let fetched = fetcher
        .fetch(&url(&format!("http://{addr}/hop/1#top")))
        .await
        .expect("two hops fit");
    assert_eq!(fetched.final_url.as_str(), format!("http://{addr}/hop/0"));
}

#[tokio::test]
async fn a_location_in_raw_utf8_is_followed_and_other_bytes_are_not() {
    let (addr, _) = raw_server(|path, _| {
        let reply = match path {
            "/utf8" => {
                "HTTP/1.1 301 Moved\r\nLocation: /bild-\u{e4}.jpg\r\nContent-Length: 0\r\n\r\n"
                    .as_bytes()
                    .to_vec()
            }
            "/latin1" => {
                b"HTTP/1.1 301 Moved\r\nLocation: /bild-\xe4.jpg\r\nContent-Length: 0\r\n\r\n"
                    .to_vec()
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage".to_vec(),
        };
        (Duration::ZERO, reply)
    })
    .await;
    let fetcher = fetcher(Duration::from_secs(5), 10_000_000, Vec::new());
    let fetched = fetcher
        .fetch(&url(&format!("http://{addr}/utf8")))
        .await
        .expect("followed");
    assert_eq!(
        fetched.final_url.as_str(),
        format!("http://{addr}/bild-%C3%A4.jpg")
    );
    let latin1 = fetcher
        .fetch(&url(&format!("http://{addr}/latin1")))
        .await
        .err();
    assert_eq!(latin1, Some(Outcome::BadUrl));
}

#[tokio::test]
async fn a_silent_nameserver_costs_one_budget() {
    // A nameserver that reads every query and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let nameserver = silent.local_addr().expect("addr");
    let fetcher = fetcher(Duration::from_secs(1), 10_000_000, vec![nameserver]);
    let started = Instant::now();
    let outcome = fetcher
        .fetch(&url("http://img.silent.test/a.jpg"))
        .await
        .err();
    assert_eq!(outcome, Some(Outcome::ResolverError));
    // The resolver's own limit is 5 s per try, twice.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn credentials_in_a_url_are_never_sent() {
    let (addr, seen) = raw_server(|path, addr| {
        let reply = if path == "/to-credentials" {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://user:secret@{addr}/a.jpg\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage".to_vec()
        };
        (Duration::ZERO, reply)
    })
    .await;
    let fetcher = fetcher(Duration::from_secs(5), 10_000_000, Vec::new());
    let direct = fetcher
        .fetch(&url(&format!("http://user:secret@{addr}/a.jpg")))
        .await
        .err();
    assert_eq!(direct, Some(Outcome::BadUrl));
    let redirected = fetcher
        .fetch(&url(&format!("http://{addr}/to-credentials")))
        .await
        .err();
    assert_eq!(redirected, Some(Outcome::BadUrl));
    let requests = seen.lock().expect("log").clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn a_redirect_target_is_not_blamed_for_a_budget_earlier_hops_spent() {
    // B accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    // A redirects to B after using most of the budget.
    static TARGET: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    TARGET.set(target).expect("set once");
    let (slow, _) = raw_server(|_, _| {
        let target = TARGET.get().expect("target");
        let reply = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{target}/a.jpg\r\nContent-Length: 0\r\n\r\n"
        );
        (Duration::from_millis(1500), reply.into_bytes())
    })
    .await;
    // One failure opens a host's circuit.
    let fetcher = fetcher_with_breaker(Duration::from_secs(2), 10_000_000, Vec::new(), 1);
    let through_slow = fetcher
        .fetch(&url(&format!("http://{slow}/start")))
        .await
        .err();
    assert_eq!(through_slow, Some(Outcome::Timeout));
    // B's own first request is a fair trial, not `circuit_open`.
    let direct = fetcher
        .fetch(&url(&format!("http://{target}/b.jpg")))
        .await
        .err();
    assert_eq!(direct, Some(Outcome::Timeout));
    let again = fetcher
        .fetch(&url(&format!("http://{target}/c.jpg")))
        .await
        .err();
    assert_eq!(again, Some(Outcome::CircuitOpen), "its own timeout counts");
}
