//! The naming scheme of the test web: which zones exist and what a host name's prefixes mean.
//!
//! A host's behaviour is read from its first DNS label: leading `-`-separated tokens that are known
//! flags (`dead-`, `slow-`, `nobots-`, ...) apply, the first unknown token ends the flags.
//! So `slow-nobots-img-0042.photos.test` answers DNS late and disallows everything in robots.txt,
//! while `img-0042.photos.test` is an ordinary host.

use std::net::Ipv4Addr;

use crate::rng::SplitMix64;

/// Zones served by the test DNS server; every name below them is answered authoritatively.
pub const ZONES: &[&str] = &[
    "photos.test",
    "cdn.test",
    "img.test",
    "blog.test",
    "news.test",
    "shop.test",
    "forum.test",
    "wiki.test",
];

/// Zones whose hosts serve images in generated WAT files.
pub const IMAGE_ZONES: &[&str] = &["photos.test", "cdn.test", "img.test"];

/// Zones whose hosts serve pages in generated WAT files.
pub const PAGE_ZONES: &[&str] = &[
    "blog.test",
    "news.test",
    "shop.test",
    "forum.test",
    "wiki.test",
];

/// The address in every positive answer of an ordinary host.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// What the test DNS server does for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsBehaviour {
    /// `A 127.0.0.1` (ordinary hosts).
    Loopback,
    /// `dead-`: NXDOMAIN.
    NxDomain,
    /// `servfail-`: SERVFAIL.
    ServFail,
    /// `refused-`, or a name outside [`ZONES`]: REFUSED.
    Refused,
    /// `slow-`: `A 127.0.0.1`, sent after the server's configured delay.
    Slow,
    /// `drop-`: the query is read and never answered.
    Drop,
    /// `nodata-`: NOERROR with no `A` record.
    NoData,
    /// `private-`: `A 10.0.0.1` (an SSRF probe: a client must refuse to connect).
    Private,
    /// `metadata-`: `A 169.254.169.254` (the cloud metadata address; never connect).
    Metadata,
}

/// What `/robots.txt` says on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RobotsPolicy {
    /// `User-agent: *` disallows `/private/`; `User-agent: BadBot` disallows everything.
    Standard,
    /// `nobots-`: `User-agent: *` + `Disallow: /`.
    DisallowAll,
    /// `norobots-`: `/robots.txt` is 404, so everything is allowed.
    Missing,
    /// `robotserror-`: `/robots.txt` is 503 (a careful crawler treats the host as disallowed).
    ServerError,
    /// `endlessbots-`: `/robots.txt` starts with the [`RobotsPolicy::Standard`] rules, then never
    /// ends (comment lines until the client hangs up). A client must read a bounded prefix, as
    /// Google reads 500 KiB, and go on: reading to the end never finishes.
    Endless,
}

/// Everything a host name says about its behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostProfile {
    pub dns: DnsBehaviour,
    pub robots: RobotsPolicy,
    /// `noai-` / `noimageai-` / `noindex-` / `noimageindex-`: an `X-Robots-Tag` on every response.
    pub robots_tag: Option<&'static str>,
}

/// Reads the behaviour flags of `host` (case-insensitive, trailing dot and port ignored).
pub fn host_profile(host: &str) -> HostProfile {
    let host = normalize_host(host);
    let mut profile = HostProfile {
        dns: DnsBehaviour::Loopback,
        robots: RobotsPolicy::Standard,
        robots_tag: None,
    };
    if zone_of(&host).is_none() {
        profile.dns = DnsBehaviour::Refused;
        return profile;
    }
    let first_label = host.split('.').next().unwrap_or_default();
    for token in first_label.split('-') {
        match token {
            "dead" => profile.dns = DnsBehaviour::NxDomain,
            "servfail" => profile.dns = DnsBehaviour::ServFail,
            "refused" => profile.dns = DnsBehaviour::Refused,
            "slow" => profile.dns = DnsBehaviour::Slow,
            "drop" => profile.dns = DnsBehaviour::Drop,
            "nodata" => profile.dns = DnsBehaviour::NoData,
            "private" => profile.dns = DnsBehaviour::Private,
            "metadata" => profile.dns = DnsBehaviour::Metadata,
            "nobots" => profile.robots = RobotsPolicy::DisallowAll,
            "norobots" => profile.robots = RobotsPolicy::Missing,
            "robotserror" => profile.robots = RobotsPolicy::ServerError,
            "endlessbots" => profile.robots = RobotsPolicy::Endless,
            "noai" | "noimageai" | "noindex" | "noimageindex" => {
                profile.robots_tag = Some(robots_tag_name(token))
            }
            _ => break,
        }
    }
    profile
}

/// Shorthand for `host_profile(host).dns`.
pub fn dns_behaviour(host: &str) -> DnsBehaviour {
    host_profile(host).dns
}

/// The zone of [`ZONES`] that contains `host`, if any.
pub fn zone_of(host: &str) -> Option<&'static str> {
    let host = normalize_host(host);
    ZONES
        .iter()
        .copied()
        .find(|zone| host == *zone || host.ends_with(&format!(".{zone}")))
}

/// Lower-cases `host` and strips a trailing dot and a `:port`.
pub fn normalize_host(host: &str) -> String {
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// `count` ordinary host names `{stem}-{i:04}.{zone}`, e.g. `img-0042.photos.test`.
pub fn numbered_hosts(stem: &str, zone: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{stem}-{index:04}.{zone}"))
        .collect()
}

/// A deterministic population of `count` image host names with a realistic share of faults.
///
/// About 80 % are ordinary; the rest carry one DNS or robots flag each, chosen by `seed`.
pub fn image_hosts(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed ^ 0x686f_7374);
    (0..count)
        .map(|index| {
            let zone = rng.pick(IMAGE_ZONES);
            let roll = rng.below(100);
            let flag = match roll {
                0..=79 => "",
                80..=84 => "dead-",
                85..=86 => "servfail-",
                87 => "slow-",
                88 => "drop-",
                89 => "nodata-",
                90 => "private-",
                91..=93 => "nobots-",
                94 => "norobots-",
                95 => "robotserror-",
                96 => "noai-",
                97 => "noimageai-",
                98 => "noindex-",
                _ => "noimageindex-",
            };
            format!("{flag}img-{index:04}.{zone}")
        })
        .collect()
}

fn robots_tag_name(token: &str) -> &'static str {
    match token {
        "noai" => "noai",
        "noimageai" => "noimageai",
        "noindex" => "noindex",
        _ => "noimageindex",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_behaviour() {
        let cases = [
            ("img-0001.photos.test", DnsBehaviour::Loopback),
            ("dead-img-0001.photos.test", DnsBehaviour::NxDomain),
            ("SERVFAIL-x.cdn.test.", DnsBehaviour::ServFail),
            ("slow-nobots-x.img.test:8080", DnsBehaviour::Slow),
            ("drop-x.blog.test", DnsBehaviour::Drop),
            ("nodata-x.blog.test", DnsBehaviour::NoData),
            ("private-x.blog.test", DnsBehaviour::Private),
            ("metadata-x.blog.test", DnsBehaviour::Metadata),
            ("refused-x.blog.test", DnsBehaviour::Refused),
            ("img-dead.photos.test", DnsBehaviour::Loopback),
            ("example.com", DnsBehaviour::Refused),
            ("photos.test", DnsBehaviour::Loopback),
            ("evilphotos.test", DnsBehaviour::Refused),
        ];
        for (host, expected) in cases {
            assert_eq!(dns_behaviour(host), expected, "{host}");
        }
        let profile = host_profile("slow-nobots-noai-x.img.test");
        assert_eq!(profile.robots, RobotsPolicy::DisallowAll);
        assert_eq!(profile.robots_tag, Some("noai"));
        assert_eq!(
            host_profile("norobots-a.cdn.test").robots,
            RobotsPolicy::Missing
        );
    }

    #[test]
    fn generated_hosts_are_deterministic_and_mixed() {
        let hosts = image_hosts(2000, 1);
        assert_eq!(hosts, image_hosts(2000, 1));
        let n_dead = hosts
            .iter()
            .filter(|host| dns_behaviour(host) == DnsBehaviour::NxDomain)
            .count();
        let n_ok = hosts
            .iter()
            .filter(|host| dns_behaviour(host) == DnsBehaviour::Loopback)
            .count();
        assert!((60..=140).contains(&n_dead), "{n_dead}");
        assert!(n_ok > 1650, "{n_ok}");
        assert_eq!(
            numbered_hosts("img", "photos.test", 43)[42],
            "img-0042.photos.test"
        );
    }
}
