//! Image URLs: resolution against the page (RFC 3986 via `url`), scheme, length, extension and host checks.

use url::{Host, Url};

use crate::candidates::SkipReason;

/// The base URL of a page: `Head.Base` resolved against the page URL when that works and gives
/// an http(s) URL, else the page URL itself (what Common Crawl's own link extractor does; 2021
/// used a string dirname). A `javascript:`, `data:`, `about:`, `mailto:`, `file:` or `ftp:` base
/// is ignored, as HTML's frozen base URL rules ignore `data:` and `javascript:` ones, instead of
/// turning every relative `src` of the page into a link that cannot be fetched.
pub fn page_base(page_url: &Url, head_base: Option<&str>) -> Url {
    head_base
        .map(str::trim)
        .filter(|base| !base.is_empty())
        .and_then(|base| page_url.join(base).ok())
        .filter(|base| matches!(base.scheme(), "http" | "https"))
        .unwrap_or_else(|| page_url.clone())
}

/// Resolves a raw `src` value against `base`: trimmed, `data:`/`javascript:` refused by name,
/// http(s) only, fragment dropped, the trailing dot of a fully qualified host dropped
/// (`a.test.` is `a.test`, one URL for dedup). The length, extension and host checks are separate.
pub fn resolve(base: &Url, raw: &str) -> Result<Url, SkipReason> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(SkipReason::UrlEmpty);
    }
    if starts_with_ignore_case(raw, "data:") {
        return Err(SkipReason::DataUri);
    }
    if starts_with_ignore_case(raw, "javascript:") {
        return Err(SkipReason::JavascriptUri);
    }
    let mut url = base.join(raw).map_err(|_| SkipReason::UrlInvalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SkipReason::SchemeNotHttp);
    }
    url.set_fragment(None);
    drop_root_dot(&mut url);
    Ok(url)
}

/// The lowercase extension of the last path segment (`/a/b.JPG?x` gives `jpg`), if any, read
/// the way a server maps the path to a file: `;parameters` removed, then percent-decoded
/// (`/a.gif;jsessionid=1`, `/a%2Egif` and `/a.g%69f` give `gif`).
pub fn path_extension(url: &Url) -> Option<String> {
    let segment = url.path().rsplit('/').next()?;
    let segment = match segment.find(';') {
        Some(parameters) => &segment[..parameters],
        None => segment,
    };
    if !segment.contains('%') {
        let (stem, extension) = segment.rsplit_once('.')?;
        return (!stem.is_empty() && !extension.is_empty()).then(|| extension.to_ascii_lowercase());
    }
    let decoded = percent_decode(segment.as_bytes());
    let dot = decoded.iter().rposition(|byte| *byte == b'.')?;
    let (stem, extension) = (&decoded[..dot], &decoded[dot + 1..]);
    (!stem.is_empty() && !extension.is_empty())
        .then(|| String::from_utf8_lossy(extension).to_ascii_lowercase())
}

/// Checks that the host is a plausible public DNS name: at most 253 bytes, at least two labels
/// of 1 to 63 bytes of letters, digits, `-` and `_`, no label starting or ending with `-`, and a
/// top-level label that is not all digits. IP literals are refused unless `allow_ip`, and so is a
/// URL with a user name or password.
pub fn check_host(url: &Url, allow_ip: bool) -> Result<(), SkipReason> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SkipReason::Credentials);
    }
    match url.host() {
        None => Err(SkipReason::Hostname),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) if allow_ip => Ok(()),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => Err(SkipReason::IpHost),
        Some(Host::Domain(domain)) => {
            let domain = domain.strip_suffix('.').unwrap_or(domain);
            let labels: Vec<&str> = domain.split('.').collect();
            let label_ok = |label: &&str| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
            };
            let tld_ok = labels
                .last()
                .is_some_and(|tld| !tld.bytes().all(|byte| byte.is_ascii_digit()));
            // The resolver's own parser decides last: a name it rejects (an underscore where
            // IDNA does not take one, too long once encoded) is never asked for. Its IDNA pass
            // cost 3 % of extraction; plain lowercase letter-digit-hyphen names skip it.
            let dns_ok = || {
                plain_ldh(domain) || hickory_resolver::proto::rr::Name::from_utf8(domain).is_ok()
            };
            if domain.len() <= 253
                && labels.len() >= 2
                && labels.iter().all(label_ok)
                && tld_ok
                && dns_ok()
            {
                Ok(())
            } else {
                Err(SkipReason::Hostname)
            }
        }
    }
}

/// A name of lowercase ASCII letters, digits, hyphens and dots with no `xn--` label: IDNA
/// leaves it as it is, so the resolver takes it whenever [`check_host`]'s label rules do
/// (`tests::plain_names_are_names_the_resolver_takes` checks this against the resolver).
fn plain_ldh(domain: &str) -> bool {
    domain.bytes().all(|byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
    }) && !domain.split('.').any(|label| label.starts_with("xn--"))
}

/// Drops the one trailing dot of a domain (the DNS root label). `a.test..` keeps its dots: its
/// empty label fails [`check_host`].
fn drop_root_dot(url: &mut Url) {
    let Some(domain) = url.domain() else {
        return;
    };
    let Some(name) = domain.strip_suffix('.') else {
        return;
    };
    if name.is_empty() || name.ends_with('.') {
        return;
    }
    let name = name.to_owned();
    // A domain that parsed stays valid without its root dot; if the parser disagreed, the URL
    // keeps the dot and the host check judges it.
    let _ = url.set_host(Some(&name));
}

/// `%XX` sequences decoded; a `%` without two hex digits after it stays as it is.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |byte: Option<&u8>| byte.and_then(|byte| char::from(*byte).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        match (
            text[index],
            hex(text.get(index + 1)),
            hex(text.get(index + 2)),
        ) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits are at most 0xff.
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_names_the_resolver_takes() {
        // Every name of up to 7 bytes over a small alphabet that covers the edge cases (a
        // hyphen at either end, `--` inside, empty labels, `xn--` prefixes, digits): whenever
        // the shortcut says yes, and the label rules hold, the resolver's parser agrees.
        let alphabet = [b'a', b'x', b'n', b'-', b'.', b'0'];
        let mut checked = 0;
        let mut name = Vec::new();
        for length in 1..=7u32 {
            for mut code in 0..6usize.pow(length) {
                name.clear();
                for _ in 0..length {
                    name.push(alphabet[code % 6]);
                    code /= 6;
                }
                let domain = std::str::from_utf8(&name).expect("ascii");
                let Ok(parsed) = Url::parse(&format!("http://{domain}.test/")) else {
                    continue;
                };
                let Some(host) = parsed.domain() else {
                    continue;
                };
                let labels_ok = check_host(&parsed, false).is_ok();
                if plain_ldh(host) && labels_ok {
                    checked += 1;
                    assert!(
                        hickory_resolver::proto::rr::Name::from_utf8(host).is_ok(),
                        "{host}"
                    );
                }
            }
        }
        assert!(checked > 10_000, "only {checked} names checked");
        // What the shortcut leaves to the resolver's parser.
        assert!(!plain_ldh("xn--abc.test"));
        assert!(!plain_ldh("a_b.test"));
        assert!(!plain_ldh("A.test"));
        assert!(plain_ldh("a-b.c0.test"));
        // And what that parser refuses, still refused.
        assert_eq!(
            check_host(&url("http://a_b.test/"), false),
            Err(SkipReason::Hostname)
        );
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test url parses")
    }

    #[test]
    fn resolution_table() {
        let page = url("http://site.test:8080/dir/post.html?x=1#top");
        let cases: &[(Option<&str>, &str, Result<&str, SkipReason>)] = &[
            (None, "a.jpg", Ok("http://site.test:8080/dir/a.jpg")),
            (None, "../a.jpg", Ok("http://site.test:8080/a.jpg")),
            (None, "/a.jpg", Ok("http://site.test:8080/a.jpg")),
            (None, "//cdn.test/a.jpg", Ok("http://cdn.test/a.jpg")),
            (None, "?y=2", Ok("http://site.test:8080/dir/post.html?y=2")),
            (
                None,
                "  a.jpg#frag \n",
                Ok("http://site.test:8080/dir/a.jpg"),
            ),
            (
                None,
                "https://x.test/a b.jpg",
                Ok("https://x.test/a%20b.jpg"),
            ),
            (Some("/"), "a.jpg", Ok("http://site.test:8080/a.jpg")),
            (
                Some("sub/"),
                "a.jpg",
                Ok("http://site.test:8080/dir/sub/a.jpg"),
            ),
            (
                Some("https://cdn.test/x/"),
                "a.jpg",
                Ok("https://cdn.test/x/a.jpg"),
            ),
            (
                Some("http://[::1"),
                "a.jpg",
                Ok("http://site.test:8080/dir/a.jpg"),
            ),
            (None, "", Err(SkipReason::UrlEmpty)),
            (None, "   ", Err(SkipReason::UrlEmpty)),
            (None, "data:image/gif;base64,R0l", Err(SkipReason::DataUri)),
            (None, " DATA:image/png,x", Err(SkipReason::DataUri)),
            (None, "javascript:void(0)", Err(SkipReason::JavascriptUri)),
            (None, "mailto:a@b.test", Err(SkipReason::SchemeNotHttp)),
            (None, "ftp://f.test/a.jpg", Err(SkipReason::SchemeNotHttp)),
            (None, "http://[::1", Err(SkipReason::UrlInvalid)),
        ];
        for (base, raw, expected) in cases {
            let base = page_base(&page, *base);
            let got = resolve(&base, raw).map(String::from);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *expected,
                "{base} + {raw:?}"
            );
        }
    }

    #[test]
    fn extension_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://a.test/x.svg", Some("svg")),
            ("http://a.test/x.GIF?size=2", Some("gif")),
            ("http://a.test/svg/x.jpg", Some("jpg")),
            ("http://a.test/x.svg.png", Some("png")),
            ("http://a.test/image.gifts/x", None),
            ("http://a.test/x.jpg?f=a.svg", Some("jpg")),
            ("http://a.test/.ico", None),
            ("http://a.test/", None),
            ("http://a.test/x.", None),
            // Matrix parameters go, and the segment is percent-decoded first.
            ("http://a.test/a.gif;jsessionid=1", Some("gif")),
            ("http://a.test/a.GIF;x=1;y=2?q=1", Some("gif")),
            ("http://a.test/a%2Egif", Some("gif")),
            ("http://a.test/a%2egif", Some("gif")),
            ("http://a.test/a.g%69f", Some("gif")),
            ("http://a.test/a.%53%56%47", Some("svg")),
            ("http://a.test/a%2Ejpg;x.gif", Some("jpg")),
            ("http://a.test/a.jpg%3Bx.gif", Some("gif")),
            ("http://a.test/%2Egif", None),
            ("http://a.test/;x.gif", None),
            ("http://a.test/a.gif%", Some("gif%")),
            ("http://a.test/a.%E6%9D%B1", Some("東")),
        ];
        for (text, expected) in cases {
            assert_eq!(path_extension(&url(text)).as_deref(), *expected, "{text}");
        }
    }

    #[test]
    fn a_base_that_is_not_http_is_ignored() {
        let page = url("https://site.test/dir/post.html");
        for base in [
            "javascript:void(0)",
            "data:text/html,x",
            "about:blank",
            "mailto:a@b.test",
            "file:///tmp/",
            "ftp://f.test/pub/",
            " JavaScript:alert(1) ",
        ] {
            let got = page_base(&page, Some(base));
            assert_eq!(got.as_str(), page.as_str(), "{base:?}");
            assert_eq!(
                resolve(&got, "a.jpg").map(String::from),
                Ok("https://site.test/dir/a.jpg".to_owned()),
                "{base:?}"
            );
        }
        let http_base = page_base(&page, Some("http://cdn.test/x/"));
        assert_eq!(http_base.as_str(), "http://cdn.test/x/");
    }

    #[test]
    fn a_trailing_dot_leaves_the_host() {
        let base = url("http://site.test/");
        let cases: &[(&str, Result<&str, SkipReason>)] = &[
            ("http://a.test./x.jpg", Ok("http://a.test/x.jpg")),
            ("http://A.Test.:8080/x.jpg", Ok("http://a.test:8080/x.jpg")),
            ("//cdn.test./x.jpg?q=1", Ok("http://cdn.test/x.jpg?q=1")),
            ("http://a.test/x.jpg", Ok("http://a.test/x.jpg")),
            ("http://1.2.3.4./x.jpg", Ok("http://1.2.3.4/x.jpg")),
        ];
        for (raw, expected) in cases {
            let got = resolve(&base, raw).map(String::from);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "{raw}");
        }
        // Only the root label's dot goes: an empty label before it still fails the host check.
        let doubled = resolve(&base, "http://a.test../x.jpg").expect("resolves");
        assert_eq!(check_host(&doubled, false), Err(SkipReason::Hostname));
    }

    #[test]
    fn host_table() {
        let cases: &[(&str, bool, Result<(), SkipReason>)] = &[
            ("http://img-0001.photos.test/a.jpg", false, Ok(())),
            ("http://xn--bcher-kva.example/a.jpg", false, Ok(())),
            // Names the resolver cannot ask for: no lookup, never a resolver error.
            (
                "http://my_host.example.com/a.jpg",
                false,
                Err(SkipReason::Hostname),
            ),
            (
                "http://a1_.example.com/a.jpg",
                false,
                Err(SkipReason::Hostname),
            ),
            ("http://localhost/a.jpg", false, Err(SkipReason::Hostname)),
            ("http://a.b-/a.jpg", false, Err(SkipReason::Hostname)),
            ("http://-a.test/a.jpg", false, Err(SkipReason::Hostname)),
            ("http://127.0.0.1/a.jpg", false, Err(SkipReason::IpHost)),
            ("http://[::1]/a.jpg", false, Err(SkipReason::IpHost)),
            ("http://127.0.0.1/a.jpg", true, Ok(())),
            (
                "http://user:secret@a.test/a.jpg",
                false,
                Err(SkipReason::Credentials),
            ),
            (
                "http://user@a.test/a.jpg",
                false,
                Err(SkipReason::Credentials),
            ),
            (
                "http://:secret@a.test/a.jpg",
                false,
                Err(SkipReason::Credentials),
            ),
        ];
        for (text, allow_ip, expected) in cases {
            assert_eq!(check_host(&url(text), *allow_ip), *expected, "{text}");
        }
        for length in [253, 254, 255] {
            // Labels of 63 letters, the last shorter, then `.test`: `length` bytes in all.
            let mut name = String::new();
            while length - 5 - name.len() > 63 {
                name.push_str(&"a".repeat(63));
                name.push('.');
            }
            name.push_str(&"b".repeat(length - 5 - name.len()));
            name.push_str(".test");
            assert_eq!(name.len(), length);
            let expected = if length <= 253 {
                Ok(())
            } else {
                Err(SkipReason::Hostname)
            };
            let text = format!("http://{name}/a.jpg");
            assert_eq!(check_host(&url(&text), false), expected, "{length}");
        }
    }
}
