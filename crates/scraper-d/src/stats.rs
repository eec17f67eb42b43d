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
    /// Still waiting (for its host's slots or backoff, or on the wire) when the half's tail ran
    /// out (`--max-tail`).
    Abandoned,
}

impl Outcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [Outcome; 24] = [
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
        Outcome::Abandoned,
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
            Outcome::Abandoned => "abandoned",
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

/// Attempts a run needs before its share of `resolver_error` says anything about the node.
pub const STRAIN_MIN_ATTEMPTS: u64 = 20;

/// A run (a job half, a `fetch`) that lost a fifth or more of its attempts to the node's
/// resolver (`resolver_error`: SERVFAIL, REFUSED, no answer), though not all of them (that is a
/// broken node, `crate::daemon`). It is img2dataset's most reported trouble: an overloaded or
/// rate-limited resolver fails names that exist, and the images are lost to the node, not to
/// the web; the counts alone leave it for the operator to notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverStrain {
    /// `resolver_error` outcomes.
    pub resolver_errors: u64,
    /// Outcomes other than `circuit_open` (no request was made).
    pub attempts: u64,
}

impl ResolverStrain {
    /// `Some` when `outcomes` hold at least [`STRAIN_MIN_ATTEMPTS`] attempts, a fifth or more of
    /// them `resolver_error`.
    pub fn of(outcomes: &OutcomeCounts) -> Option<Self> {
        let attempts = outcomes.total() - outcomes.get(Outcome::CircuitOpen);
        let resolver_errors = outcomes.get(Outcome::ResolverError);
        (attempts >= STRAIN_MIN_ATTEMPTS && resolver_errors * 5 >= attempts).then_some(Self {
            resolver_errors,
            attempts,
        })
    }

    /// Logs a warning that says what to check; `job` names the job half, if any.
    pub fn warn(&self, job: Option<u64>) {
        tracing::warn!(
            job,
            resolver_errors = self.resolver_errors,
            attempts = self.attempts,
            "a fifth or more of the downloads failed at the node's resolver (resolver_error: \
             SERVFAIL, REFUSED or no answer), so images are lost to the node, not to the web: check \
             that --nameserver (SCRAPER_NAMESERVERS) or /etc/resolv.conf names a working caching \
             resolver, or lower --concurrency"
        );
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

    /// Counts `n` more of `outcome`.
    pub fn add_many(&mut self, outcome: Outcome, n: u64) {
        if n > 0 {
            *self.counts.entry(outcome).or_default() += n;
        }
    }

    /// The count of `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts.get(&outcome).copied().unwrap_or_default()
    }

    /// All outcomes counted.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Counts `n` of each `(outcome, n)` (tests).
    #[cfg(test)]
    pub(crate) fn of(outcomes: &[(Outcome, u64)]) -> Self {
        let mut counts = OutcomeCounts::default();
        for (outcome, n) in outcomes {
            counts.add_many(*outcome, *n);
        }
        counts
    }

    /// The counts by name, as `BundleStats::outcomes` holds them (zeros left out).
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .map(|(outcome, count)| (outcome.as_str().to_owned(), *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifth_of_the_attempts_lost_to_the_resolver_is_a_strain() {
        use Outcome::*;
        type Case<'a> = (&'a [(Outcome, u64)], Option<(u64, u64)>);
        let cases: &[Case<'_>] = &[
            (&[(Ok, 16), (ResolverError, 4)], Some((4, 20))),
            (&[(Ok, 17), (ResolverError, 3)], None),
            // Too few attempts to tell.
            (&[(Ok, 10), (ResolverError, 9)], None),
            // Breaker skips are no attempts.
            (&[(Ok, 12), (ResolverError, 3), (CircuitOpen, 40)], None),
            (
                &[(Ok, 12), (ResolverError, 8), (CircuitOpen, 40)],
                Some((8, 20)),
            ),
            // Names that do not exist are the web's dead links, not the resolver's fault.
            (&[(Ok, 10), (DnsFailure, 30)], None),
        ];
        for (outcomes, want) in cases {
            let got = ResolverStrain::of(&OutcomeCounts::of(outcomes))
                .map(|strain| (strain.resolver_errors, strain.attempts));
            assert_eq!(got, *want, "{outcomes:?}");
        }
    }
}
