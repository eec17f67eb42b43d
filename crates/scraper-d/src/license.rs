//! Creative Commons licence detection: one licence per page, applied to all its images.
//!
//! 2021 kept a running value, so a licence link applied only to the images after it
//! (reference §2.2 step 5). Here the first licence link anywhere on the page, `<head>` links
//! first, applies to every image of the page.

use crate::record::Link;

/// URL fragments that mark a Creative Commons licence or public-domain dedication.
const LICENSE_MARKERS: &[&str] = &[
    "creativecommons.org/licenses/",
    "creativecommons.org/publicdomain/",
];

/// Longest licence URL kept; longer ones are not plausible licence links.
const MAX_LICENSE_BYTES: usize = 512;

/// The page's licence URL (trimmed), if any link points at a Creative Commons licence.
pub fn page_license<'a>(head_links: &'a [Link<'a>], links: &'a [Link<'a>]) -> Option<&'a str> {
    head_links
        .iter()
        .chain(links)
        .filter_map(|link| link.url)
        .map(str::trim)
        .find(|url| url.len() <= MAX_LICENSE_BYTES && is_license_url(url))
}

/// True for a Creative Commons licence URL.
pub fn is_license_url(url: &str) -> bool {
    LICENSE_MARKERS.iter().any(|marker| url.contains(marker))
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
                vec![link("https://creativecommons.org/about/")],
                None,
            ),
        ];
        for (head, links, expected) in &cases {
            assert_eq!(page_license(head, links), *expected);
        }
    }
}
