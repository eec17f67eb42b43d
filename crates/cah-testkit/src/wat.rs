//! Common Crawl WAT files for the test web, with the exact candidate list a scraper should find.
//!
//! Files follow reference §3: WARC/1.0 records, one gzip member per record, the `warcinfo`
//! record first, then three `metadata` records per capture (request, response, crawler metadata)
//! whose JSON envelope carries `HTML-Metadata.Links` with `IMG@/src` entries.
//! [`HeaderStyle`] picks the header shape before or after `CC-MAIN-2024-51`.
//!
//! **The candidate rule** behind [`ExpectedCandidate`] (the 2021 scraper's rule, tightened by §3.4):
//! only `response` records with a 2xx status and `HTML-Metadata`; only links whose `path` is
//! `IMG@/src` and whose `alt` key exists with a non-blank value; the `url` is trimmed and resolved
//! against `Head.Base` (itself resolved against the page URL) or the page URL; only `http`/`https`
//! results, fragment dropped; the licence is the most recent earlier link on the page whose URL
//! contains `creativecommons.org/licenses/`. Generated files never repeat an image URL, so URL
//! de-duplication does not change the list, and hostile records contribute nothing.

mod envelope;
mod generate;
mod hostile;
mod pages;
mod record;

use std::io::Write;

pub use generate::{FaultMix, WatConfig, WatSummary, generate, generate_to_vec};
pub use hostile::Hostility;
pub use pages::page_for;
pub use record::WatWriter;

use crate::web::scheme::{self, Expected};

/// Shape of header maps in the JSON envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// Before `CC-MAIN-2024-51`: every header is one string; a repeated header keeps only its last value.
    Legacy,
    /// From `CC-MAIN-2024-51` (December 2024): a repeated header is a JSON array of strings.
    Arrays,
}

impl HeaderStyle {
    /// The style Common Crawl used for a crawl id such as `CC-MAIN-2024-51`.
    pub fn for_crawl(crawl: &str) -> Self {
        let mut parts = crawl.trim_start_matches("CC-MAIN-").split('-');
        let year: u32 = parts.next().and_then(|year| year.parse().ok()).unwrap_or(0);
        let week: u32 = parts.next().and_then(|week| week.parse().ok()).unwrap_or(0);
        if (year, week) >= (2024, 51) {
            Self::Arrays
        } else {
            Self::Legacy
        }
    }
}

/// One captured page, as the WAT extractor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// `WARC-Target-URI`.
    pub url: String,
    /// HTTP status of the capture.
    pub status: u16,
    /// HTTP response headers in order; names may repeat.
    pub headers: Vec<(String, String)>,
    /// `None` for a non-HTML payload (no `HTML-Metadata` at all).
    pub html: Option<Html>,
}

/// What the extractor found in an HTML payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Html {
    pub title: Option<String>,
    /// Raw `<base href>`, as written in the page.
    pub base: Option<String>,
    pub metas: Vec<(String, String)>,
    /// `Links`, in page order.
    pub links: Vec<Link>,
}

/// One entry of `HTML-Metadata.Links`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `IMG@/src`, `A@/href`, ...
    pub path: String,
    /// The raw attribute value.
    pub url: String,
    /// `alt`, present only when the attribute existed (`Some("")` differs from `None`).
    pub alt: Option<String>,
    pub title: Option<String>,
    /// Anchor text.
    pub text: Option<String>,
    pub rel: Option<String>,
}

/// A pair a scraper should extract from a WAT file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCandidate {
    /// The resolved image URL.
    pub url: String,
    /// The `url` value as written in the WAT.
    pub raw_url: String,
    /// The raw `alt` value (never blank).
    pub alt: String,
    /// `WARC-Target-URI` of the page.
    pub page_url: String,
    /// The running Creative Commons licence URL, if any.
    pub license: Option<String>,
    /// What a robots-respecting client reaches when it downloads `url` from the test web.
    pub outcome: Expected,
}

impl Link {
    pub fn image(url: impl Into<String>, alt: Option<&str>) -> Self {
        Self {
            path: "IMG@/src".into(),
            url: url.into(),
            alt: alt.map(str::to_owned),
            title: None,
            text: None,
            rel: None,
        }
    }

    pub fn anchor(url: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: "A@/href".into(),
            url: url.into(),
            alt: None,
            title: None,
            text: Some(text.into()),
            rel: None,
        }
    }

    /// An `<a rel="license">` to a Creative Commons licence.
    pub fn license(url: impl Into<String>) -> Self {
        Self {
            rel: Some("license".into()),
            ..Self::anchor(url, "Creative Commons License")
        }
    }
}

impl ExpectedCandidate {
    /// `alt` with runs of whitespace collapsed to one space and trimmed.
    pub fn alt_clean(&self) -> String {
        self.alt.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The candidates of one page under the rule in this module's documentation.
pub fn expected_candidates(page: &Page) -> Vec<ExpectedCandidate> {
    let Some(html) = &page.html else {
        return Vec::new();
    };
    if !(200..300).contains(&page.status) {
        return Vec::new();
    }
    let Ok(page_url) = url::Url::parse(&page.url) else {
        return Vec::new();
    };
    let base = html
        .base
        .as_deref()
        .and_then(|base| page_url.join(base.trim()).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut license = None;
    let mut candidates = Vec::new();
    for link in &html.links {
        if link.url.contains("creativecommons.org/licenses/") {
            license = Some(link.url.clone());
            continue;
        }
        let Some(alt) = link.alt.as_deref().filter(|alt| !alt.trim().is_empty()) else {
            continue;
        };
        if link.path != "IMG@/src" {
            continue;
        }
        let Some(resolved) = resolve_image_url(&base, &link.url) else {
            continue;
        };
        candidates.push(ExpectedCandidate {
            outcome: scheme::classify(&resolved),
            url: resolved,
            raw_url: link.url.clone(),
            alt: alt.to_owned(),
            page_url: page.url.clone(),
            license: license.clone(),
        });
    }
    candidates
}

/// Resolves an `IMG@/src` value against `base`: trimmed, http(s) only, fragment dropped, at most 2048 bytes.
pub fn resolve_image_url(base: &url::Url, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let mut resolved = base.join(raw).ok()?;
    if !matches!(resolved.scheme(), "http" | "https") || resolved.host_str().is_none() {
        return None;
    }
    resolved.set_fragment(None);
    let resolved = resolved.to_string();
    (resolved.len() <= 2048).then_some(resolved)
}

/// Counts bytes passing through a writer.
pub(crate) struct CountingWriter<W> {
    pub(crate) inner: W,
    pub(crate) n_bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.n_bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(base: Option<&str>, links: Vec<Link>) -> Page {
        Page {
            url: "http://site-0001.blog.test:8080/dir/post.html?x=1".into(),
            status: 200,
            headers: Vec::new(),
            html: Some(Html {
                base: base.map(str::to_owned),
                links,
                ..Html::default()
            }),
        }
    }

    #[test]
    fn candidate_rule_table() {
        let links = vec![
            Link::image("ok/a.jpg", Some("a red bicycle")),
            Link::image("/ok/b.jpg", None),
            Link::image("/ok/c.jpg", Some("")),
            Link::image("/ok/d.jpg", Some("  \n ")),
            Link::license("https://creativecommons.org/licenses/by-sa/4.0/"),
            Link::image("  //img-0002.cdn.test:8080/ok/e.png#frag  ", Some("a cat")),
            Link::image("data:image/gif;base64,R0lGOD", Some("pixel")),
            Link::image("javascript:void(0)", Some("script")),
            Link::anchor("/about", "About"),
            Link {
                alt: Some("anchor with alt".into()),
                ..Link::anchor("/ok/f.jpg", "x")
            },
            Link::image("https://img-0003.photos.test/ok/g.webp", Some("été 日本")),
        ];
        let candidates = expected_candidates(&page(None, links.clone()));
        let got: Vec<(&str, &str, Option<&str>)> = candidates
            .iter()
            .map(|c| (c.url.as_str(), c.alt.as_str(), c.license.as_deref()))
            .collect();
        let license = Some("https://creativecommons.org/licenses/by-sa/4.0/");
        assert_eq!(
            got,
            vec![
                (
                    "http://site-0001.blog.test:8080/dir/ok/a.jpg",
                    "a red bicycle",
                    None
                ),
                ("http://img-0002.cdn.test:8080/ok/e.png", "a cat", license),
                (
                    "https://img-0003.photos.test/ok/g.webp",
                    "été 日本",
                    license
                ),
            ]
        );
        assert_eq!(
            candidates[1].raw_url,
            "  //img-0002.cdn.test:8080/ok/e.png#frag  "
        );

        let with_base = expected_candidates(&page(Some("/"), links.clone()));
        assert_eq!(with_base[0].url, "http://site-0001.blog.test:8080/ok/a.jpg");
        let absolute_base =
            expected_candidates(&page(Some("http://cdn-1.cdn.test:8080/x/"), links.clone()));
        assert_eq!(
            absolute_base[0].url,
            "http://cdn-1.cdn.test:8080/x/ok/a.jpg"
        );

        let mut not_found = page(None, links);
        not_found.status = 404;
        assert!(expected_candidates(&not_found).is_empty());
    }

    #[test]
    fn header_style_follows_the_crawl() {
        assert_eq!(
            HeaderStyle::for_crawl("CC-MAIN-2024-46"),
            HeaderStyle::Legacy
        );
        assert_eq!(
            HeaderStyle::for_crawl("CC-MAIN-2024-51"),
            HeaderStyle::Arrays
        );
        assert_eq!(
            HeaderStyle::for_crawl("CC-MAIN-2025-05"),
            HeaderStyle::Arrays
        );
        assert_eq!(
            HeaderStyle::for_crawl("CC-MAIN-2021-25"),
            HeaderStyle::Legacy
        );
    }
}
