//! One hand-made page per edge case, with the exact candidates we promise.

use std::time::SystemTime;

use cah_testkit::wat::{HeaderStyle, Html, Link, Page, WatWriter};
use scraper_d::SkipReason;

use super::support;

const LICENSE: &str = "https://creativecommons.org/licenses/by-sa/4.0/";

fn page(url: &str, base: Option<&str>, links: Vec<Link>) -> Page {
    Page {
        url: url.into(),
        status: 200,
        headers: vec![
            ("Set-Cookie".into(), "a=1".into()),
            ("Set-Cookie".into(), "b=2".into()),
        ],
        html: Some(Html {
            base: base.map(str::to_owned),
            links,
            ..Html::default()
        }),
    }
}

fn image(url: &str, alt: &str) -> Link {
    Link::image(url, Some(alt))
}

#[test]
fn edge_case_pages_give_exactly_these_candidates() {
    let long_alt = "word ".repeat(1000);
    let pages = vec![
        page(
            "http://site-0001.blog.test/dir/post.html?x=1",
            None,
            vec![
                image("a.jpg", "relative to the page"),
                image("../up.jpg", "dot dot segment"),
                image("//img-0001.cdn.test/p.jpg#frag", "protocol relative"),
                image("  /padded.jpg \n", "  padded   url\tand alt "),
                image("data:image/png;base64,AAAA", "a data uri"),
                image("javascript:void(0)", "a javascript uri"),
                image("mailto:x@y.test", "a mail link"),
                image("/logo.svg", "an svg logo"),
                image("/anim.GIF", "an animation"),
                image("/favicon.ico", "a favicon"),
                image("/gifts/box.jpg", "a gift box, not a gif"),
                image("/svg-icons/cat.png", "a cat icon in a png"),
                image("/short.jpg", "abc"),
                Link::image("/noalt.jpg", None),
                image("/empty.jpg", ""),
                image("/entities.jpg", "Fish &amp; chips &lt;3 caf&eacute;"),
                image("/long.jpg", &long_alt),
                image("a.jpg", "relative to the page"),
                image("a.jpg", "same url, another alt"),
                image("http://10.0.0.1/ip.jpg", "an ip address host"),
                image("http://intranet/x.jpg", "a single label host"),
                Link::license(LICENSE),
            ],
        ),
        page(
            "http://site-0002.news.test/a/b/c.html",
            Some("../base/"),
            vec![image("x.jpg", "relative to a relative base")],
        ),
        page(
            "http://site-0003.news.test/a/b.html",
            Some("http://cdn-0001.cdn.test/root/"),
            vec![
                image("y.jpg", "relative to an absolute base"),
                image("/z.jpg", "root relative to the base"),
            ],
        ),
    ];
    let mut wat = WatWriter::new(
        Vec::new(),
        "CC-MAIN-20241209000000-20241209030000-00000.warc.wat.gz",
        HeaderStyle::Arrays,
        SystemTime::UNIX_EPOCH,
        3,
    )
    .expect("writer");
    for page in &pages {
        wat.write_page(page).expect("page");
    }
    let bytes = wat.finish().expect("finish");
    let (candidates, counts) = support::extract(bytes.as_slice(), support::both_halves());
    let got: Vec<(&str, &str, Option<&str>)> = candidates
        .iter()
        .map(|c| (c.url.as_str(), c.alt.as_str(), c.license.as_deref()))
        .collect();
    let capped = long_alt.trim()[..2000].trim_end().to_owned();
    let lic = Some(LICENSE);
    assert_eq!(
        got,
        vec![
            (
                "http://site-0001.blog.test/dir/a.jpg",
                "relative to the page",
                lic
            ),
            ("http://site-0001.blog.test/up.jpg", "dot dot segment", lic),
            ("http://img-0001.cdn.test/p.jpg", "protocol relative", lic),
            (
                "http://site-0001.blog.test/padded.jpg",
                "padded url and alt",
                lic
            ),
            (
                "http://site-0001.blog.test/gifts/box.jpg",
                "a gift box, not a gif",
                lic
            ),
            (
                "http://site-0001.blog.test/svg-icons/cat.png",
                "a cat icon in a png",
                lic
            ),
            (
                "http://site-0001.blog.test/entities.jpg",
                "Fish & chips <3 café",
                lic
            ),
            ("http://site-0001.blog.test/long.jpg", capped.as_str(), lic),
            (
                "http://site-0002.news.test/a/base/x.jpg",
                "relative to a relative base",
                None
            ),
            (
                "http://cdn-0001.cdn.test/root/y.jpg",
                "relative to an absolute base",
                None
            ),
            (
                "http://cdn-0001.cdn.test/z.jpg",
                "root relative to the base",
                None
            ),
        ]
    );
    let expected_skips = [
        (SkipReason::DataUri, 1),
        (SkipReason::JavascriptUri, 1),
        (SkipReason::SchemeNotHttp, 1),
        (SkipReason::Extension, 3),
        (SkipReason::AltTooShort, 2),
        (SkipReason::AltMissing, 1),
        (SkipReason::DuplicatePair, 1),
        (SkipReason::DuplicateUrl, 1),
        (SkipReason::IpHost, 1),
        (SkipReason::Hostname, 1),
    ];
    for (reason, n) in expected_skips {
        assert_eq!(counts.skipped(reason), n, "{reason:?}: {counts:?}");
    }
    assert_eq!(counts.skipped.len(), expected_skips.len(), "{counts:?}");
    assert_eq!(candidates[7].alt.chars().count(), capped.chars().count());
    assert!(capped.chars().count() <= 2000);
}

fn wat_of(pages: &[Page]) -> Vec<u8> {
    let mut wat = WatWriter::new(
        Vec::new(),
        "CC-MAIN-20241209000000-20241209030000-00001.warc.wat.gz",
        HeaderStyle::Arrays,
        SystemTime::UNIX_EPOCH,
        3,
    )
    .expect("writer");
    for page in pages {
        wat.write_page(page).expect("page");
    }
    wat.finish().expect("finish")
}

#[test]
fn a_page_url_longer_than_the_url_cap_skips_its_record() {
    // Every candidate carries its page URL: an unbounded one times many links would be
    // unbounded output, so the record goes, counted once.
    let prefix = "http://site-0001.blog.test/";
    let at_cap = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    let over_cap = format!("{prefix}{}", "b".repeat(2049 - prefix.len()));
    let links = || {
        vec![
            image("/one.jpg", "the first image"),
            image("/two.jpg", "the second image"),
        ]
    };
    let pages = vec![page(&over_cap, None, links()), page(&at_cap, None, links())];
    let (candidates, counts) = support::extract(wat_of(&pages).as_slice(), support::both_halves());
    let page_url_lengths: Vec<usize> = candidates.iter().map(|c| c.page_url.len()).collect();
    assert_eq!(page_url_lengths, vec![2048, 2048]);
    assert!(candidates.iter().all(|c| c.page_url == at_cap));
    assert_eq!(counts.skipped(SkipReason::PageUrlTooLong), 1, "{counts:?}");
    assert_eq!(counts.skipped.len(), 1, "{counts:?}");
    assert_eq!(counts.image_links, 2, "{counts:?}");

    let mut config = support::both_halves();
    config.filters.max_url_bytes = 100;
    let (candidates, counts) = support::extract(wat_of(&pages).as_slice(), config);
    assert!(candidates.is_empty());
    assert_eq!(counts.skipped(SkipReason::PageUrlTooLong), 2, "{counts:?}");
}

#[test]
fn a_trailing_dot_on_the_host_is_the_same_url() {
    let pages = vec![page(
        "http://site-0001.blog.test/post.html",
        None,
        vec![
            image("http://img-0001.cdn.test/x.jpg", "the first alt text"),
            image("http://img-0001.cdn.test./x.jpg", "another alt text"),
            image("http://img-0001.cdn.test./y.jpg", "a third alt text"),
        ],
    )];
    let (candidates, counts) = support::extract(wat_of(&pages).as_slice(), support::both_halves());
    let urls: Vec<&str> = candidates.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        urls,
        vec![
            "http://img-0001.cdn.test/x.jpg",
            "http://img-0001.cdn.test/y.jpg"
        ]
    );
    assert_eq!(counts.skipped(SkipReason::DuplicateUrl), 1, "{counts:?}");
}

#[test]
fn a_base_that_is_not_http_falls_back_to_the_page_url() {
    let bases = [
        "javascript:void(0)",
        "data:text/html,x",
        "about:blank",
        "mailto:a@b.test",
        "file:///srv/",
        "ftp://files.test/pub/",
    ];
    let pages: Vec<Page> = bases
        .iter()
        .enumerate()
        .map(|(index, base)| {
            page(
                &format!("http://site-{index:04}.news.test/a/b.html"),
                Some(base),
                vec![image("x.jpg", "relative to the page")],
            )
        })
        .collect();
    let (candidates, counts) = support::extract(wat_of(&pages).as_slice(), support::both_halves());
    let urls: Vec<String> = candidates.iter().map(|c| c.url.clone()).collect();
    let expected: Vec<String> = (0..bases.len())
        .map(|index| format!("http://site-{index:04}.news.test/a/x.jpg"))
        .collect();
    assert_eq!(urls, expected, "{counts:?}");
}
