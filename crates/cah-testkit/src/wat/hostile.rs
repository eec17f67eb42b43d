//! Hostile WAT content: records and gzip members a robust scraper must survive.

use std::io::Write;

use super::envelope::{self, CaptureIds};
use super::record::{RecordHead, WatWriter};
use super::{Html, Link, Page};
use crate::error::TestkitError;

/// A kind of damage. The first five leave the rest of the file readable; the last three end it,
/// since nothing after a broken member or a lying length can be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// A `response` record whose JSON is cut in half (valid gzip, valid WARC header).
    MalformedJson,
    /// A `response` record whose JSON holds invalid UTF-8 (Latin-1 bytes) inside an `alt`.
    InvalidUtf8,
    /// A `response` record of at least `bytes` bytes of JSON: thousands of anchors, no images.
    GiantRecord { bytes: usize },
    /// A record whose body is not JSON at all (binary noise), with a JSON content type.
    BinaryGarbage,
    /// A `response` record whose JSON is valid but nests `depth` arrays deep inside its first
    /// image link: a parser that recurses once per level overflows its stack.
    DeepNesting { depth: usize },
    /// A record whose `Content-Length` claims 10 000 bytes more than the member holds (ends the file).
    TruncatedRecord,
    /// A gzip member cut in the middle (ends the file).
    TruncatedMember,
    /// A gzip member with damaged deflate data, so its CRC check fails (ends the file).
    CorruptGzip,
}

impl Hostility {
    /// True when nothing after this damage can be read.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::TruncatedRecord | Self::TruncatedMember | Self::CorruptGzip
        )
    }
}

/// A page full of good-looking candidates, used as the payload of hostile records: a scraper that
/// wrongly accepts a hostile record shows up as extra candidates.
pub(super) fn bait_page(url: &str) -> Page {
    let links = (0..4)
        .map(|index| {
            Link::image(
                format!("/ok/bait-{index}.jpg"),
                Some("a bait picture that must not appear"),
            )
        })
        .collect();
    Page {
        url: url.to_owned(),
        status: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=UTF-8".into())],
        html: Some(Html {
            title: Some("bait".into()),
            links,
            ..Html::default()
        }),
    }
}

impl<W: Write> WatWriter<W> {
    /// Writes one hostile record or member; it contributes no expected candidates.
    pub fn write_hostile(
        &mut self,
        hostility: Hostility,
        page_url: &str,
    ) -> Result<(), TestkitError> {
        let mut page = bait_page(page_url);
        if let Hostility::GiantRecord { bytes } = hostility {
            let html = page.html.as_mut().expect("the bait page has html");
            html.links.clear();
            let mut index = 0usize;
            let mut size = 0usize;
            while size < bytes {
                let link = Link::anchor(
                    format!("/archive/{index:08}.html"),
                    format!("archive entry number {index} of a very long listing"),
                );
                // 36 bytes of JSON punctuation and keys per link, a slight underestimate.
                size += link.url.len() + link.text.as_ref().map_or(0, String::len) + 36;
                html.links.push(link);
                index += 1;
            }
        }
        if hostility == Hostility::InvalidUtf8 {
            page.html.as_mut().expect("the bait page has html").links[0].alt =
                Some("INVALID-UTF8-MARKER".into());
        }
        let ids = CaptureIds {
            request: "<urn:uuid:0>",
            response: "<urn:uuid:1>",
            metadata: "<urn:uuid:2>",
        };
        let json = envelope::capture_json(self, &page, "response", &ids);
        let head = RecordHead {
            warc_type: "metadata",
            target_uri: Some(page_url),
            refers_to: Some("<urn:uuid:00000000-0000-4000-8000-000000000000>"),
            content_type: "application/json",
        };
        match hostility {
            Hostility::MalformedJson => {
                let cut = json.len() / 2;
                self.write_record(&head, &json.as_bytes()[..cut])
            }
            Hostility::InvalidUtf8 => self.write_record(&head, &latin1_marker(json.into_bytes())),
            Hostility::GiantRecord { .. } => self.write_record(&head, json.as_bytes()),
            Hostility::DeepNesting { depth } => {
                let nested = format!(
                    r#""nested":{}0{},"path":"IMG@/src""#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                );
                let json = json.replacen(r#""path":"IMG@/src""#, &nested, 1);
                self.write_record(&head, json.as_bytes())
            }
            Hostility::BinaryGarbage => {
                let mut noise = vec![0u8; 4096];
                self.rng.fill(&mut noise);
                self.write_record(&head, &noise)
            }
            Hostility::TruncatedRecord => {
                let header = self.record_header(&head, json.len() + 10_000);
                let member = self.compress_member(header.as_bytes(), json.as_bytes())?;
                self.write_raw(&member)
            }
            Hostility::TruncatedMember => {
                let header = self.record_header(&head, json.len());
                let member = self.compress_member(header.as_bytes(), json.as_bytes())?;
                self.write_raw(&member[..member.len() / 2])
            }
            Hostility::CorruptGzip => {
                let header = self.record_header(&head, json.len());
                let mut member = self.compress_member(header.as_bytes(), json.as_bytes())?;
                let middle = member.len() / 2;
                for byte in &mut member[middle..middle + 16] {
                    *byte ^= 0x5a;
                }
                self.write_raw(&member)
            }
        }
    }
}

/// Replaces the marker alt text with `caf\xE9 \xFF` (Latin-1 bytes), which is invalid UTF-8.
fn latin1_marker(mut body: Vec<u8>) -> Vec<u8> {
    let marker = b"INVALID-UTF8-MARKER";
    if let Some(position) = body
        .windows(marker.len())
        .position(|window| window == marker)
    {
        body.splice(position..position + marker.len(), *b"caf\xe9 \xff");
    }
    body
}
