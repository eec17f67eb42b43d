//! Shared helpers: the builder's expected candidates turned into what our filters promise.
//!
//! The cah-testkit builder predicts candidates under the 2021 rule (see `cah_testkit::wat`).
//! Ours differs in three documented ways, applied here to its list: `.svg`, `.gif` and `.ico`
//! URLs are dropped; alt texts are cleaned (entities decoded, whitespace collapsed); the
//! licence is the first Creative Commons link anywhere on the page, not the running value.

use std::collections::HashMap;
use std::io::Read;

use cah_testkit::wat::{ExpectedCandidate, Page, WatConfig, page_for};
use scraper_d::filters::FilterConfig;
use scraper_d::{Candidate, Counts, ExtractConfig, Extractor, HalfJob, IdRange};

/// The fields we compare: (url, alt, page url, licence).
pub(crate) type Row = (String, String, String, Option<String>);

pub(crate) const HALF0: IdRange = IdRange {
    start: 0,
    end: 1_000_000,
};
pub(crate) const HALF1: IdRange = IdRange {
    start: 5_000_000,
    end: 6_000_000,
};

/// Both halves with the standard filters and a 1 MiB record cap.
pub(crate) fn both_halves() -> ExtractConfig {
    ExtractConfig {
        halves: vec![
            HalfJob::new(0, HALF0).expect("half 0"),
            HalfJob::new(1, HALF1).expect("half 1"),
        ],
        filters: FilterConfig::standard(),
        max_record_bytes: 1024 * 1024,
    }
}

/// Runs an extraction to the end; panics if the source fails.
pub(crate) fn extract(source: impl Read, config: ExtractConfig) -> (Vec<Candidate>, Counts) {
    let mut extractor = Extractor::new(source, config).expect("valid config");
    let candidates: Vec<Candidate> = extractor
        .by_ref()
        .map(|candidate| candidate.expect("the source does not fail"))
        .collect();
    (candidates, extractor.into_counts())
}

pub(crate) fn row(candidate: &Candidate) -> Row {
    (
        candidate.url.clone(),
        candidate.alt.clone(),
        candidate.page_url.clone(),
        candidate.license.clone(),
    )
}

/// The first Creative Commons link of a page, as our licence rule reads it.
pub(crate) fn page_license(page: &Page) -> Option<String> {
    page.html.as_ref().and_then(|html| {
        html.links
            .iter()
            .map(|link| link.url.trim())
            .find(|url| url.contains("creativecommons.org/licenses/"))
            .map(str::to_owned)
    })
}

/// Licences of the generated pages of `config`, by page URL.
pub(crate) fn generated_licenses(
    config: &WatConfig,
    n_pages: u64,
) -> HashMap<String, Option<String>> {
    let hosts = config.image_hosts();
    (0..n_pages)
        .map(|index| {
            let page = page_for(config, index, &hosts);
            let license = page_license(&page);
            (page.url, license)
        })
        .collect()
}

/// The builder's expectation under our rules.
pub(crate) fn adapt(
    expected: &[ExpectedCandidate],
    licenses: &HashMap<String, Option<String>>,
) -> Vec<Row> {
    expected
        .iter()
        .filter(|candidate| {
            let path = url::Url::parse(&candidate.url)
                .expect("builder urls parse")
                .path()
                .to_ascii_lowercase();
            let last = path.rsplit('/').next().unwrap_or("");
            !(last.ends_with(".svg") || last.ends_with(".gif") || last.ends_with(".ico"))
        })
        .map(|candidate| {
            let alt = candidate.alt_clean().replace("&amp;", "&");
            let license = licenses
                .get(&candidate.page_url)
                .cloned()
                .unwrap_or_else(|| candidate.license.clone());
            (
                candidate.url.clone(),
                alt,
                candidate.page_url.clone(),
                license,
            )
        })
        .collect()
}

/// The page index in a generated page URL (`.../post-F-INDEX.html`).
pub(crate) fn page_index(page_url: &str) -> u64 {
    let name = page_url
        .rsplit('/')
        .next()
        .and_then(|name| name.split(".html").next())
        .expect("generated page url");
    name.rsplit('-')
        .next()
        .and_then(|index| index.parse().ok())
        .expect("generated page index")
}
