//! The in-process DNS resolver: hickory with a large cache, negative caching, IPv4 first,
//! a bound on queries in flight, and the address policy applied to every answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use tokio::sync::Semaphore;

use crate::safety::AddressPolicy;

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// Nameservers (UDP, TCP fallback); empty means the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Cached names (default 100,000).
    pub cache_size: usize,
    /// Time a negative answer stays cached at least (default 60 s).
    pub negative_ttl: Duration,
    /// Per-query timeout (default 5 s) and attempts (default 2).
    pub timeout: Duration,
    pub attempts: usize,
    /// Queries in flight at once (default 256).
    pub max_in_flight: usize,
}

impl ResolverSettings {
    /// The defaults named on each field, with the system's nameservers.
    pub fn standard() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            cache_size: 100_000,
            negative_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            attempts: 2,
            max_in_flight: 256,
        }
    }
}

/// Why a host name gave no usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The nameserver answered that the name does not exist (NXDOMAIN) or has no address
    /// record (NODATA): the host's fault, as a dead link is.
    #[error("{host} does not resolve: {detail}")]
    NotFound { host: String, detail: String },
    /// The nameserver gave no usable answer: SERVFAIL, REFUSED, no reply in time, or no
    /// nameserver reachable at all. Now and then the domain's own servers are broken; when
    /// every lookup ends so, the node's resolver is (`--nameserver`, `/etc/resolv.conf`).
    #[error("dns lookup of {host} failed: {detail}")]
    Unanswered { host: String, detail: String },
    /// Every address found is refused by the address policy.
    #[error("{host} resolves to the refused address {ip}")]
    Refused { host: String, ip: IpAddr },
}

/// A cloneable resolver shared by every request of a process.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    policy: Arc<AddressPolicy>,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Resolver {
    /// Builds the resolver; fails only when the system configuration cannot be read.
    pub fn new(settings: &ResolverSettings, policy: AddressPolicy) -> std::io::Result<Self> {
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(std::io::Error::other)?
        } else {
            let mut config = ResolverConfig::new();
            for server in &settings.nameservers {
                config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.cache_size = settings.cache_size;
        options.negative_min_ttl = Some(settings.negative_ttl);
        options.timeout = settings.timeout;
        options.attempts = settings.attempts;
        options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        Ok(Resolver {
            inner: builder.build(),
            policy: Arc::new(policy),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
        })
    }

    /// The address policy answers are checked against.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// The permitted addresses of `host` (an IP literal is checked as it is), IPv4 first.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check(host, vec![ip]);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Err(ResolveError::Refused {
                host: host.to_owned(),
                ip: IpAddr::from([127, 0, 0, 1]),
            });
        }
        let permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ResolveError::Unanswered {
                host: host.to_owned(),
                detail: "resolver closed".to_owned(),
            })?;
        let lookup = self.inner.lookup_ip(host).await;
        drop(permit);
        let lookup = lookup.map_err(|error| lookup_error(host, &error))?;
        let mut addresses: Vec<IpAddr> = lookup.iter().collect();
        addresses.sort_by_key(|ip| ip.is_ipv6());
        if addresses.is_empty() {
            return Err(ResolveError::NotFound {
                host: host.to_owned(),
                detail: "no addresses".to_owned(),
            });
        }
        self.check(host, addresses)
    }

    fn check(&self, host: &str, addresses: Vec<IpAddr>) -> Result<Vec<IpAddr>, ResolveError> {
        let refused = addresses
            .iter()
            .copied()
            .find(|ip| !self.policy.permits(*ip));
        let permitted: Vec<IpAddr> = addresses
            .into_iter()
            .filter(|ip| self.policy.permits(*ip))
            .collect();
        match (permitted.is_empty(), refused) {
            (true, Some(ip)) => Err(ResolveError::Refused {
                host: host.to_owned(),
                ip,
            }),
            (true, None) => Err(ResolveError::NotFound {
                host: host.to_owned(),
                detail: "no addresses".to_owned(),
            }),
            (false, _) => Ok(permitted),
        }
    }
}

/// Sorts a failed lookup: an answer that the name has no address (NXDOMAIN, or NOERROR
/// without records) is the host's; any other response code, a timeout or an IO error means
/// the nameserver did not answer the question.
fn lookup_error(host: &str, error: &hickory_resolver::ResolveError) -> ResolveError {
    let not_found = error.proto().is_some_and(|proto| {
        matches!(
            proto.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    });
    let (host, detail) = (host.to_owned(), error.to_string());
    if not_found {
        ResolveError::NotFound { host, detail }
    } else {
        ResolveError::Unanswered { host, detail }
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = Resolver::resolve(&resolver, name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}
