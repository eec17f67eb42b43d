//! Gzip members one at a time, with resynchronisation after damage and a cap on member size.
//!
//! Common Crawl compresses every WARC record as its own gzip member (reference §3.2). Decoding
//! member by member (instead of `MultiGzDecoder`) lets a damaged member be counted and skipped:
//! after an error the reader scans forward for the next gzip header (`1f 8b 08`).
//!
//! Two decoders share that job. A member that lies wholly in the input buffer is inflated by
//! libdeflate in one call (about 1.5 times as fast as streaming zlib-rs on WAT files, whose
//! members are a few kilobytes). Everything else (a member longer than the buffer or the
//! scratch space, a damaged one, one followed by garbage) goes through the streaming zlib-rs
//! path, which alone decides how damage is counted. Either way the output stays where the
//! decoder wrote it ([`MemberReader::output`]) until the next member: no copy of it is made.

use std::io::Read;

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Size of the compressed input buffer.
const INPUT_BUFFER: usize = 512 * 1024;
/// Compressed bytes kept ahead of a member before the one-call decoder tries it.
const WHOLE_WINDOW: usize = 256 * 1024;
/// Output space of the one-call decoder; a longer member is streamed.
const WHOLE_OUTPUT: usize = 2 * 1024 * 1024;
/// The gzip magic and the deflate method byte that start every member.
const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// Output space reserved before each inflate call.
const OUTPUT_STEP: usize = 64 * 1024;
/// A member header longer than this (file name, comment, extra field) is treated as damage.
const MAX_HEADER: usize = 64 * 1024;

/// What reading one member gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// The member decoded and its CRC and length matched; the output holds it.
    Complete,
    /// The member decoded but exceeded the size cap; its output was discarded.
    TooLarge,
    /// The deflate data, the CRC or the length was wrong; the output is unusable.
    Corrupt,
    /// The input ended inside the member; nothing follows.
    Truncated,
    /// Bytes that are not a gzip header were skipped to reach the next member.
    Garbage,
}

/// Which buffer holds the last member's output.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// `scratch[..len]`, written by the one-call decoder.
    Whole(usize),
    /// `streamed` (empty unless the member was complete).
    Streamed,
}

/// Reads gzip members from a byte source.
pub(crate) struct MemberReader<R> {
    source: R,
    input: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    inflate: Decompress,
    /// The one-call decoder and its output space (allocated on first use, then kept at full
    /// length so that no call zeroes it again).
    whole: libdeflater::Decompressor,
    scratch: Vec<u8>,
    /// The streaming decoder's output.
    streamed: Vec<u8>,
    /// Where the last member's output is.
    output: Output,
    n_whole: u64,
    n_compressed: u64,
    n_decompressed: u64,
}

impl<R: Read> MemberReader<R> {
    pub(crate) fn new(source: R) -> Self {
        Self {
            source,
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            inflate: Decompress::new(false),
            whole: libdeflater::Decompressor::new(),
            scratch: Vec::new(),
            streamed: Vec::new(),
            output: Output::Streamed,
            n_whole: 0,
            n_compressed: 0,
            n_decompressed: 0,
        }
    }

    /// Compressed bytes consumed so far.
    pub(crate) fn compressed_bytes(&self) -> u64 {
        self.n_compressed
    }

    /// Decompressed bytes produced so far (discarded ones included).
    pub(crate) fn decompressed_bytes(&self) -> u64 {
        self.n_decompressed
    }

    /// Members inflated by the one-call decoder so far (the rest were streamed).
    #[cfg(test)]
    pub(crate) fn whole_members(&self) -> u64 {
        self.n_whole
    }

    /// The output of the last member read: its bytes when it was [`Member::Complete`], else empty.
    /// It stays where the decoder wrote it (no copy); the next call replaces it.
    pub(crate) fn output(&self) -> &[u8] {
        match self.output {
            Output::Whole(len) => &self.scratch[..len],
            Output::Streamed => &self.streamed,
        }
    }

    /// Reads the next member, keeping at most `cap` bytes of its output (see [`Self::output`]).
    /// `Ok(None)` at the end of the input; `Err` only when the source itself fails.
    pub(crate) fn next_member(&mut self, cap: usize) -> std::io::Result<Option<Member>> {
        self.output = Output::Streamed;
        self.streamed.clear();
        let member = self.read_member(cap)?;
        if member != Some(Member::Complete) {
            // Only the streaming path ends other than complete, and may leave a partial output.
            self.streamed.clear();
        }
        Ok(member)
    }

    fn read_member(&mut self, cap: usize) -> std::io::Result<Option<Member>> {
        if !self.fill(1)? {
            return Ok(None);
        }
        if !self.at_magic()? {
            self.skip_to_magic()?;
            return Ok(Some(Member::Garbage));
        }
        let Some(header_len) = self.header_len()? else {
            return self.truncated_or_corrupt();
        };
        if let Some(member) = self.whole_member(header_len, cap)? {
            return Ok(Some(member));
        }
        let mut out = std::mem::take(&mut self.streamed);
        let member = self.stream_member(header_len, cap, &mut out);
        self.streamed = out;
        member.map(Some)
    }

    /// Inflates the member at `pos` with zlib-rs, a piece at a time.
    fn stream_member(
        &mut self,
        header_len: usize,
        cap: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<Member> {
        self.consume(header_len);
        self.inflate.reset(false);
        let mut crc = Crc::new();
        let mut too_large = false;
        // The buffer never holds more than `limit` bytes: one byte past the cap tells a member
        // that is too large from one of exactly `cap` bytes. `decompress_vec` fills the spare
        // capacity, so that is kept within the limit (a buffer kept from a larger cap is shrunk).
        let limit = cap.saturating_add(1);
        if out.capacity() > limit {
            out.shrink_to(limit);
        }
        loop {
            if self.pos == self.len && !self.fill(1)? {
                return Ok(Member::Truncated);
            }
            if out.len() > cap {
                // Keep decoding to find the member's end, but only to check the CRC.
                crc.update(out);
                out.clear();
                too_large = true;
            }
            let room = limit - out.len();
            if out.capacity() - out.len() < OUTPUT_STEP.min(room) {
                out.reserve_exact(OUTPUT_STEP.max(out.len()).min(room));
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self.inflate.decompress_vec(
                &self.input[self.pos..self.len],
                out,
                FlushDecompress::None,
            );
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            self.consume(consumed);
            self.n_decompressed += produced;
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => {
                    if consumed == 0 && produced == 0 && self.pos < self.len {
                        // No progress with input and output space available: damaged data.
                        return Ok(Member::Corrupt);
                    }
                }
                Err(_) => return Ok(Member::Corrupt),
            }
        }
        if !self.fill(8)? {
            self.consume(self.len - self.pos);
            return Ok(Member::Truncated);
        }
        let trailer = &self.input[self.pos..self.pos + 8];
        let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        self.consume(8);
        crc.update(out);
        // ISIZE is the length modulo 2^32 (RFC 1952), hence the truncating cast.
        let actual_len = self.inflate.total_out() as u32;
        if crc.sum() != expected_crc || actual_len != expected_len {
            out.clear();
            return Ok(Member::Corrupt);
        }
        // The total, not the buffer: the cap holds even if an allocator gave more room.
        if too_large || self.inflate.total_out() > cap as u64 {
            out.clear();
            return Ok(Member::TooLarge);
        }
        Ok(Member::Complete)
    }

    /// Inflates the member at `pos` in one libdeflate call if it lies wholly in the buffer and
    /// fits the cap and the scratch space. `None` leaves everything as it was for the streaming
    /// path: libdeflate refused it, or its end could not be told for certain.
    fn whole_member(&mut self, header_len: usize, cap: usize) -> std::io::Result<Option<Member>> {
        self.fill(WHOLE_WINDOW)?;
        let room = cap.min(WHOLE_OUTPUT);
        if self.scratch.len() < room {
            self.scratch.resize(room, 0);
        }
        let input = &self.input[self.pos..self.len];
        let Some(deflate) = input.get(header_len..) else {
            return Ok(None);
        };
        let Ok(produced) = self
            .whole
            .deflate_decompress(deflate, &mut self.scratch[..room])
        else {
            return Ok(None);
        };
        let output = &self.scratch[..produced];
        // libdeflate stops at the end of the deflate data but does not say where that was; the
        // trailer follows it: CRC-32 and length of the output (RFC 1952). The first place these
        // 8 bytes occur is that trailer unless the compressed data contains them by chance (odds
        // about 2^-64 per position); requiring the next member's magic (or the end of the file)
        // right after it makes a wrong guess practically impossible. Finding them also checks
        // the CRC: when it does not match, they are not found and the streaming path judges.
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&libdeflater::crc32(output).to_le_bytes());
        // ISIZE is the length modulo 2^32; output is at most WHOLE_OUTPUT here.
        trailer[4..].copy_from_slice(&(produced as u32).to_le_bytes());
        let Some(end) = memchr::memmem::find(deflate, &trailer).map(|at| header_len + at + 8)
        else {
            return Ok(None);
        };
        let next = &input[end..];
        if !(next.starts_with(&MAGIC) || (next.is_empty() && self.eof)) {
            return Ok(None);
        }
        self.output = Output::Whole(produced);
        self.n_whole += 1;
        self.n_decompressed += produced as u64;
        self.consume(end);
        Ok(Some(Member::Complete))
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.n_compressed += n as u64;
    }

    /// Makes at least `min` unread bytes available if the source has them; false if it ends first.
    fn fill(&mut self, min: usize) -> std::io::Result<bool> {
        while self.len - self.pos < min {
            if self.eof {
                return Ok(false);
            }
            if self.pos > 0 {
                self.input.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            if self.len == self.input.len() {
                return Ok(true);
            }
            match self.source.read(&mut self.input[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    fn at_magic(&mut self) -> std::io::Result<bool> {
        if !self.fill(3)? {
            return Ok(false);
        }
        Ok(self.input[self.pos..self.pos + 3] == MAGIC)
    }

    /// Skips at least one byte, then up to the next `1f 8b 08` or the end of the input.
    fn skip_to_magic(&mut self) -> std::io::Result<()> {
        self.consume(1);
        loop {
            if !self.fill(3)? {
                self.consume(self.len - self.pos);
                return Ok(());
            }
            let window = &self.input[self.pos..self.len];
            match memchr::memmem::find(window, &MAGIC) {
                Some(offset) => {
                    self.consume(offset);
                    return Ok(());
                }
                // Keep the last two bytes: they may start a header split across reads.
                None => self.consume(window.len() - 2),
            }
        }
    }

    /// The length of the member header at `pos` (RFC 1952 §2.3), or `None` if it is damaged.
    fn header_len(&mut self) -> std::io::Result<Option<usize>> {
        if !self.fill(10)? {
            return Ok(None);
        }
        let flags = self.input[self.pos + 3];
        let mut len = 10;
        if flags & 0x04 != 0 {
            if !self.fill(len + 2)? {
                return Ok(None);
            }
            let extra = &self.input[self.pos + len..self.pos + len + 2];
            len += 2 + usize::from(u16::from_le_bytes([extra[0], extra[1]]));
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                loop {
                    if len > MAX_HEADER || !self.fill(len + 1)? {
                        return Ok(None);
                    }
                    len += 1;
                    if self.input[self.pos + len - 1] == 0 {
                        break;
                    }
                }
            }
        }
        if flags & 0x02 != 0 {
            len += 2;
        }
        if len > MAX_HEADER || !self.fill(len)? {
            return Ok(None);
        }
        Ok(Some(len))
    }

    fn truncated_or_corrupt(&mut self) -> std::io::Result<Option<Member>> {
        if self.eof && self.len - self.pos < MAX_HEADER {
            self.consume(self.len - self.pos);
            return Ok(Some(Member::Truncated));
        }
        self.skip_to_magic()?;
        Ok(Some(Member::Corrupt))
    }
}

#[cfg(test)]
mod tests;
