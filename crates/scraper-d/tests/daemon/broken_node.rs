//! A node whose resolver refuses or never answers, or whose network answers every name with
//! one page, cannot download anything: its claim is released, not completed with empty
//! bundles, the tracker's `parsed` set gets none of the pairs, and the daemon waits before
//! claiming again. Once the resolver works, the same jobs store pictures.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cah_protocol::ext::DedupSet;
use tracker_d::testing::job_state;

use super::full_job::{Crawl, small_crawl};
use super::support::{self, TestTracker, TestWeb};

/// A nameserver that answers every query with what `answer` makes of it. Runs until the test
/// ends.
async fn nameserver_answering(answer: fn(&[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let address = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
            if let Some(reply) = answer(&buffer[..length]) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    address
}

/// The header and question of `query` as a reply with `rcode` and no records, and the
/// question's type.
fn bare_reply(query: &[u8], rcode: u8) -> Option<(Vec<u8>, u16)> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let mut reply = query.get(..question_end)?.to_vec();
    // QR and RA; QDCOUNT stays 1; no answer, authority or additional records (the query's
    // EDNS record is dropped).
    reply[2] |= 0x80;
    reply[3] = 0x80 | rcode;
    reply[6..12].fill(0);
    Some((reply, qtype))
}

/// REFUSED to every query, as a resolver answers a client outside its ACL; the question and
/// whatever records the query carried are echoed back.
fn refused(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut reply = query.to_vec();
    reply[2] |= 0x80;
    reply[3] = 0x80 | 5;
    Some(reply)
}

/// NXDOMAIN for every name, as a filtering resolver that blocks everything, or a
/// split-horizon server that does not recurse, answers.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    bare_reply(query, 3).map(|(reply, _)| reply)
}

/// `0.0.0.0` for every name's IPv4 address and no IPv6 address, as a sinkhole answers.
fn sinkhole(query: &[u8]) -> Option<Vec<u8>> {
    reply_with_ipv4(query, [0, 0, 0, 0])
}

/// `127.0.0.1` for every name's IPv4 address: with the port of the links, where
/// [`block_page_server`] listens, a sinkhole to a public block page or a captive portal.
fn to_loopback(query: &[u8]) -> Option<Vec<u8>> {
    reply_with_ipv4(query, [127, 0, 0, 1])
}

/// `address` for the question's name if it asks for IPv4 addresses, no record otherwise.
fn reply_with_ipv4(query: &[u8], address: [u8; 4]) -> Option<Vec<u8>> {
    let (mut reply, qtype) = bare_reply(query, 0)?;
    if qtype == 1 {
        reply[7] = 1;
        // The question's name by pointer, A, IN, a minute, the four bytes of the address.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&address);
    }
    Some(reply)
}

/// The page a captive portal or a filtering network serves for every request.
const BLOCK_PAGE: &str = "<html><head><title>Access restricted</title></head><body>\
    <h1>This site is blocked</h1><p>Sign in to the guest network to continue.</p></body></html>";

/// An HTTP server on loopback that answers every request, robots.txt included, with `status`
/// (`200 OK`, `403 Forbidden`) and [`BLOCK_PAGE`], keeping connections open. Runs until the
/// test ends; returns its port.
async fn block_page_server(status: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("tcp");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{BLOCK_PAGE}",
                    BLOCK_PAGE.len()
                );
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    // Requests have no body: one answer per header block.
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// What one daemon run with a broken resolver left behind.
struct Broken {
    test_web: TestWeb,
    crawl: Crawl,
    tracker: TestTracker,
    summary: scraper_d::daemon::RunSummary,
}

/// Runs a daemon whose resolver is `nameserver` until it has downloaded the WAT and both jobs
/// are open again, then stops it (it waits an hour after a failed claim).
async fn run_with_nameserver(nameserver: SocketAddr) -> Broken {
    run_with(nameserver, None).await
}

/// [`run_with_nameserver`], with the links on `links_port` instead of the test web's.
async fn run_with(nameserver: SocketAddr, links_port: Option<u16>) -> Broken {
    let test_web = support::start_web().await;
    // About 80 candidates a half on more than 20 of the 50 image hosts: above the 20 attempts
    // a verdict needs, and the 20 hosts the lying-resolver rule needs.
    let crawl = small_crawl(links_port.unwrap_or(test_web.web.port()), 60).await;
    let tracker = TestTracker::start(&[]).await;
    tracker.import(std::slice::from_ref(&crawl.wat_url)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = support::run_config(&tracker.base, nameserver, work.path());
    config.idle_wait = Duration::from_secs(3600);
    config.exit_when_idle = false;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(scraper_d::daemon::run(config, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while crawl.server.requests().is_empty() || support::open_cpu_jobs(&tracker).await < 2 {
        assert!(
            !daemon.is_finished(),
            "the daemon stopped: {:?}",
            daemon.await
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the jobs never came back (completed with empty bundles?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    let summary = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops")
        .expect("daemon task")
        .expect("daemon runs");
    Broken {
        test_web,
        crawl,
        tracker,
        summary,
    }
}

/// The claim was released once, nothing uploaded or completed, no pair marked as scraped.
async fn assert_released(broken: &Broken) {
    let summary = &broken.summary;
    assert!(summary.completed.is_empty(), "{summary:?}");
    assert_eq!(summary.released, [1, 2], "released once: {summary:?}");
    assert_eq!(
        broken.crawl.server.requests().len(),
        1,
        "no second claim of the WAT within --idle-wait"
    );
    assert_eq!(
        support::count_files(&broken.tracker.dir.path().join("staging")),
        0,
        "no bundle uploaded"
    );
    for number in [1, 2] {
        let job = job_state(&broken.tracker.database_url, number).await;
        assert_eq!((job.status.as_str(), job.failures), ("open", 0), "{job:?}");
    }
    let db = tracker_d::db::Db::connect(&broken.tracker.database_url, 1)
        .await
        .expect("db");
    let sizes = tracker_d::dedup::sizes(&db).await.expect("set sizes");
    db.close().await;
    let parsed = sizes
        .iter()
        .find(|(set, _)| *set == DedupSet::Parsed)
        .map_or(0, |(_, size)| *size);
    assert_eq!(parsed, 0, "the parsed set got pairs: {sizes:?}");
}

/// Pictures in a bundle.
fn images_in(bundle: &[u8]) -> usize {
    let mut archive = tar::Archive::new(bundle);
    let mut images = 0;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        images += usize::from(name.ends_with(".jpg"));
    }
    images
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_refuses_gets_the_claim_released_and_the_pairs_kept_for_later() {
    let nameserver = nameserver_answering(refused).await;
    let broken = run_with_nameserver(nameserver).await;
    assert_released(&broken).await;

    // The operator fixes the resolver: the same jobs, none of their pairs skipped.
    let work = tempfile::tempdir().expect("tempdir");
    let config = support::run_config(
        &broken.tracker.base,
        broken.test_web.dns.addr(),
        work.path(),
    );
    let summary = support::run_until_idle(config).await;
    assert_eq!(summary.completed, [1, 2], "{summary:?}");
    let stored: usize = support::gpu_bundles(&broken.tracker.base, 2)
        .await
        .iter()
        .map(|(_, bundle)| images_in(bundle))
        .sum();
    assert!(stored > 0, "the second run stored pictures");
    broken.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_never_answers_gets_the_claim_released() {
    // Reads every query and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let broken = run_with_nameserver(silent.local_addr().expect("addr")).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_nameserver_at_all_gets_the_claim_released() {
    // A port nobody listens on: every query is refused by the kernel.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("addr");
    let broken = run_with_nameserver(closed).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_says_nxdomain_for_every_name_gets_the_claim_released() {
    let broken = run_with_nameserver(nameserver_answering(nxdomain).await).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_sinkholes_every_name_gets_the_claim_released() {
    let broken = run_with_nameserver(nameserver_answering(sinkhole).await).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_answers_every_name_with_one_page_gets_the_claim_released() {
    let port = block_page_server("200 OK").await;
    let broken = run_with(nameserver_answering(to_loopback).await, Some(port)).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
}

/// A filtering proxy (or a firewall's block page) that refuses every request with one error
/// page: no body is read for an error status, so the status and the page's length, type and
/// server are what repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_refuses_every_request_with_one_error_page_gets_the_claim_released() {
    let port = block_page_server("403 Forbidden").await;
    let broken = run_with(nameserver_answering(to_loopback).await, Some(port)).await;
    assert_released(&broken).await;
    broken.tracker.stop().await;
}
