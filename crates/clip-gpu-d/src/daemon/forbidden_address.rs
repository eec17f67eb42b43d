//! Addresses a bundle download never connects to
//! ([`cah_protocol::bundle::is_forbidden_bundle_address`]: link-local, cloud metadata), whether
//! the bundle URL, a redirect or DNS names them. A bundle URL comes from a CPU client (an
//! external handoff), so a hostile one must not make the GPU host fetch its own instance
//! credentials.

use std::net::{IpAddr, SocketAddr};

use cah_protocol::bundle::is_forbidden_bundle_address;
use url::{Host, Url};

/// Whether `url`'s host is an address literal a download must not connect to (names are
/// checked by [`GuardedResolver`] when they are resolved).
pub(super) fn is_forbidden_literal(url: &Url) -> bool {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(_)) | None => return false,
    };
    is_forbidden_bundle_address(ip)
}

/// The system resolver without the answers a download must not connect to: a name that
/// resolves only to such addresses fails to resolve.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let answers: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed = allowed(name.as_str(), answers)?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// `answers` without the forbidden addresses; an error naming `name` when none is left.
fn allowed(
    name: &str,
    answers: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let total = answers.len();
    let allowed: Vec<SocketAddr> = answers
        .into_iter()
        .filter(|addr| !is_forbidden_bundle_address(addr.ip()))
        .collect();
    if allowed.is_empty() && total > 0 {
        return Err(format!(
            "{name} resolves only to link-local or cloud metadata addresses, which bundle downloads never connect to"
        )
        .into());
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().expect("ip"), 0)
    }

    #[test]
    fn literals() {
        for (text, forbidden) in [
            ("http://169.254.169.254/latest/meta-data/", true),
            ("http://[fe80::1]/x", true),
            ("http://[fd00:ec2::254]/latest/", true),
            ("http://[::ffff:169.254.169.254]/x", true),
            ("http://127.0.0.1:8080/b.tar", false),
            ("http://10.0.0.5/b.tar", false),
            ("https://store.test/b.tar", false),
        ] {
            let url = Url::parse(text).expect("url");
            assert_eq!(is_forbidden_literal(&url), forbidden, "{text}");
        }
    }

    #[test]
    fn resolved_answers_are_filtered() {
        let kept = allowed(
            "mixed.test",
            vec![addr("169.254.169.254"), addr("192.0.2.7"), addr("fe80::1")],
        )
        .expect("one answer is allowed");
        assert_eq!(kept, [addr("192.0.2.7")]);
        let error = allowed(
            "metadata.test",
            vec![addr("169.254.169.254"), addr("fd00:ec2::254")],
        )
        .expect_err("nothing is left");
        assert!(error.to_string().contains("metadata.test"), "{error}");
        assert_eq!(allowed("empty.test", Vec::new()).expect("no answers"), []);
    }

    #[tokio::test]
    async fn the_system_resolver_still_answers_loopback() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let addrs: Vec<SocketAddr> = GuardedResolver
            .resolve(name)
            .await
            .expect("localhost resolves")
            .collect();
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
        assert!(!addrs.is_empty());
    }
}
