//! Link filters: alt text, URL, extension, host, blocklist and language, each with a documented default.

mod alt;
mod blocklist;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use url::Url;

pub use alt::clean_alt;
pub use blocklist::Blocklist;

use crate::candidates::SkipReason;
use crate::language::LanguageDetector;
use crate::urls;

/// Default minimum alt length, in characters after cleanup (2021's last generation used 5).
pub const DEFAULT_MIN_ALT_CHARS: usize = 5;
/// Default alt cap, in characters (longer alts are cut, not dropped; 2021 G3 used 2000).
pub const DEFAULT_MAX_ALT_CHARS: usize = 2000;
/// Default longest image URL, in bytes after resolution.
pub const DEFAULT_MAX_URL_BYTES: usize = 2048;
/// Default dropped path extensions (compared case-insensitively with the last path segment's).
pub const DEFAULT_DROP_EXTENSIONS: &[&str] = &["svg", "gif", "ico"];

/// Filter settings. There is no `Default`: [`FilterConfig::standard`] names the defaults.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Minimum alt length in characters after cleanup.
    pub min_alt_chars: usize,
    /// Alt texts are cut to this many characters.
    pub max_alt_chars: usize,
    /// Longest kept URL in bytes.
    pub max_url_bytes: usize,
    /// Lowercase extensions whose URLs are dropped.
    pub drop_extensions: Vec<String>,
    /// Keep pages whose HTTP status is not 2xx (default false: they are skipped).
    pub keep_non_2xx: bool,
    /// Keep image URLs whose host is an IP literal (default false).
    pub allow_ip_hosts: bool,
    /// Drop URLs, domains and hashes on this list (default: none).
    pub blocklist: Option<Arc<Blocklist>>,
    /// Which detector tags candidates (default whichlang).
    pub language_detector: LanguageDetector,
    /// Keep only candidates whose detected language (ISO 639-3) is listed; `None` keeps all.
    pub languages: Option<HashSet<String>>,
    /// Also drop a repeated URL with another alt text (default true); pairs are always deduped.
    pub dedup_urls: bool,
}

impl FilterConfig {
    /// The documented defaults.
    pub fn standard() -> Self {
        Self {
            min_alt_chars: DEFAULT_MIN_ALT_CHARS,
            max_alt_chars: DEFAULT_MAX_ALT_CHARS,
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            drop_extensions: DEFAULT_DROP_EXTENSIONS
                .iter()
                .map(|extension| (*extension).to_owned())
                .collect(),
            keep_non_2xx: false,
            allow_ip_hosts: false,
            blocklist: None,
            language_detector: LanguageDetector::Whichlang,
            languages: None,
            dedup_urls: true,
        }
    }
}

/// A link that passed the alt and URL filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLink<'a> {
    pub url: String,
    pub alt: Cow<'a, str>,
}

/// Applies the alt and URL filters to one `IMG@/src` link, in the order of [`SkipReason`].
pub fn check_link<'a>(
    config: &FilterConfig,
    base: &Url,
    raw_url: Option<&str>,
    raw_alt: Option<&'a str>,
) -> Result<KeptLink<'a>, SkipReason> {
    let raw_alt = raw_alt.ok_or(SkipReason::AltMissing)?;
    let alt = clean_alt(raw_alt, config.max_alt_chars);
    if alt.chars().count() < config.min_alt_chars {
        return Err(SkipReason::AltTooShort);
    }
    let url = urls::resolve(base, raw_url.unwrap_or(""))?;
    let url_text: String = url.as_str().to_owned();
    if url_text.len() > config.max_url_bytes {
        return Err(SkipReason::UrlTooLong);
    }
    if let Some(extension) = urls::path_extension(&url)
        && config.drop_extensions.contains(&extension)
    {
        return Err(SkipReason::Extension);
    }
    urls::check_host(&url, config.allow_ip_hosts)?;
    if let Some(blocklist) = &config.blocklist {
        let pair = crate::dedup::pair_hash(&url_text, &alt);
        if blocklist.blocks(&url, &url_text, pair) {
            return Err(SkipReason::Blocklisted);
        }
    }
    Ok(KeptLink { url: url_text, alt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_filter_table() {
        let base = Url::parse("http://site.test/dir/page.html").expect("url");
        let mut config = FilterConfig::standard();
        config.blocklist = Some(Arc::new(Blocklist::parse("blocked.test\n").expect("list")));
        let long = format!("/{}.jpg", "x".repeat(2100));
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<(&'a str, &'a str), SkipReason>,
        );
        let cases: &[Case<'_>] = &[
            (
                Some("a.jpg"),
                Some("a red cat"),
                Ok(("http://site.test/dir/a.jpg", "a red cat")),
            ),
            (Some("a.jpg"), None, Err(SkipReason::AltMissing)),
            (Some("a.jpg"), Some(" cat "), Err(SkipReason::AltTooShort)),
            (
                Some("a.jpg"),
                Some("&amp;&amp;&amp;&amp;"),
                Err(SkipReason::AltTooShort),
            ),
            (
                Some("a.jpg"),
                Some("Fish &amp; chips"),
                Ok(("http://site.test/dir/a.jpg", "Fish & chips")),
            ),
            (None, Some("a red cat"), Err(SkipReason::UrlEmpty)),
            (
                Some("data:image/png;base64,xx"),
                Some("a red cat"),
                Err(SkipReason::DataUri),
            ),
            (
                Some("/logo.SVG"),
                Some("a red cat"),
                Err(SkipReason::Extension),
            ),
            (
                Some("/anim.gif?x=1"),
                Some("a red cat"),
                Err(SkipReason::Extension),
            ),
            (
                Some("/favicon.ico"),
                Some("a red cat"),
                Err(SkipReason::Extension),
            ),
            (
                Some("/gifts/a.jpg"),
                Some("a red cat"),
                Ok(("http://site.test/gifts/a.jpg", "a red cat")),
            ),
            (
                Some(long.as_str()),
                Some("a red cat"),
                Err(SkipReason::UrlTooLong),
            ),
            (
                Some("http://1.2.3.4/a.jpg"),
                Some("a red cat"),
                Err(SkipReason::IpHost),
            ),
            (
                Some("http://intranet/a.jpg"),
                Some("a red cat"),
                Err(SkipReason::Hostname),
            ),
            (
                Some("http://img.blocked.test/a.jpg"),
                Some("a red cat"),
                Err(SkipReason::Blocklisted),
            ),
        ];
        for (url, alt, expected) in cases {
            let got = check_link(&config, &base, *url, *alt);
            let got = got
                .as_ref()
                .map(|kept| (kept.url.as_str(), kept.alt.as_ref()))
                .map_err(|error| *error);
            assert_eq!(got, expected.clone(), "{url:?} {alt:?}");
        }
    }
}
