//! The extraction pipeline: WAT records in, [`Candidate`]s out, as an iterator over any byte source.
//!
//! Per record: keep the halves asked for (record `i` is half `i mod 2`), skip records without
//! `"IMG@` in their bytes before any JSON parsing (not the whole `"IMG@/src"`: JSON may write
//! the slash as `\/`), parse the envelope, keep `response`
//! records with a 2xx status and a page URL within the URL cap, resolve the page base, find the
//! page licence, then filter each `IMG@/src` link (see [`crate::filters`]), tag its language,
//! dedup within the half and take the next sample ID of the half.

use std::collections::VecDeque;
use std::io::Read;

use memchr::memmem::Finder;
use url::Url;

use crate::candidates::{Candidate, Counts, SkipReason};
use crate::dedup::{SeenInJob, pair_hash};
use crate::error::ScraperError;
use crate::filters::{self, FilterConfig};
use crate::halves::{HalfJob, IdAllocator};
use crate::record::{self, Document, Parsed};
use crate::wat::{RecordEvent, WatReader, WatRecord};
use crate::{language, license, urls};

/// Default cap on one record's decompressed size (16 MiB); larger ones are counted and skipped.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// What to extract.
#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// One half, or both (each with its own ID range).
    pub halves: Vec<HalfJob>,
    pub filters: FilterConfig,
    /// Records inflating to more than this are skipped as `record_too_large`.
    pub max_record_bytes: usize,
}

/// Extracts candidates from a WAT byte stream; an `Iterator` of `Result<Candidate, _>` where an
/// `Err` (the source failed) ends the iteration. Bad input is counted in [`Extractor::counts`].
pub struct Extractor<R> {
    reader: WatReader<R>,
    state: State,
    pending: VecDeque<Candidate>,
    finished: bool,
    stop_when_ids_exhausted: bool,
}

struct State {
    filters: FilterConfig,
    halves: [Option<HalfState>; 2],
    counts: Counts,
    images: Finder<'static>,
}

struct HalfState {
    ids: IdAllocator,
    seen: SeenInJob,
}

impl<R: Read> Extractor<R> {
    /// An extractor over the compressed bytes of a `.warc.wat.gz`.
    pub fn new(source: R, config: ExtractConfig) -> Result<Self, ScraperError> {
        if config.halves.is_empty() {
            return Err(ScraperError::Config("no half to extract".into()));
        }
        if let [a, b] = config.halves.as_slice() {
            let overlap = a.ids.start < b.ids.end && b.ids.start < a.ids.end;
            if overlap && a.ids.start < a.ids.end && b.ids.start < b.ids.end {
                // Sample IDs are never reused: the two halves must not share any.
                return Err(ScraperError::Config(format!(
                    "the ID ranges of half {} and half {} overlap",
                    a.half, b.half
                )));
            }
        }
        let mut halves = [None, None];
        for half in &config.halves {
            let slot = &mut halves[usize::from(half.half & 1)];
            if slot.is_some() {
                return Err(ScraperError::Config(format!(
                    "half {} given twice",
                    half.half
                )));
            }
            *slot = Some(HalfState {
                ids: IdAllocator::new(half.ids),
                seen: SeenInJob::default(),
            });
        }
        Ok(Self {
            reader: WatReader::new(source, config.max_record_bytes),
            state: State {
                filters: config.filters,
                halves,
                counts: Counts::default(),
                images: Finder::new(b"\"IMG@"),
            },
            pending: VecDeque::new(),
            finished: false,
            stop_when_ids_exhausted: false,
        })
    }

    /// Stops reading once every half has used up its sample IDs (the daemon: nothing later in
    /// the file can become a candidate, and an endless body would be read for ever); without
    /// it the whole file is read and the rest counted as `ids_exhausted`.
    pub fn stop_when_ids_exhausted(mut self) -> Self {
        self.stop_when_ids_exhausted = true;
        self
    }

    /// Compressed bytes read so far (for progress reports).
    pub fn compressed_bytes(&self) -> u64 {
        self.reader.compressed_bytes()
    }

    /// Counts so far (final once the iterator returned `None`).
    pub fn counts(&self) -> &Counts {
        &self.state.counts
    }

    /// Takes the counts out (for callers that consumed the iterator by value elsewhere).
    pub fn into_counts(self) -> Counts {
        self.state.counts
    }

    /// Records how many times an HTTP source resumed (see [`crate::source::HttpReader::resumes`]).
    pub fn set_resumes(&mut self, resumes: u64) {
        self.state.counts.resumes = resumes;
    }

    fn sync_byte_counts(&mut self) {
        self.state.counts.bytes_compressed = self.reader.compressed_bytes();
        self.state.counts.bytes_decompressed = self.reader.decompressed_bytes();
    }
}

impl<R: Read> Iterator for Extractor<R> {
    type Item = Result<Candidate, ScraperError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(candidate) = self.pending.pop_front() {
                return Some(Ok(candidate));
            }
            if self.finished {
                return None;
            }
            match self.reader.next_event() {
                Ok(Some(RecordEvent::Record(record))) => {
                    self.state.record(record, &mut self.pending);
                    if self.stop_when_ids_exhausted && self.state.ids_exhausted() {
                        self.finished = true;
                        self.sync_byte_counts();
                    }
                }
                Ok(Some(RecordEvent::Skipped(reason))) => self.state.counts.skip(reason),
                Ok(None) => {
                    self.finished = true;
                    self.sync_byte_counts();
                }
                Err(error) => {
                    self.finished = true;
                    self.sync_byte_counts();
                    return Some(Err(ScraperError::Source(error)));
                }
            }
        }
    }
}

impl State {
    /// Whether every extracted half has used up its sample IDs.
    fn ids_exhausted(&self) -> bool {
        self.halves
            .iter()
            .flatten()
            .all(|half| half.ids.exhausted())
    }

    fn record(&mut self, record: WatRecord<'_>, out: &mut VecDeque<Candidate>) {
        self.counts.records += 1;
        let half = (record.index % 2) as u8;
        if self.halves[usize::from(half)].is_none() {
            self.counts.records_other_half += 1;
            return;
        }
        if record.warc_type != b"metadata" {
            return;
        }
        // A JSON envelope starts with `{`: this catches binary payloads without parsing them.
        if record.body.trim_ascii_start().first() != Some(&b'{') {
            return self.counts.skip(SkipReason::InvalidJson);
        }
        if self.images.find(record.body).is_none() {
            self.counts.records_without_images += 1;
            return;
        }
        let with_licenses = record::LICENSE_URL.find(record.body).is_some();
        let document = match Document::parse(record.body) {
            Ok(document) => document,
            Err(reason) => return self.counts.skip(reason),
        };
        let page = match document.page(with_licenses) {
            Ok(Parsed::Response(page)) => page,
            Ok(Parsed::NotResponse) => return,
            Err(reason) => return self.counts.skip(reason),
        };
        self.counts.responses += 1;
        if !self.filters.keep_non_2xx {
            let status = page
                .status
                .and_then(|status| status.trim().parse::<u16>().ok());
            if !status.is_some_and(|status| (200..300).contains(&status)) {
                return self.counts.skip(SkipReason::Non2xxStatus);
            }
        }
        // Every candidate of the page carries its URL: an uncapped one (a record may hold
        // megabytes of it) times the page's links would be unbounded output.
        let target_uri = page.target_uri.trim();
        if target_uri.len() > self.filters.max_url_bytes {
            return self.counts.skip(SkipReason::PageUrlTooLong);
        }
        let Ok(page_url) = Url::parse(target_uri) else {
            return self.counts.skip(SkipReason::MissingKeys);
        };
        let base = urls::page_base(&page_url, page.base);
        let page_license = if with_licenses {
            license::page_license(&page.head_links, &page.links)
        } else {
            None
        };
        for link in &page.links {
            if link.path != Some("IMG@/src") {
                continue;
            }
            self.counts.image_links += 1;
            let kept = match filters::check_link(&self.filters, &base, link.url, link.alt) {
                Ok(kept) => kept,
                Err(reason) => {
                    self.counts.skip(reason);
                    continue;
                }
            };
            let language = language::detect(self.filters.language_detector, &kept.alt);
            if let Some(languages) = &self.filters.languages
                && !language.is_some_and(|code| languages.contains(code))
            {
                self.counts.skip(SkipReason::Language);
                continue;
            }
            let pair = pair_hash(&kept.url, &kept.alt);
            let Some(half_state) = self.halves[usize::from(half)].as_mut() else {
                continue;
            };
            // Checked before the dedup sets grow: past its last ID a half keeps nothing.
            if half_state.ids.exhausted() {
                self.counts.skip(SkipReason::IdsExhausted);
                continue;
            }
            if let Err(reason) = half_state
                .seen
                .insert(&kept.url, pair, self.filters.dedup_urls)
            {
                self.counts.skip(reason);
                continue;
            }
            let Some(sample_id) = half_state.ids.next_id() else {
                self.counts.skip(SkipReason::IdsExhausted);
                continue;
            };
            self.counts.candidates += 1;
            out.push_back(Candidate {
                sample_id,
                half,
                url: kept.url,
                alt: kept.alt.into_owned(),
                page_url: target_uri.to_owned(),
                license: page_license.clone(),
                language: language.map(str::to_owned),
                pair_hash: pair,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halves::IdRange;

    fn config(half0: (u64, u64), half1: (u64, u64)) -> ExtractConfig {
        let range = |(start, end)| IdRange { start, end };
        ExtractConfig {
            halves: vec![
                HalfJob::new(0, range(half0)).expect("half 0"),
                HalfJob::new(1, range(half1)).expect("half 1"),
            ],
            filters: FilterConfig::standard(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    #[test]
    fn the_halves_must_not_share_sample_ids() {
        let extractor = |half0, half1| Extractor::new(std::io::empty(), config(half0, half1));
        assert!(matches!(
            extractor((0, 100), (50, 150)),
            Err(ScraperError::Config(_))
        ));
        assert!(matches!(
            extractor((50, 150), (0, 51)),
            Err(ScraperError::Config(_))
        ));
        assert!(extractor((0, 100), (100, 200)).is_ok());
        // An empty range shares nothing.
        assert!(extractor((10, 10), (0, 100)).is_ok());
    }
}
