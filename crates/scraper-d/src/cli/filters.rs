//! The link filter flags, shared by `extract` and `run` (same `SCRAPER_*` variables), and their
//! validation into a [`FilterConfig`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ScraperError;
use crate::filters::{Blocklist, FilterConfig};
use crate::language::{self, LanguageDetector};

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Minimum alt text length in characters, after cleanup.
    #[arg(long, env = "SCRAPER_MIN_ALT_CHARS", default_value_t = crate::filters::DEFAULT_MIN_ALT_CHARS)]
    pub min_alt_chars: usize,
    /// Alt texts are cut to this many characters.
    #[arg(long, env = "SCRAPER_MAX_ALT_CHARS", default_value_t = crate::filters::DEFAULT_MAX_ALT_CHARS)]
    pub max_alt_chars: usize,
    /// Longest image URL kept, in bytes.
    #[arg(long, env = "SCRAPER_MAX_URL_BYTES", default_value_t = crate::filters::DEFAULT_MAX_URL_BYTES)]
    pub max_url_bytes: usize,
    /// Comma-separated path extensions to drop (matched on the last path segment, case-insensitive); empty keeps all.
    #[arg(
        long,
        env = "SCRAPER_DROP_EXTENSIONS",
        default_value = "svg,gif,ico",
        value_delimiter = ','
    )]
    pub drop_extensions: Vec<String>,
    /// Keep pages whose HTTP status is not 2xx.
    #[arg(long, env = "SCRAPER_KEEP_NON_2XX", value_parser = super::EnvBool::off())]
    pub keep_non_2xx: bool,
    /// Keep image URLs whose host is an IP address.
    #[arg(long, env = "SCRAPER_ALLOW_IP_HOSTS", value_parser = super::EnvBool::off())]
    pub allow_ip_hosts: bool,
    /// Blocklist file: one URL, domain, SHA-256/MD5 URL hash or pair hash per line (the daemon also checks redirect targets against it).
    #[arg(long, env = "SCRAPER_BLOCKLIST")]
    pub blocklist: Option<PathBuf>,
    /// Language detector for the tags: whichlang (16 languages, fast), whatlang (69 languages, about 45x slower) or off.
    #[arg(
        long,
        env = "SCRAPER_LANGUAGE_DETECTOR",
        value_enum,
        default_value = "whichlang"
    )]
    pub language_detector: LanguageDetector,
    /// Comma-separated ISO 639-3 codes (eng,deu,...) to keep; all languages by default.
    #[arg(long, env = "SCRAPER_LANGUAGES", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Dedup only identical (URL, alt) pairs, not repeated URLs with another alt.
    #[arg(long, env = "SCRAPER_DEDUP_PAIRS_ONLY", value_parser = super::EnvBool::off())]
    pub dedup_pairs_only: bool,
}

impl FilterArgs {
    /// The filter settings; reads the blocklist file.
    pub fn config(&self) -> Result<FilterConfig, ScraperError> {
        let blocklist = self
            .blocklist
            .as_deref()
            .map(load_blocklist)
            .transpose()?
            .map(Arc::new);
        let languages: HashSet<String> = self
            .languages
            .iter()
            .map(|code| code.trim().to_ascii_lowercase())
            .filter(|code| !code.is_empty())
            .collect();
        check_languages(self.language_detector, &languages)?;
        Ok(FilterConfig {
            min_alt_chars: self.min_alt_chars,
            max_alt_chars: self.max_alt_chars,
            max_url_bytes: self.max_url_bytes,
            drop_extensions: self
                .drop_extensions
                .iter()
                .map(|extension| {
                    extension
                        .trim()
                        .trim_start_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|extension| !extension.is_empty())
                .collect(),
            keep_non_2xx: self.keep_non_2xx,
            allow_ip_hosts: self.allow_ip_hosts,
            blocklist,
            language_detector: self.language_detector,
            languages: (!languages.is_empty()).then_some(languages),
            dedup_urls: !self.dedup_pairs_only,
        })
    }
}

/// Reads `--blocklist`; a file that cannot be read is a configuration error that names the
/// flag (the bare IO error named neither it nor what to do).
fn load_blocklist(path: &Path) -> Result<Blocklist, ScraperError> {
    Blocklist::load(path).map_err(|error| match error {
        ScraperError::File { path, cause } => ScraperError::Config(format!(
            "--blocklist (SCRAPER_BLOCKLIST) {}: cannot read it: {cause}; fix the path, or \
             leave the flag unset for no blocklist",
            path.display()
        )),
        ScraperError::Blocklist { path, line, detail } => ScraperError::Config(format!(
            "--blocklist (SCRAPER_BLOCKLIST) {} line {line}: {detail}; fix or remove the line",
            path.display()
        )),
        other => other,
    })
}

/// A language filter must name codes the detector can give, or it silently drops everything.
fn check_languages(
    detector: LanguageDetector,
    languages: &HashSet<String>,
) -> Result<(), ScraperError> {
    if languages.is_empty() {
        return Ok(());
    }
    if detector == LanguageDetector::Off {
        return Err(ScraperError::Config(
            "--languages needs a language detector, but --language-detector is off: \
             every candidate would be dropped"
                .into(),
        ));
    }
    let mut unknown: Vec<&str> = languages
        .iter()
        .map(String::as_str)
        .filter(|code| !language::can_tag(detector, code))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    let hints: Vec<String> = unknown
        .iter()
        .filter_map(|code| language::three_letter_for(code).map(|long| format!("{code} -> {long}")))
        .collect();
    let detector_name = match detector {
        LanguageDetector::Whichlang => {
            "whichlang (ara cmn deu eng fra hin ita jpn kor nld por rus spa swe tur vie; --language-detector whatlang knows 69)"
        }
        LanguageDetector::Whatlang => "whatlang",
        LanguageDetector::Off => "off",
    };
    let mut message = format!(
        "--languages {}: not ISO 639-3 codes that {detector_name} gives",
        unknown.join(",")
    );
    if !hints.is_empty() {
        message.push_str(&format!("; use three-letter codes ({})", hints.join(", ")));
    }
    Err(ScraperError::Config(message))
}
