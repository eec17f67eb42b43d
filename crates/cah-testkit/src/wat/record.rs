//! WARC/1.0 records, each compressed as its own gzip member, and the writer that emits pages.

use std::io::Write;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{CountingWriter, ExpectedCandidate, HeaderStyle, Page, envelope, expected_candidates};
use crate::error::TestkitError;
use crate::rng::SplitMix64;

/// A streaming WAT writer: `warcinfo` on creation, then three records per [`Page`].
pub struct WatWriter<W: Write> {
    pub(super) out: CountingWriter<W>,
    pub(super) rng: SplitMix64,
    pub(super) style: HeaderStyle,
    pub(super) compression: Compression,
    pub(super) warc_filename: String,
    pub(super) warcinfo_id: String,
    pub(super) clock: SystemTime,
    pub(super) warc_offset: u64,
    n_records: u64,
    member: Vec<u8>,
}

/// The WARC header fields of one WAT record.
pub(super) struct RecordHead<'a> {
    pub(super) warc_type: &'a str,
    pub(super) target_uri: Option<&'a str>,
    pub(super) refers_to: Option<&'a str>,
    pub(super) content_type: &'a str,
}

impl<W: Write> WatWriter<W> {
    /// Starts a WAT file named `wat_filename` (e.g. `CC-MAIN-...-00000.warc.wat.gz`) and writes its `warcinfo` record.
    pub fn new(
        out: W,
        wat_filename: &str,
        style: HeaderStyle,
        capture_start: SystemTime,
        seed: u64,
    ) -> Result<Self, TestkitError> {
        let warc_filename = wat_filename.trim_end_matches(".wat.gz").to_owned() + ".gz";
        let mut rng = SplitMix64::new(seed);
        let warcinfo_id = format!("<urn:uuid:{}>", rng.uuid());
        let mut writer = Self {
            out: CountingWriter {
                inner: out,
                n_bytes: 0,
            },
            rng,
            style,
            compression: Compression::default(),
            warc_filename,
            warcinfo_id,
            clock: capture_start,
            warc_offset: 0,
            n_records: 0,
            member: Vec::with_capacity(64 * 1024),
        };
        let extracted = httpdate::fmt_http_date(capture_start + Duration::from_secs(3 * 3600));
        let body = format!(
            "Software-Info: ia-web-commons.1.1.10-SNAPSHOT-20241126101005\r\nExtracted-Date: {extracted}\r\nip: 10.67.67.125\r\nhostname: ip-10-67-67-125.ec2.internal\r\nformat: WARC File Format 1.0\r\nconformsTo: http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latest.pdf\r\n"
        );
        let date = humantime::format_rfc3339_seconds(capture_start).to_string();
        let id = format!("<urn:uuid:{}>", writer.rng.uuid());
        let header = format!(
            "WARC/1.0\r\nWARC-Type: warcinfo\r\nWARC-Date: {date}\r\nWARC-Filename: {wat_filename}\r\nWARC-Record-ID: {id}\r\nContent-Type: application/warc-fields\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer.write_member(header.as_bytes(), body.as_bytes())?;
        Ok(writer)
    }

    /// Sets the gzip level of later members (default 6).
    pub fn set_compression(&mut self, level: u32) {
        self.compression = Compression::new(level.min(9));
    }

    /// Writes the request, response and crawler-metadata records of `page`; returns its candidates.
    pub fn write_page(&mut self, page: &Page) -> Result<Vec<ExpectedCandidate>, TestkitError> {
        self.clock += Duration::from_millis(200 + self.rng.below(3000));
        let request_id = format!("<urn:uuid:{}>", self.rng.uuid());
        let response_id = format!("<urn:uuid:{}>", self.rng.uuid());
        let metadata_id = format!("<urn:uuid:{}>", self.rng.uuid());
        let ids = envelope::CaptureIds {
            request: &request_id,
            response: &response_id,
            metadata: &metadata_id,
        };
        for warc_type in ["request", "response", "metadata"] {
            let json = envelope::capture_json(self, page, warc_type, &ids);
            let refers_to = match warc_type {
                "request" => &request_id,
                "response" => &response_id,
                _ => &metadata_id,
            };
            let head = RecordHead {
                warc_type: "metadata",
                target_uri: Some(&page.url),
                refers_to: Some(refers_to),
                content_type: "application/json",
            };
            self.write_record(&head, json.as_bytes())?;
        }
        Ok(expected_candidates(page))
    }

    /// Writes one well-formed WAT record with an arbitrary body.
    pub(super) fn write_record(
        &mut self,
        head: &RecordHead<'_>,
        body: &[u8],
    ) -> Result<(), TestkitError> {
        let header = self.record_header(head, body.len());
        self.write_member(header.as_bytes(), body)
    }

    pub(super) fn record_header(&mut self, head: &RecordHead<'_>, content_length: usize) -> String {
        let mut header = String::with_capacity(400);
        header.push_str("WARC/1.0\r\nWARC-Type: ");
        header.push_str(head.warc_type);
        header.push_str("\r\n");
        if let Some(target) = head.target_uri {
            header.push_str("WARC-Target-URI: ");
            header.push_str(target);
            header.push_str("\r\n");
        }
        header.push_str("WARC-Date: ");
        header.push_str(&humantime::format_rfc3339_seconds(self.clock).to_string());
        header.push_str("\r\nWARC-Record-ID: <urn:uuid:");
        header.push_str(&self.rng.uuid());
        header.push_str(">\r\n");
        if let Some(refers_to) = head.refers_to {
            header.push_str("WARC-Refers-To: ");
            header.push_str(refers_to);
            header.push_str("\r\n");
        }
        header.push_str("Content-Type: ");
        header.push_str(head.content_type);
        header.push_str("\r\nContent-Length: ");
        header.push_str(&content_length.to_string());
        header.push_str("\r\n\r\n");
        header
    }

    /// Compresses `header + body + CRLF CRLF` as one gzip member and writes it.
    pub(super) fn write_member(&mut self, header: &[u8], body: &[u8]) -> Result<(), TestkitError> {
        let member = self.compress_member(header, body)?;
        self.out.write_all(&member).map_err(TestkitError::Write)?;
        self.member = member;
        self.n_records += 1;
        Ok(())
    }

    pub(super) fn compress_member(
        &mut self,
        header: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>, TestkitError> {
        let mut buffer = std::mem::take(&mut self.member);
        buffer.clear();
        let mut encoder = GzEncoder::new(buffer, self.compression);
        encoder.write_all(header).map_err(TestkitError::Write)?;
        encoder.write_all(body).map_err(TestkitError::Write)?;
        encoder
            .write_all(b"\r\n\r\n")
            .map_err(TestkitError::Write)?;
        encoder.finish().map_err(TestkitError::Write)
    }

    /// Writes raw bytes (for hostile variants that are not a gzip member).
    pub(super) fn write_raw(&mut self, bytes: &[u8]) -> Result<(), TestkitError> {
        self.out.write_all(bytes).map_err(TestkitError::Write)?;
        self.n_records += 1;
        Ok(())
    }

    /// Compressed bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.out.n_bytes
    }

    /// Records (gzip members, hostile ones included) written so far, `warcinfo` included.
    pub fn records_written(&self) -> u64 {
        self.n_records
    }

    pub fn style(&self) -> HeaderStyle {
        self.style
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, TestkitError> {
        self.out.flush().map_err(TestkitError::Write)?;
        Ok(self.out.inner)
    }
}
