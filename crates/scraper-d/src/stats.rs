//! Outcome classes of one image fetch and their counts per job (into `BundleStats`).

use std::collections::BTreeMap;

/// What happened to one candidate image. The names are the keys of `BundleStats::outcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Stored in the bundle.
    Ok,
    /// The host name does not resolve: NXDOMAIN, or no address record. The host's fault.
    DnsFailure,
    /// The nameserver gave no usable answer for the host name (SERVFAIL, REFUSED, no reply
    /// within the image's budget, no nameserver reachable). A few are the domains' own
    /// servers; all of them are the node's resolver (`--nameserver`).
    ResolverError,
    /// The TCP or TLS connection failed.
    ConnectFailure,
    /// The image's time budget (its lookups, robots.txt wait and requests together) ran out.
    Timeout,
    /// The connection broke while the body was read.
    BodyError,
    /// A 4xx status other than 429.
    Http4xx,
    /// 429 Too Many Requests: the host backs off (`Retry-After`), and a run of them opens its
    /// circuit breaker like other host failures.
    RateLimited,
    /// A 5xx status.
    Http5xx,
    /// Another non-2xx status (1xx, a 3xx without `Location`).
    HttpOther,
    /// The server answered, but not in HTTP (garbage, a status line or header that does not
    /// parse, conflicting `Content-Length`s, a header block over the limit).
    BadResponse,
    /// `X-Robots-Tag` opted the image out (noai, noimageai, noindex, noimageindex), or TDMRep's
    /// `tdm-reservation: 1` reserved its mining rights.
    OptOut,
    /// robots.txt disallows the URL for our user agent.
    Robots,
    /// Fewer bytes than the minimum.
    TooSmall,
    /// A body over the byte cap, or a header claiming more pixels than the cap.
    TooBig,
    /// Not one of the accepted formats (sniffed from the bytes).
    BadFormat,
    /// The picture failed to decode.
    DecodeError,
    /// The host resolved to (or a redirect pointed at) a refused address.
    PrivateAddress,
    /// A redirect pointed back at a URL already visited.
    RedirectLoop,
    /// More redirects than allowed.
    TooManyRedirects,
    /// The host's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// A URL the HTTP client cannot request.
    BadUrl,
    /// A redirect led to a URL or domain of the blocklist.
    Blocklisted,
}

impl Outcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [Outcome; 23] = [
        Outcome::Ok,
        Outcome::DnsFailure,
        Outcome::ResolverError,
        Outcome::ConnectFailure,
        Outcome::Timeout,
        Outcome::BodyError,
        Outcome::Http4xx,
        Outcome::RateLimited,
        Outcome::Http5xx,
        Outcome::HttpOther,
        Outcome::BadResponse,
        Outcome::OptOut,
        Outcome::Robots,
        Outcome::TooSmall,
        Outcome::TooBig,
        Outcome::BadFormat,
        Outcome::DecodeError,
        Outcome::PrivateAddress,
        Outcome::RedirectLoop,
        Outcome::TooManyRedirects,
        Outcome::CircuitOpen,
        Outcome::BadUrl,
        Outcome::Blocklisted,
    ];

    /// The stable snake_case name used in stats and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::DnsFailure => "dns_failure",
            Outcome::ResolverError => "resolver_error",
            Outcome::ConnectFailure => "connect_failure",
            Outcome::Timeout => "timeout",
            Outcome::BodyError => "body_error",
            Outcome::Http4xx => "http_4xx",
            Outcome::RateLimited => "rate_limited",
            Outcome::Http5xx => "http_5xx",
            Outcome::HttpOther => "http_other",
            Outcome::BadResponse => "bad_response",
            Outcome::OptOut => "opt_out",
            Outcome::Robots => "robots",
            Outcome::TooSmall => "too_small",
            Outcome::TooBig => "too_big",
            Outcome::BadFormat => "bad_format",
            Outcome::DecodeError => "decode_error",
            Outcome::PrivateAddress => "private_address",
            Outcome::RedirectLoop => "redirect_loop",
            Outcome::TooManyRedirects => "too_many_redirects",
            Outcome::CircuitOpen => "circuit_open",
            Outcome::BadUrl => "bad_url",
            Outcome::Blocklisted => "blocklisted",
        }
    }

    /// Whether this outcome may be the node's own fault rather than the host's: its resolver
    /// not answering, or its network not connecting or not delivering in time. Any other
    /// outcome needed an answer (from a nameserver or a web server) that a node without a
    /// working resolver or network never gets.
    pub fn is_node_local(self) -> bool {
        matches!(
            self,
            Outcome::ResolverError | Outcome::ConnectFailure | Outcome::Timeout
        )
    }

    /// Whether this outcome is what a resolver that lies gives for every name: NXDOMAIN for
    /// names that exist, or a sinkhole address (`0.0.0.0`, a private one). Dead domains give
    /// the same, so only many hosts of it say anything about the node.
    pub fn may_be_resolver_lie(self) -> bool {
        matches!(self, Outcome::DnsFailure | Outcome::PrivateAddress)
    }

    /// Whether this outcome counts against the host's circuit breaker.
    pub fn is_host_failure(self) -> bool {
        matches!(
            self,
            Outcome::ConnectFailure
                | Outcome::ResolverError
                | Outcome::Timeout
                | Outcome::BadResponse
                | Outcome::RateLimited
                | Outcome::Http5xx
                | Outcome::OptOut
        )
    }
}

/// Outcome counts of one job half.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    counts: BTreeMap<Outcome, u64>,
}

impl OutcomeCounts {
    /// Counts one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        *self.counts.entry(outcome).or_default() += 1;
    }

    /// The count of `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts.get(&outcome).copied().unwrap_or_default()
    }

    /// All outcomes counted.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The counts by name, as `BundleStats::outcomes` holds them (zeros left out).
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .map(|(outcome, count)| (outcome.as_str().to_owned(), *count))
            .collect()
    }
}
