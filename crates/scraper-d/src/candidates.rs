//! What extraction produces: [`Candidate`]s, and [`Counts`] of everything it skipped, by reason.

use std::collections::BTreeMap;

/// An image–text pair found in a WAT file, ready for dedup and download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// From the job's ID range of this candidate's half; never reused.
    pub sample_id: u64,
    /// Which half of the WAT (0 or 1) the page's record belongs to.
    pub half: u8,
    /// The resolved image URL (RFC 3986, fragment dropped).
    pub url: String,
    /// The cleaned alt text.
    pub alt: String,
    /// `WARC-Target-URI` of the page (at most the URL cap long; longer ones skip the page).
    pub page_url: String,
    /// A Creative Commons licence URL found anywhere on the page.
    pub license: Option<String>,
    /// ISO 639-3 code of the alt text's language (whatlang's best guess), if it detected one.
    pub language: Option<String>,
    /// [`crate::dedup::pair_hash`] of `url` and `alt`.
    #[serde(skip)]
    pub pair_hash: u64,
}

/// Why a record, a link or a candidate was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    // Damage to the file.
    /// A gzip member failed to inflate or its CRC/length did not match.
    GzipCorrupt,
    /// The file ended inside a gzip member.
    GzipTruncated,
    /// Bytes that were not a gzip header were skipped to reach the next member.
    GzipGarbage,
    /// A member inflated to more than the record size cap.
    RecordTooLarge,
    /// A record without a `WARC/` line, a blank line or a valid `Content-Length`.
    BadWarcHeader,
    /// A record whose `Content-Length` runs past its member.
    TruncatedRecord,
    /// A record body that is not valid UTF-8.
    InvalidUtf8,
    /// A record body that is not valid JSON.
    InvalidJson,
    /// A JSON envelope without `Envelope.WARC-Header-Metadata` or a usable `WARC-Target-URI`.
    MissingKeys,
    // Pages.
    /// A `response` whose HTTP status is not 2xx.
    Non2xxStatus,
    /// A `WARC-Target-URI` longer than the URL length cap (every candidate would carry it).
    PageUrlTooLong,
    // Links (each `IMG@/src` link of a kept page).
    /// No `alt` attribute.
    AltMissing,
    /// Alt text shorter than the minimum after cleanup.
    AltTooShort,
    /// Empty `src`.
    UrlEmpty,
    /// A `data:` URI.
    DataUri,
    /// A `javascript:` URI.
    JavascriptUri,
    /// `src` does not resolve to a URL.
    UrlInvalid,
    /// A scheme other than http and https.
    SchemeNotHttp,
    /// Longer than the URL length cap.
    UrlTooLong,
    /// A dropped path extension (`.svg`, `.gif`, `.ico` by default).
    Extension,
    /// The host is not a plausible DNS name.
    Hostname,
    /// The host is an IP address literal.
    IpHost,
    /// The URL carries a user name or password (`http://user:secret@host/`): it would be sent
    /// with every request and stored with the sample.
    Credentials,
    /// The URL, its domain or its pair hash is on the blocklist.
    Blocklisted,
    /// The alt text's language is not among the kept ones.
    Language,
    /// The URL was already a candidate of this job.
    DuplicateUrl,
    /// The (URL, alt) pair was already a candidate of this job.
    DuplicatePair,
    /// The job's ID range was used up.
    IdsExhausted,
    /// The tracker's `parsed` set already held the pair (cross-job dedup).
    SeenByTracker,
}

impl SkipReason {
    /// The snake_case name used in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GzipCorrupt => "gzip_corrupt",
            Self::GzipTruncated => "gzip_truncated",
            Self::GzipGarbage => "gzip_garbage",
            Self::RecordTooLarge => "record_too_large",
            Self::BadWarcHeader => "bad_warc_header",
            Self::TruncatedRecord => "truncated_record",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::MissingKeys => "missing_keys",
            Self::Non2xxStatus => "non_2xx_status",
            Self::PageUrlTooLong => "page_url_too_long",
            Self::AltMissing => "alt_missing",
            Self::AltTooShort => "alt_too_short",
            Self::UrlEmpty => "url_empty",
            Self::DataUri => "data_uri",
            Self::JavascriptUri => "javascript_uri",
            Self::UrlInvalid => "url_invalid",
            Self::SchemeNotHttp => "scheme_not_http",
            Self::UrlTooLong => "url_too_long",
            Self::Extension => "extension",
            Self::Hostname => "hostname",
            Self::IpHost => "ip_host",
            Self::Credentials => "credentials",
            Self::Blocklisted => "blocklisted",
            Self::Language => "language",
            Self::DuplicateUrl => "duplicate_url",
            Self::DuplicatePair => "duplicate_pair",
            Self::IdsExhausted => "ids_exhausted",
            Self::SeenByTracker => "seen_by_tracker",
        }
    }
}

/// Totals of one extraction.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Compressed bytes read.
    pub bytes_compressed: u64,
    /// Bytes after inflating.
    pub bytes_decompressed: u64,
    /// WARC records framed (damaged ones not included).
    pub records: u64,
    /// Records of a half this extraction does not serve (not parsed).
    pub records_other_half: u64,
    /// Records without `IMG@/src` in their bytes (not parsed: they cannot yield candidates).
    pub records_without_images: u64,
    /// `response` records parsed.
    pub responses: u64,
    /// `IMG@/src` links seen on kept pages.
    pub image_links: u64,
    /// Candidates emitted.
    pub candidates: u64,
    /// Download resumptions with a Range request (HTTP sources).
    pub resumes: u64,
    /// Skips by reason; see [`SkipReason`].
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// Counts one skip.
    pub fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason.as_str()).or_default() += 1;
    }

    /// How many times `reason` was counted.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(reason.as_str()).copied().unwrap_or(0)
    }
}
