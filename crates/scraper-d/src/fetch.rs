//! Image downloads: reqwest over our resolver, a global and a per-host limit, one time budget
//! per image (name lookups, robots.txt and every request of its redirect chain), a body cap,
//! redirects followed by hand (at most 5, each target checked again), robots.txt and
//! `X-Robots-Tag`, each failure named as an [`Outcome`]; bodies past 1 MiB wait for one of a
//! few permits (see [`crate::body`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, LOCATION, RETRY_AFTER};
use tokio::sync::Semaphore;
use url::Url;

use crate::body::{BodyBuffer, LargeBodies, LargeBodyGauge, LargeBodyPermit};
use crate::filters::Blocklist;
use crate::job::Skipped;
use crate::politeness::{HostState, Hosts, PolitenessConfig, host_key, parse_retry_after};
use crate::resolver::{ResolveError, Resolver};
use crate::robots::{RobotsRules, tdm_reserved, x_robots_opts_out};
use crate::stats::Outcome;

/// The product token robots.txt groups are matched against.
pub const ROBOTS_AGENT: &str = "scraper-d";

/// The part of a robots.txt that is read; the rest is ignored.
pub const ROBOTS_MAX_BYTES: usize = 512 * 1024;

/// Download settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Time budget of one image (default 10 s): its name lookups, its wait for the host's
    /// robots.txt and every request of its redirect chain (connect, headers, body) together.
    /// Waiting for a host slot or a host's backoff is not counted.
    pub timeout: Duration,
    /// Largest body read (default 10 MiB); a larger one is `too_big`.
    pub max_body_bytes: u64,
    /// Redirects followed (default 5).
    pub max_redirects: u32,
    /// Redirect targets it lists are `blocklisted` (the daemon's `--blocklist`; none by default).
    pub blocklist: Option<Arc<Blocklist>>,
    /// A redirect target longer than this is `bad_url` (default 2,048 bytes, the extraction
    /// filter's default): the final URL is stored with the sample, and a `Location` header may
    /// be hundreds of kilobytes.
    pub max_url_bytes: usize,
    /// Requests in flight at once over all hosts (default 64, for a 1-vCPU node: downloads
    /// wait on the network, decoding is bounded separately).
    pub max_in_flight: usize,
    /// Bodies past 1 MiB held at once, from their first byte past it (or a `Content-Length`
    /// over it) until they are dropped after decoding (default 16: 160 MiB at the 10 MiB cap).
    pub max_large_bodies: usize,
    pub politeness: PolitenessConfig,
}

impl FetchConfig {
    /// The defaults named on each field.
    pub fn standard(user_agent: String) -> Self {
        FetchConfig {
            user_agent,
            timeout: Duration::from_secs(10),
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
            max_url_bytes: crate::filters::DEFAULT_MAX_URL_BYTES,
            blocklist: None,
            max_in_flight: 64,
            max_large_bodies: 16,
            politeness: PolitenessConfig::standard(),
        }
    }
}

/// A downloaded body and where it came from in the end.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub final_url: Url,
    /// The permit of a body past 1 MiB: keep it until `bytes` is dropped.
    pub large: Option<LargeBodyPermit>,
}

/// Fetches images; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    resolver: Resolver,
    hosts: Arc<Hosts>,
    global: Arc<Semaphore>,
    large_bodies: LargeBodies,
    config: Arc<FetchConfig>,
}

enum Step {
    Redirect(String),
    Body(Vec<u8>, Option<LargeBodyPermit>),
}

/// What is left of one image's time budget.
struct Budget {
    left: Duration,
}

impl Budget {
    /// Whether at least half of the whole budget `whole` is left: enough that running out of
    /// it says something about what was waited on.
    fn is_fair_share(&self, whole: Duration) -> bool {
        self.left >= whole / 2
    }

    /// Runs `work` within what is left, and takes the time it took off; `Timeout` when the
    /// budget runs out first.
    async fn spend<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Outcome> {
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(self.left, work).await;
        self.left = self.left.saturating_sub(started.elapsed());
        result.map_err(|_| Outcome::Timeout)
    }
}

impl Fetcher {
    /// Builds the HTTP client (TLS verified, no proxy, no automatic redirects).
    pub fn new(config: FetchConfig, resolver: Resolver) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .dns_resolver(Arc::new(resolver.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.politeness.per_host)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Fetcher {
            client,
            resolver,
            hosts: Arc::new(Hosts::new(config.politeness.clone())),
            global: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            large_bodies: LargeBodies::new(config.max_large_bodies),
            config: Arc::new(config),
        })
    }

    /// Large bodies held now and at most (metrics, tests).
    pub fn large_bodies(&self) -> Arc<LargeBodyGauge> {
        self.large_bodies.gauge()
    }

    /// Requests one host may have on the wire at once (`--per-host`).
    pub fn per_host(&self) -> usize {
        self.config.politeness.per_host
    }

    /// Forgets per-host state of hosts not in use (between claims, so memory stays bounded).
    pub fn forget_idle_hosts(&self) -> usize {
        self.hosts.forget_idle()
    }

    /// Downloads `url`, following redirects; every failure is one outcome.
    pub async fn fetch(&self, url: &Url) -> Result<Fetched, Outcome> {
        self.fetch_answered(url)
            .await
            .map_err(|skipped| skipped.outcome)
    }

    /// [`Fetcher::fetch`], with a fingerprint of the answer when a server refused the image
    /// with an HTTP error status (see [`Skipped::answered`]).
    pub async fn fetch_answered(&self, url: &Url) -> Result<Fetched, Skipped> {
        let mut current = url.clone();
        current.set_fragment(None);
        let mut visited: HashSet<String> = HashSet::new();
        let mut hops = 0u32;
        let mut budget = Budget {
            left: self.config.timeout,
        };
        loop {
            visited.insert(current.as_str().to_owned());
            let state = self.host_state(&current)?;
            if state.is_open() {
                return Err(Outcome::CircuitOpen.into());
            }
            let fair_share = budget.is_fair_share(self.config.timeout);
            let step = self
                .fetch_one(&current, &state, &mut budget, fair_share)
                .await;
            let step = match step {
                Ok(step) => step,
                Err(skipped) => {
                    // A hop that began with most of the budget already spent by earlier hosts
                    // of the chain times out through no fault of this one.
                    if skipped.outcome != Outcome::Timeout || fair_share {
                        self.hosts.record(&state, skipped.outcome);
                    }
                    return Err(skipped);
                }
            };
            self.hosts.record(&state, Outcome::Ok);
            match step {
                Step::Body(bytes, large) => {
                    return Ok(Fetched {
                        bytes,
                        final_url: current,
                        large,
                    });
                }
                Step::Redirect(location) => {
                    hops += 1;
                    let mut next = current.join(&location).map_err(|_| Outcome::BadUrl)?;
                    // The fragment never goes to the server, and is no part of the image's URL.
                    next.set_fragment(None);
                    if next.as_str().len() > self.config.max_url_bytes {
                        return Err(Outcome::BadUrl.into());
                    }
                    if let Some(blocklist) = &self.config.blocklist
                        && blocklist.blocks_url(&next, next.as_str())
                    {
                        return Err(Outcome::Blocklisted.into());
                    }
                    if visited.contains(next.as_str()) {
                        return Err(Outcome::RedirectLoop.into());
                    }
                    if hops > self.config.max_redirects {
                        return Err(Outcome::TooManyRedirects.into());
                    }
                    current = next;
                }
            }
        }
    }

    fn host_state(&self, url: &Url) -> Result<Arc<HostState>, Outcome> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Outcome::BadUrl);
        }
        // Credentials would go out with the request (and robots.txt's) and into the dataset.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Outcome::BadUrl);
        }
        let host = host_key(url).ok_or(Outcome::BadUrl)?;
        Ok(self.hosts.get(&host))
    }

    /// One HTTP request of a chain: backoff and the host's slot, then the address check,
    /// robots and the request, the lookup, robots and request taken from `budget`;
    /// `fair_share` says whether the hop began with at least half of it.
    async fn fetch_one(
        &self,
        url: &Url,
        state: &HostState,
        budget: &mut Budget,
        fair_share: bool,
    ) -> Result<Step, Skipped> {
        let host = url.host_str().ok_or(Outcome::BadUrl)?;
        // Waiting for a host (its backoff, then one of its slots) holds none of the global
        // permits, which are for requests on the wire. The slot comes before the lookup, so
        // a host whose names do not resolve costs at most its slots' worth of lookups at
        // once, and its breaker stops the rest.
        if let Some(until) = state.backoff_until() {
            tokio::time::sleep_until(until).await;
        }
        let _slot = state.slots.acquire().await.map_err(|_| Outcome::BadUrl)?;
        if let Some(until) = state.backoff_until() {
            tokio::time::sleep_until(until).await;
        }
        // The breaker may have opened while this request waited.
        if state.is_open() {
            return Err(Outcome::CircuitOpen.into());
        }
        // A lookup that runs out a fair share of the budget is a resolver error (a silent
        // nameserver), not the host's; one that only finds the budget spent by earlier hops is
        // a timeout.
        budget
            .spend(self.resolver.resolve(host))
            .await
            .map_err(|timeout| {
                if fair_share {
                    Outcome::ResolverError
                } else {
                    timeout
                }
            })?
            .map_err(|error| resolve_outcome(&error))?;
        if self.config.politeness.respect_robots {
            let rules = budget
                .spend(state.robots(|| {
                    let (fetcher, url) = (self.clone(), url.clone());
                    async move { fetcher.fetch_robots(&url).await }.boxed()
                }))
                .await?;
            let mut path = url.path().to_owned();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            if let RobotsRules::Unreachable(outcome) = rules {
                return Err((*outcome).into());
            }
            if !rules.allows(&path) {
                return Err(Outcome::Robots.into());
            }
        }
        let _global = self.global.acquire().await.map_err(|_| Outcome::BadUrl)?;
        budget.spend(self.request(url, state)).await?
    }

    async fn request(&self, url: &Url, state: &HostState) -> Result<Step, Skipped> {
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| send_outcome(&error))?;
        let status = response.status();
        if status.is_redirection() {
            if let Some(location) = response.headers().get(LOCATION) {
                // Raw UTF-8 is common in `Location` (browsers follow it, percent-encoded by
                // the join below); other bytes are no URL.
                let location =
                    std::str::from_utf8(location.as_bytes()).map_err(|_| Outcome::BadUrl)?;
                return Ok(Step::Redirect(location.to_owned()));
            }
            return Err(Outcome::HttpOther.into());
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(parse_retry_after);
            self.hosts.back_off(state, retry_after);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Skipped::answered(Outcome::RateLimited, &response));
        }
        if status.is_client_error() {
            return Err(Skipped::answered(Outcome::Http4xx, &response));
        }
        if status.is_server_error() {
            return Err(Skipped::answered(Outcome::Http5xx, &response));
        }
        if !status.is_success() {
            return Err(Outcome::HttpOther.into());
        }
        let opted_out = response
            .headers()
            .get_all("x-robots-tag")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| x_robots_opts_out(value, ROBOTS_AGENT))
            || (self.config.politeness.respect_tdm_reservation
                && response
                    .headers()
                    .get_all("tdm-reservation")
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .any(tdm_reserved));
        if opted_out {
            return Err(Outcome::OptOut.into());
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.config.max_body_bytes) {
            return Err(Outcome::TooBig.into());
        }
        // Waiting for a large-body permit is part of this request, so of the image's time
        // budget: a body that waits too long is a `timeout` (see `crate::body` on deadlocks).
        let mut body = BodyBuffer::new(declared, self.config.max_body_bytes);
        if let Some(length) = declared
            && body.needs_permit(length)
        {
            body.hold(self.large_bodies.acquire().await);
        }
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let additional = chunk.len() as u64;
                    if body.len() as u64 + additional > self.config.max_body_bytes {
                        return Err(Outcome::TooBig.into());
                    }
                    if body.needs_permit(additional) {
                        body.hold(self.large_bodies.acquire().await);
                    }
                    body.push(&chunk);
                }
                Ok(None) => {
                    let (bytes, large) = body.finish();
                    return Ok(Step::Body(bytes, large));
                }
                Err(error) if error.is_timeout() => return Err(Outcome::Timeout.into()),
                Err(_) => return Err(Outcome::BodyError.into()),
            }
        }
    }

    /// robots.txt of `url`'s origin: 2xx parsed, 4xx (and 3xx) allow all, 5xx and 429
    /// disallow all; no connection or no answer in time makes the host unreachable.
    async fn fetch_robots(&self, url: &Url) -> RobotsRules {
        let Ok(robots_url) = url.join("/robots.txt") else {
            return RobotsRules::AllowAll;
        };
        let request = async {
            let mut response = match self.client.get(robots_url).send().await {
                Ok(response) => response,
                Err(error) => {
                    return Some(match send_outcome(&error) {
                        // A refused address (a name rebound since the image's lookup) is
                        // the image's outcome too, not a robots.txt that says no.
                        outcome @ (Outcome::ConnectFailure
                        | Outcome::Timeout
                        | Outcome::PrivateAddress
                        | Outcome::ResolverError
                        | Outcome::DnsFailure) => RobotsRules::Unreachable(outcome),
                        _ => RobotsRules::DisallowAll,
                    });
                }
            };
            let status = response.status();
            if status.is_success() {
                let mut body = Vec::new();
                // A bounded prefix, as Google reads 500 KiB: a longer or endless file is cut
                // (and its connection dropped) instead of filling memory until the deadline.
                while body.len() < ROBOTS_MAX_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) => break,
                        // A robots.txt cut short is not read as a shorter one.
                        Err(_) => return Some(RobotsRules::DisallowAll),
                    }
                }
                body.truncate(ROBOTS_MAX_BYTES);
                Some(RobotsRules::parse(
                    &String::from_utf8_lossy(&body),
                    ROBOTS_AGENT,
                ))
            } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Some(RobotsRules::DisallowAll)
            } else {
                Some(RobotsRules::AllowAll)
            }
        };
        let rules = tokio::time::timeout(self.config.timeout, request)
            .await
            .ok()
            .flatten()
            .unwrap_or(RobotsRules::Unreachable(Outcome::Timeout));
        tracing::debug!(url = %url, rules = ?rules, "robots.txt read");
        rules
    }
}

fn resolve_outcome(error: &ResolveError) -> Outcome {
    match error {
        ResolveError::NotFound { .. } => Outcome::DnsFailure,
        ResolveError::Unanswered { .. } => Outcome::ResolverError,
        ResolveError::Refused { .. } => Outcome::PrivateAddress,
        ResolveError::BadName { .. } => Outcome::BadUrl,
    }
}

fn send_outcome(error: &reqwest::Error) -> Outcome {
    if error.is_timeout() {
        Outcome::Timeout
    } else if error.is_connect() {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
                return resolve_outcome(resolve);
            }
            source = cause.source();
        }
        Outcome::ConnectFailure
    } else if error.is_builder() {
        Outcome::BadUrl
    } else if is_malformed_response(error) {
        Outcome::BadResponse
    } else {
        Outcome::ConnectFailure
    }
}

/// Whether the server answered, but not in HTTP: garbage, an unparsable status line or header,
/// conflicting lengths, a header block over hyper's limit.
fn is_malformed_response(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_parse() || hyper.is_parse_status();
        }
        source = cause.source();
    }
    false
}
