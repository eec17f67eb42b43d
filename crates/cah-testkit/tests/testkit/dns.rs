//! Real DNS queries against the authoritative test server, through hickory-resolver and reqwest.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cah_testkit::dns::{DnsConfig, DnsServer, expected_addresses};
use cah_testkit::names::{self, DnsBehaviour};
use futures_util::StreamExt;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_resolver::ResolveErrorKind;
use hickory_resolver::proto::ProtoErrorKind;

/// What a lookup ended with, in the terms of the naming scheme.
fn observed(
    result: Result<Vec<IpAddr>, hickory_resolver::ResolveError>,
) -> (DnsBehaviour, Vec<IpAddr>) {
    match result {
        Ok(ips) if ips.is_empty() => (DnsBehaviour::NoData, ips),
        Ok(ips) if ips == [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))] => (DnsBehaviour::Private, ips),
        Ok(ips) if ips == [IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))] => {
            (DnsBehaviour::Metadata, ips)
        }
        Ok(ips) => (DnsBehaviour::Loopback, ips),
        Err(error) => {
            let behaviour = match error.kind() {
                ResolveErrorKind::Proto(proto) => match proto.kind() {
                    ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
                        ResponseCode::NXDomain => DnsBehaviour::NxDomain,
                        ResponseCode::NoError => DnsBehaviour::NoData,
                        ResponseCode::Refused => DnsBehaviour::Refused,
                        ResponseCode::ServFail => DnsBehaviour::ServFail,
                        other => panic!("unexpected response code {other:?}"),
                    },
                    ProtoErrorKind::Timeout => DnsBehaviour::Drop,
                    other => panic!("unexpected proto error {other:?}"),
                },
                other => panic!("unexpected resolve error {other:?}"),
            };
            (behaviour, Vec::new())
        }
    }
}

async fn lookup(
    resolver: &hickory_resolver::TokioResolver,
    name: &str,
) -> (DnsBehaviour, Vec<IpAddr>) {
    let result = resolver
        .ipv4_lookup(name)
        .await
        .map(|lookup| lookup.iter().map(|a| IpAddr::V4(a.0)).collect());
    observed(result)
}

#[tokio::test]
async fn every_prefix_gets_its_documented_answer() {
    let server = DnsServer::start_local(DnsConfig {
        slow_delay: Duration::from_millis(200),
        ttl: 60,
    })
    .await
    .expect("dns");
    let resolver = server.resolver(Duration::from_millis(700));
    let cases = [
        ("img-0042.photos.test.", DnsBehaviour::Loopback),
        ("photos.test.", DnsBehaviour::Loopback),
        ("dead-img-0001.cdn.test.", DnsBehaviour::NxDomain),
        ("servfail-img-0001.img.test.", DnsBehaviour::ServFail),
        ("refused-x.blog.test.", DnsBehaviour::Refused),
        ("www.example.com.", DnsBehaviour::Refused),
        ("nodata-x.news.test.", DnsBehaviour::NoData),
        ("private-x.shop.test.", DnsBehaviour::Private),
        ("metadata-x.wiki.test.", DnsBehaviour::Metadata),
        ("drop-x.forum.test.", DnsBehaviour::Drop),
    ];
    for (name, expected) in cases {
        let (behaviour, ips) = lookup(&resolver, name).await;
        assert_eq!(behaviour, expected, "{name}");
        assert_eq!(
            behaviour,
            names::dns_behaviour(name),
            "{name}: the scheme and the server disagree"
        );
        assert_eq!(ips, expected_addresses(expected), "{name}");
    }

    let started = Instant::now();
    let (behaviour, ips) = lookup(&resolver, "slow-img-0001.photos.test.").await;
    assert_eq!(
        (behaviour, ips),
        (
            DnsBehaviour::Loopback,
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        )
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "slow answer came after {:?}",
        started.elapsed()
    );

    assert_eq!(server.stats().queries_for("dead-img-0001.cdn.test"), 1);
    assert!(server.stats().total() >= 11, "{}", server.stats().total());

    // Only A records exist: AAAA is NOERROR without answers.
    let aaaa = resolver
        .lookup("img-0001.photos.test.", RecordType::AAAA)
        .await;
    assert_eq!(
        observed(aaaa.map(|lookup| lookup.iter().filter_map(|r| r.ip_addr()).collect())).0,
        DnsBehaviour::NoData
    );
}

#[tokio::test]
async fn a_thousand_generated_hosts_resolve_as_their_names_say() {
    let server = DnsServer::start_local(DnsConfig {
        slow_delay: Duration::from_millis(100),
        ttl: 60,
    })
    .await
    .expect("dns");
    let resolver = server.resolver(Duration::from_millis(500));
    let hosts = names::image_hosts(1000, 7);
    let results: Vec<(String, DnsBehaviour)> = futures_util::stream::iter(hosts.iter().cloned())
        .map(|host| {
            let resolver = resolver.clone();
            async move {
                let (behaviour, _) = lookup(&resolver, &format!("{host}.")).await;
                (host, behaviour)
            }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    let mut n_by_behaviour = std::collections::BTreeMap::new();
    for (host, behaviour) in &results {
        let expected = match names::dns_behaviour(host) {
            DnsBehaviour::Slow => DnsBehaviour::Loopback,
            other => other,
        };
        assert_eq!(*behaviour, expected, "{host}");
        *n_by_behaviour.entry(format!("{behaviour:?}")).or_insert(0) += 1;
    }
    assert!(n_by_behaviour["Loopback"] > 800, "{n_by_behaviour:?}");
    assert!(n_by_behaviour["NxDomain"] > 20, "{n_by_behaviour:?}");
    assert_eq!(server.stats().queries_for(&hosts[0]), 1);
}

#[tokio::test]
async fn answers_over_tcp_too() {
    let server = DnsServer::start_local(DnsConfig::quick())
        .await
        .expect("dns");
    let tcp = server.tcp_addr().expect("tcp listener on the same port");
    assert_eq!(tcp.port(), server.addr().port());
    let mut config = hickory_resolver::config::ResolverConfig::new();
    config.add_name_server(hickory_resolver::config::NameServerConfig::new(
        tcp,
        hickory_proto::xfer::Protocol::Tcp,
    ));
    let resolver = hickory_resolver::TokioResolver::builder_with_config(
        config,
        hickory_resolver::name_server::TokioConnectionProvider::default(),
    )
    .build();
    assert_eq!(
        lookup(&resolver, "img-0001.cdn.test.").await.0,
        DnsBehaviour::Loopback
    );
    assert_eq!(
        lookup(&resolver, "dead-img-0001.cdn.test.").await.0,
        DnsBehaviour::NxDomain
    );
}

#[tokio::test]
async fn the_testkit_http_client_never_leaves_loopback() {
    let server = DnsServer::start_local(DnsConfig::quick())
        .await
        .expect("dns");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "hello" });
        axum::serve(listener, app).await.expect("serve");
    });
    let client = cah_testkit::world::http_client_for(&server, Duration::from_secs(2));
    let body = client
        .get(format!("http://img-0001.photos.test:{port}/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "hello");
    for host in ["private-a.photos.test", "metadata-a.photos.test"] {
        let error = client
            .get(format!("http://{host}:{port}/"))
            .send()
            .await
            .expect_err("must refuse a non-loopback answer");
        let chain = format!("{:?}", error);
        assert!(chain.contains("refusing non-loopback answer"), "{chain}");
    }
}
