//! Creative Commons licence detection: one licence per page, applied to all its images.
//!
//! 2021 kept a running value, so a licence link applied only to the images after it
//! (reference §2.2 step 5). Here the first licence link anywhere on the page, `<head>` links
//! first, applies to every image of the page.

use crate::record::Link;

/// Longest licence URL looked at; longer ones are not plausible licence links.
const MAX_LICENSE_BYTES: usize = 512;

/// The page's licence: the first link whose URL is a Creative Commons licence or public-domain
/// tool, in its canonical form (see [`canonical_license`]).
pub fn page_license(head_links: &[Link<'_>], links: &[Link<'_>]) -> Option<String> {
    head_links
        .iter()
        .chain(links)
        .filter_map(|link| link.url)
        .find_map(canonical_license)
}

/// The canonical form of a Creative Commons licence URL, `None` when `url` is not one:
/// `https://creativecommons.org/licenses/by-sa/4.0/` for `http://www.CreativeCommons.org/licenses/by-sa/4.0/deed.de`.
///
/// The host must be `creativecommons.org` or one of its subdomains (not merely mentioned in a
/// query), reached by http, https or a protocol-relative `//`; the path must start with
/// `licenses/` or `publicdomain/` and name a tool. The scheme becomes https, the host bare,
/// the path lowercase, and the deed or legal-code page, query and fragment go: one licence,
/// one string, whichever page of it a site linked to.
pub fn canonical_license(url: &str) -> Option<String> {
    let url = url.trim();
    if url.len() > MAX_LICENSE_BYTES {
        return None;
    }
    let lower = url.to_ascii_lowercase();
    let rest = ["https://", "http://", "//"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    let host = authority
        .strip_suffix(":80")
        .or_else(|| authority.strip_suffix(":443"))
        .unwrap_or(authority);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host != "creativecommons.org" && !host.ends_with(".creativecommons.org") {
        return None;
    }
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    let kind = segments.next()?;
    if kind != "licenses" && kind != "publicdomain" {
        return None;
    }
    let tool: Vec<&str> = segments
        .take_while(|segment| !segment.starts_with("deed") && !segment.starts_with("legalcode"))
        .take(3)
        .collect();
    let plausible = |segment: &&str| {
        segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'+'))
    };
    if tool.is_empty() || !tool.iter().all(plausible) {
        return None;
    }
    Some(format!(
        "https://creativecommons.org/{kind}/{}/",
        tool.join("/")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str) -> Link<'_> {
        Link {
            path: Some("A@/href"),
            url: Some(url),
            alt: None,
        }
    }

    #[test]
    fn license_table() {
        let by = "https://creativecommons.org/licenses/by/4.0/";
        let cc0 = "https://creativecommons.org/publicdomain/zero/1.0/";
        let cases: Vec<(Vec<Link<'_>>, Vec<Link<'_>>, Option<&str>)> = vec![
            (vec![], vec![link("/a"), link("/b.jpg")], None),
            (vec![], vec![link("/b.jpg"), link(by)], Some(by)),
            (vec![], vec![link(by), link("/b.jpg")], Some(by)),
            (vec![link(cc0)], vec![link(by)], Some(cc0)),
            (
                vec![],
                vec![link(" https://creativecommons.org/licenses/by-sa/4.0/ ")],
                Some("https://creativecommons.org/licenses/by-sa/4.0/"),
            ),
            (
                vec![],
                vec![link("https://creativecommons.org/about/"), link(by)],
                Some(by),
            ),
            (
                vec![],
                vec![link(
                    "https://evil.test/?u=creativecommons.org/licenses/by/4.0/",
                )],
                None,
            ),
        ];
        for (head, links, expected) in &cases {
            assert_eq!(page_license(head, links).as_deref(), *expected);
        }
    }

    #[test]
    fn licence_urls_have_one_canonical_form() {
        let canonical = [
            (
                "https://creativecommons.org/licenses/by/4.0/",
                "licenses/by/4.0",
            ),
            (
                "http://creativecommons.org/licenses/by-nc-sa/3.0",
                "licenses/by-nc-sa/3.0",
            ),
            (
                "HTTPS://www.CreativeCommons.org/Licenses/BY/4.0/deed.de",
                "licenses/by/4.0",
            ),
            (
                "//creativecommons.org/licenses/by/2.0/fr/legalcode",
                "licenses/by/2.0/fr",
            ),
            (
                "https://creativecommons.org/licenses/by/4.0/legalcode.en#s1",
                "licenses/by/4.0",
            ),
            (
                "https://creativecommons.org/licenses/by/4.0/?ref=chooser-v1",
                "licenses/by/4.0",
            ),
            (
                "https://creativecommons.org./licenses/by/4.0/",
                "licenses/by/4.0",
            ),
            (
                "http://creativecommons.org:80/licenses//by/4.0//",
                "licenses/by/4.0",
            ),
            (
                "https://creativecommons.org/publicdomain/zero/1.0/legalcode",
                "publicdomain/zero/1.0",
            ),
            (
                "https://creativecommons.org/publicdomain/mark/1.0/deed",
                "publicdomain/mark/1.0",
            ),
            (
                "https://creativecommons.org/licenses/by/2.5/scotland/x/y",
                "licenses/by/2.5/scotland",
            ),
        ];
        for (url, path) in canonical {
            let expected = format!("https://creativecommons.org/{path}/");
            assert_eq!(
                canonical_license(url).as_deref(),
                Some(expected.as_str()),
                "{url}"
            );
        }
        let not_licences = [
            "https://creativecommons.org/",
            "https://creativecommons.org/licenses/",
            "https://creativecommons.org/licenses/deed.en",
            "https://creativecommons.org/about/licenses/by/4.0/",
            "https://creativecommons.org.evil.test/licenses/by/4.0/",
            "https://evilcreativecommons.org/licenses/by/4.0/",
            "https://creativecommons.org@evil.test/licenses/by/4.0/",
            "https://evil.test/licenses/by/4.0/?creativecommons.org",
            "https://creativecommons.org:8080/licenses/by/4.0/",
            "ftp://creativecommons.org/licenses/by/4.0/",
            "/licenses/by/4.0/",
            "https://creativecommons.org/licenses/by%2F/4.0/",
            "https://creativecommons.org/licenses/<script>/4.0/",
        ];
        for url in not_licences {
            assert_eq!(canonical_license(url), None, "{url}");
        }
        let long = format!(
            "https://creativecommons.org/licenses/by/4.0/{}",
            "x".repeat(600)
        );
        assert_eq!(canonical_license(&long), None);
    }
}
