//! An authoritative DNS server for the test web's zones, plus resolvers pointed at it.
//!
//! Answers follow [`crate::names::host_profile`]: ordinary names get `A 127.0.0.1`, `dead-` names
//! NXDOMAIN, `servfail-` SERVFAIL, `slow-` a late answer, `drop-` no answer at all, and so on.
//! Names outside [`crate::names::ZONES`] are REFUSED, as a real authoritative server does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::net::{TcpListener, UdpSocket};

use crate::error::TestkitError;
use crate::names::{self, DnsBehaviour};

/// How the DNS server behaves where the name scheme leaves a choice.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// How long a `slow-` name waits before its answer.
    pub slow_delay: Duration,
    /// TTL of positive answers and of the SOA minimum (negative caching).
    pub ttl: u32,
}

impl DnsConfig {
    /// Short delays for tests: `slow-` names answer after 300 ms.
    pub fn quick() -> Self {
        Self {
            slow_delay: Duration::from_millis(300),
            ttl: 60,
        }
    }
}

/// A running authoritative DNS server; dropping it stops it.
pub struct DnsServer {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    stats: Arc<DnsStats>,
    server: ServerFuture<ZoneHandler>,
}

/// Query counters of a [`DnsServer`].
#[derive(Debug, Default)]
pub struct DnsStats {
    total: AtomicU64,
    by_name: Mutex<HashMap<String, u64>>,
}

impl DnsServer {
    /// Serves on an already bound UDP socket and, optionally, a TCP listener.
    pub fn start(
        udp: UdpSocket,
        tcp: Option<TcpListener>,
        config: DnsConfig,
    ) -> Result<Self, TestkitError> {
        let udp_addr = udp.local_addr().map_err(TestkitError::Socket)?;
        let tcp_addr = match &tcp {
            Some(listener) => Some(listener.local_addr().map_err(TestkitError::Socket)?),
            None => None,
        };
        let stats = Arc::new(DnsStats::default());
        let mut server = ServerFuture::new(ZoneHandler {
            config,
            stats: stats.clone(),
        });
        server.register_socket(udp);
        if let Some(listener) = tcp {
            server.register_listener(listener, Duration::from_secs(10));
        }
        tracing::info!(%udp_addr, tcp_addr = ?tcp_addr, n_zones = names::ZONES.len(), "dns server listening");
        Ok(Self {
            udp_addr,
            tcp_addr,
            stats,
            server,
        })
    }

    /// Binds UDP on `127.0.0.1:0` and TCP on the same port. The kernel picks the UDP port
    /// without looking at TCP, so that port may be taken for TCP (another test's connection
    /// uses it): a few other UDP ports are tried before the server goes without TCP.
    pub async fn start_local(config: DnsConfig) -> Result<Self, TestkitError> {
        let mut tries = 0;
        loop {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(TestkitError::Socket)?;
            let port = udp.local_addr().map_err(TestkitError::Socket)?.port();
            let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.ok();
            tries += 1;
            if tcp.is_some() || tries == 16 {
                return Self::start(udp, tcp, config);
            }
        }
    }

    /// The UDP address (also the TCP address when [`Self::tcp_addr`] is the same port).
    pub fn addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    /// A hickory resolver that asks only this server (UDP), with `timeout` per attempt and one attempt.
    pub fn resolver(&self, timeout: Duration) -> TokioResolver {
        resolver_for(self.udp_addr, timeout)
    }

    /// Stops serving and waits for the server tasks to end.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %error, "dns server shutdown reported an error");
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

impl DnsStats {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Queries received for `name` (any record type; case and trailing dot ignored).
    pub fn queries_for(&self, name: &str) -> u64 {
        let by_name = self.by_name.lock().expect("dns stats lock poisoned");
        by_name
            .get(&names::normalize_host(name))
            .copied()
            .unwrap_or(0)
    }

    fn record(&self, name: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut by_name = self.by_name.lock().expect("dns stats lock poisoned");
        *by_name.entry(names::normalize_host(name)).or_default() += 1;
    }
}

/// A hickory resolver (UDP only) that asks `server` and nothing else.
pub fn resolver_for(server: SocketAddr, timeout: Duration) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    options.cache_size = 0;
    builder.build()
}

/// A `reqwest` resolver over a [`TokioResolver`] that refuses every non-loopback answer.
///
/// The test web hands out `private-`/`metadata-` names on purpose; this adapter guarantees that a
/// client built by the testkit itself never connects anywhere but 127.0.0.0/8 or ::1.
#[derive(Clone)]
pub struct LoopbackOnlyResolve(pub TokioResolver);

impl reqwest::dns::Resolve for LoopbackOnlyResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if let Some(ip) = addrs
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| !ip.is_loopback())
            {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("refusing non-loopback answer {ip} for {}", name.as_str()).into();
                return Err(refused);
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

struct ZoneHandler {
    config: DnsConfig,
    stats: Arc<DnsStats>,
}

impl ZoneHandler {
    fn soa_for(&self, query_name: &Name) -> Option<Record> {
        let zone = names::zone_of(&query_name.to_ascii())?;
        let origin = Name::from_ascii(format!("{zone}.")).ok()?;
        let mname = Name::from_ascii(format!("ns1.{zone}.")).ok()?;
        let rname = Name::from_ascii(format!("hostmaster.{zone}.")).ok()?;
        let soa = SOA::new(
            mname,
            rname,
            2_024_120_101,
            3600,
            600,
            86_400,
            self.config.ttl,
        );
        Some(Record::from_rdata(origin, self.config.ttl, RData::SOA(soa)))
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        let builder = MessageResponseBuilder::from_message_request(request);
        let query = match request.request_info() {
            Ok(info)
                if request.message_type() == MessageType::Query
                    && request.op_code() == OpCode::Query =>
            {
                info.query.original().clone()
            }
            _ => {
                let response = builder.error_msg(request.header(), ResponseCode::NotImp);
                return send(&mut response_handle, response).await;
            }
        };
        let name = query.name().clone();
        let name_text = name.to_ascii();
        self.stats.record(&name_text);
        let behaviour = names::dns_behaviour(&name_text);
        tracing::debug!(name = %name_text, query_type = %query.query_type(), ?behaviour, "dns query");

        let address = match behaviour {
            DnsBehaviour::Drop => return ResponseInfo::from(header),
            DnsBehaviour::Refused | DnsBehaviour::ServFail => {
                let code = if behaviour == DnsBehaviour::Refused {
                    ResponseCode::Refused
                } else {
                    ResponseCode::ServFail
                };
                let response = builder.error_msg(request.header(), code);
                return send(&mut response_handle, response).await;
            }
            DnsBehaviour::NxDomain | DnsBehaviour::NoData => None,
            DnsBehaviour::Slow => {
                tokio::time::sleep(self.config.slow_delay).await;
                Some(names::LOOPBACK)
            }
            DnsBehaviour::Loopback => Some(names::LOOPBACK),
            DnsBehaviour::Private => Some(Ipv4Addr::new(10, 0, 0, 1)),
            DnsBehaviour::Metadata => Some(Ipv4Addr::new(169, 254, 169, 254)),
        };
        header.set_authoritative(true);
        let soa: Vec<Record> = self.soa_for(&name).into_iter().collect();
        let answers: Vec<Record> = match address {
            Some(ip) if matches!(query.query_type(), RecordType::A | RecordType::ANY) => {
                vec![Record::from_rdata(name, self.config.ttl, RData::A(A(ip)))]
            }
            _ => Vec::new(),
        };
        if behaviour == DnsBehaviour::NxDomain {
            header.set_response_code(ResponseCode::NXDomain);
        }
        let authority: &[Record] = if answers.is_empty() { &soa } else { &[] };
        let response = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            std::iter::empty(),
        );
        send(&mut response_handle, response).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response_handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(error = %error, "dns response could not be sent");
            let mut header = Header::new();
            header.set_response_code(ResponseCode::ServFail);
            ResponseInfo::from(header)
        }
    }
}

/// The addresses a behaviour answers with (for assertions).
pub fn expected_addresses(behaviour: DnsBehaviour) -> Vec<IpAddr> {
    match behaviour {
        DnsBehaviour::Loopback | DnsBehaviour::Slow => vec![IpAddr::V4(names::LOOPBACK)],
        DnsBehaviour::Private => vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
        DnsBehaviour::Metadata => vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))],
        DnsBehaviour::NxDomain
        | DnsBehaviour::ServFail
        | DnsBehaviour::Refused
        | DnsBehaviour::Drop
        | DnsBehaviour::NoData => Vec::new(),
    }
}
