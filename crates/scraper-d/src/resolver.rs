//! The in-process DNS resolver: hickory without a cache of its own under our bounded cache
//! (a few addresses per name, failures too), one lookup per name at a time, IPv4 first, a
//! bound on queries in flight, and the address policy applied to every answer.

mod cache;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::cache::{Answer, Cache, short_detail};
use crate::safety::AddressPolicy;

/// Resolver settings.
///
/// Memory: the cache keeps at most `cache_size` names with at most `max_addresses` each (see
/// `resolver/cache.rs`: about 1 KiB a name at worst, 100 MB with the defaults, some 20 MB for
/// ordinary names); hickory's own cache is off, so a name answered with thousands of records
/// costs their memory only while its lookup runs, and at most `max_in_flight` run at once.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// Nameservers (UDP, TCP fallback); empty means the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Names cached, answers and failures together (default 100,000); the oldest goes first.
    pub cache_size: usize,
    /// Addresses kept per name, IPv4 first (default 8); the rest of a long answer is dropped.
    pub max_addresses: usize,
    /// Shortest and longest time an answer is kept, whatever its TTL (default 30 s and 1 h):
    /// the floor makes the second lookup of an image's host (by the HTTP client) and its
    /// robots.txt's find the first one's answer even at TTL 0.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Time a negative answer (NXDOMAIN, no address record, no permitted address) is kept,
    /// with or without an SOA (default 60 s).
    pub negative_ttl: Duration,
    /// Time a failed lookup (SERVFAIL, REFUSED, no answer in time) is kept (default 30 s).
    pub failure_ttl: Duration,
    /// Per-query timeout (default 5 s) and attempts (default 2).
    pub timeout: Duration,
    pub attempts: usize,
    /// Lookups in flight at once (default 64).
    pub max_in_flight: usize,
}

impl ResolverSettings {
    /// The defaults named on each field, with the system's nameservers.
    pub fn standard() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            cache_size: 100_000,
            max_addresses: 8,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            attempts: 2,
            max_in_flight: 64,
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
    /// The name cannot be asked for at all (a label DNS does not take, too long): the URL's
    /// fault, and no query is sent.
    #[error("{host} is no dns name: {detail}")]
    BadName { host: String, detail: String },
}

/// The cache and the lookups in flight, behind one lock so that a name is either cached,
/// being looked up, or neither.
struct State {
    cache: Cache,
    pending: HashMap<String, Shared<BoxFuture<'static, Answer>>>,
}

/// A cloneable resolver shared by every request of a process.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    policy: Arc<AddressPolicy>,
    in_flight: Arc<Semaphore>,
    state: Arc<Mutex<State>>,
    settings: Arc<ResolverSettings>,
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
        // Hickory caches whole answers (thousands of records a name, if a server likes):
        // ours keeps a few addresses a name instead.
        options.cache_size = 0;
        options.timeout = settings.timeout;
        options.attempts = settings.attempts;
        options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        Ok(Resolver {
            inner: builder.build(),
            policy: Arc::new(policy),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            state: Arc::new(Mutex::new(State {
                cache: Cache::new(settings.cache_size),
                pending: HashMap::new(),
            })),
            settings: Arc::new(settings.clone()),
        })
    }

    /// The address policy answers are checked against.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Names in the cache now (answers and failures).
    pub fn cached_names(&self) -> usize {
        self.lock().cache.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The permitted addresses of `host` (an IP literal is checked as it is), IPv4 first, at
    /// most [`ResolverSettings::max_addresses`]. A name is looked up once at a time: callers
    /// asking meanwhile wait for that lookup, and later ones get its answer (or failure)
    /// from the cache.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return check(&self.policy, host, vec![ip]);
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if key == "localhost" || key.ends_with(".localhost") {
            return Err(ResolveError::Refused {
                host: host.to_owned(),
                ip: IpAddr::from([127, 0, 0, 1]),
            });
        }
        if let Some(answer) = self.lock().cache.get(&key, Instant::now()) {
            return answer.map(|addresses| addresses.to_vec());
        }
        // Parsed only on a miss: a name the parser rejects is never cached, so every lookup
        // of it comes here.
        let name = Name::from_utf8(host).map_err(|error| ResolveError::BadName {
            host: host.to_owned(),
            detail: short_detail(error.to_string()),
        })?;
        let shared = {
            let mut state = self.lock();
            // Answered while the name was parsed.
            if let Some(answer) = state.cache.get(&key, Instant::now()) {
                return answer.map(|addresses| addresses.to_vec());
            }
            match state.pending.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = self.spawn_lookup(key.clone(), host.to_owned(), name);
                    state.pending.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await.map(|addresses| addresses.to_vec())
    }

    /// Starts the lookup of `name` on a task of its own, so that a caller that stops waiting
    /// (its image's time budget ran out) neither cancels it nor makes the next caller send
    /// another; the task caches the answer and leaves `pending`.
    fn spawn_lookup(
        &self,
        key: String,
        host: String,
        name: Name,
    ) -> Shared<BoxFuture<'static, Answer>> {
        let resolver = self.clone();
        let (task_key, task_host) = (key.clone(), host.clone());
        let task = tokio::spawn(async move {
            let (answer, ttl) = resolver.lookup(&task_host, name).await;
            let mut state = resolver.lock();
            state
                .cache
                .insert(&task_key, answer.clone(), Instant::now() + ttl);
            state.pending.remove(&task_key);
            answer
        });
        let resolver = self.clone();
        async move {
            task.await.unwrap_or_else(|_| {
                // Only a panic ends the task early: the next caller tries again.
                resolver.lock().pending.remove(&key);
                Err(ResolveError::Unanswered {
                    host,
                    detail: "lookup task failed".to_owned(),
                })
            })
        }
        .boxed()
        .shared()
    }

    /// One lookup of `name`, and how long its answer may be kept.
    async fn lookup(&self, host: &str, name: Name) -> (Answer, Duration) {
        let settings = &self.settings;
        let Ok(permit) = self.in_flight.acquire().await else {
            let error = ResolveError::Unanswered {
                host: host.to_owned(),
                detail: "resolver closed".to_owned(),
            };
            return (Err(error), settings.failure_ttl);
        };
        let lookup = self.inner.lookup_ip(name).await;
        drop(permit);
        let lookup = match lookup {
            Ok(lookup) => lookup,
            Err(error) => {
                let error = lookup_error(host, &error);
                let ttl = match error {
                    ResolveError::NotFound { .. } => settings.negative_ttl,
                    _ => settings.failure_ttl,
                };
                return (Err(error), ttl);
            }
        };
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now())
            .clamp(settings.min_ttl, settings.max_ttl.max(settings.min_ttl));
        let mut addresses: Vec<IpAddr> = lookup.iter().collect();
        drop(lookup);
        addresses.sort_by_key(|ip| ip.is_ipv6());
        match check(&self.policy, host, addresses) {
            Ok(mut permitted) => {
                permitted.truncate(settings.max_addresses.max(1));
                (Ok(Arc::from(permitted)), ttl)
            }
            Err(error @ ResolveError::NotFound { .. }) => (Err(error), settings.negative_ttl),
            Err(error) => (Err(error), ttl),
        }
    }
}

/// The addresses `policy` permits, in order; an error when there are none.
fn check(
    policy: &AddressPolicy,
    host: &str,
    addresses: Vec<IpAddr>,
) -> Result<Vec<IpAddr>, ResolveError> {
    let refused = addresses.iter().copied().find(|ip| !policy.permits(*ip));
    let permitted: Vec<IpAddr> = addresses
        .into_iter()
        .filter(|ip| policy.permits(*ip))
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
    let (host, detail) = (host.to_owned(), short_detail(error.to_string()));
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
