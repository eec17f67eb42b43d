//! A WAT file as a stream of WARC records, read member by member from any byte source.
//!
//! Memory stays bounded: one compressed input buffer (512 KiB), the one-call decoder's output
//! space (2 MiB) and one streamed member buffer capped at [`WatReader::new`]'s
//! `max_record_bytes`; a larger member is decoded to its end (to find the next one) but
//! discarded and reported as [`RecordEvent::Skipped`] with [`SkipReason::RecordTooLarge`].

mod gzip;
mod warc;

use std::io::Read;

use gzip::{Member, MemberReader};

use crate::candidates::SkipReason;

/// One WARC record of the file, with its position.
#[derive(Debug, Clone, Copy)]
pub struct WatRecord<'a> {
    /// 0-based index of the record in the file (the `warcinfo` record is 0); decides the half.
    pub index: u64,
    /// `WARC-Type`.
    pub warc_type: &'a [u8],
    /// `Content-Type`.
    pub content_type: &'a [u8],
    /// The record block (for WAT metadata records, the JSON envelope).
    pub body: &'a [u8],
}

/// What the reader produced next.
#[derive(Debug)]
pub enum RecordEvent<'a> {
    /// A well-framed record.
    Record(WatRecord<'a>),
    /// Damage that cost one record (or an unknown stretch of bytes), counted by reason.
    Skipped(SkipReason),
}

/// Reads WARC records from a stream of gzip members.
pub struct WatReader<R> {
    members: MemberReader<R>,
    /// Start of the unread part of the current member's output (records may share a member).
    cursor: usize,
    max_record_bytes: usize,
    n_records: u64,
}

impl<R: Read> WatReader<R> {
    /// A reader over `source` (the still compressed bytes of a `.warc.wat.gz`).
    pub fn new(source: R, max_record_bytes: usize) -> Self {
        Self {
            members: MemberReader::new(source),
            cursor: 0,
            max_record_bytes,
            n_records: 0,
        }
    }

    /// Compressed bytes consumed so far.
    pub fn compressed_bytes(&self) -> u64 {
        self.members.compressed_bytes()
    }

    /// Decompressed bytes produced so far.
    pub fn decompressed_bytes(&self) -> u64 {
        self.members.decompressed_bytes()
    }

    /// The next record or counted damage; `Ok(None)` at the end; `Err` when the source fails.
    pub fn next_event(&mut self) -> std::io::Result<Option<RecordEvent<'_>>> {
        if self.cursor >= self.members.output().len() {
            let Some(member) = self.members.next_member(self.max_record_bytes)? else {
                return Ok(None);
            };
            self.cursor = 0;
            let skipped = match member {
                Member::Complete => None,
                Member::TooLarge => Some(SkipReason::RecordTooLarge),
                Member::Corrupt => Some(SkipReason::GzipCorrupt),
                Member::Truncated => Some(SkipReason::GzipTruncated),
                Member::Garbage => Some(SkipReason::GzipGarbage),
            };
            if let Some(reason) = skipped {
                if reason != SkipReason::GzipGarbage {
                    // The damaged member held one record: keep later records' parity.
                    self.n_records += 1;
                }
                return Ok(Some(RecordEvent::Skipped(reason)));
            }
        }
        let index = self.n_records;
        self.n_records += 1;
        let member = self.members.output();
        match warc::next_record(&member[self.cursor..]) {
            Ok((record, rest)) => {
                self.cursor = member.len() - rest.len();
                Ok(Some(RecordEvent::Record(WatRecord {
                    index,
                    warc_type: record.warc_type,
                    content_type: record.content_type,
                    body: record.body,
                })))
            }
            Err(error) => {
                self.cursor = member.len();
                Ok(Some(RecordEvent::Skipped(match error {
                    warc::FramingError::BadHeader => SkipReason::BadWarcHeader,
                    warc::FramingError::Truncated => SkipReason::TruncatedRecord,
                })))
            }
        }
    }
}
