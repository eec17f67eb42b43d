//! WARC/1.0 record headers inside one decompressed gzip member.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// One WARC record borrowed from a member's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawRecord<'a> {
    /// `WARC-Type` (`warcinfo`, `metadata`, ...).
    pub(crate) warc_type: &'a [u8],
    /// `Content-Type`, if present.
    pub(crate) content_type: &'a [u8],
    /// The `Content-Length` bytes of the block.
    pub(crate) body: &'a [u8],
}

/// Why a record could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// No `WARC/` version line, no blank line, or no valid `Content-Length`.
    BadHeader,
    /// `Content-Length` runs past the end of the member.
    Truncated,
}

/// The blank line that ends a header (a static searcher: building one per record showed up in
/// profiles).
static HEADER_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));

/// Splits the next record off `bytes`; returns it and the rest after the trailing CRLF CRLF.
pub(crate) fn next_record(bytes: &[u8]) -> Result<(RawRecord<'_>, &[u8]), FramingError> {
    if !bytes.starts_with(b"WARC/") {
        return Err(FramingError::BadHeader);
    }
    let header_end = HEADER_END.find(bytes).ok_or(FramingError::BadHeader)?;
    let header = &bytes[..header_end];
    let mut warc_type: &[u8] = b"";
    let mut content_type: &[u8] = b"";
    let mut content_length = None;
    for line in header.split(|byte| *byte == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"WARC-Type") {
            warc_type = value;
        } else if name.eq_ignore_ascii_case(b"Content-Type") {
            content_type = value;
        } else if name.eq_ignore_ascii_case(b"Content-Length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<usize>().ok());
        }
    }
    let content_length = content_length.ok_or(FramingError::BadHeader)?;
    let body_start = header_end + 4;
    let body_end = body_start
        .checked_add(content_length)
        .filter(|end| *end <= bytes.len())
        .ok_or(FramingError::Truncated)?;
    let mut rest = &bytes[body_end..];
    while let [b'\r' | b'\n', tail @ ..] = rest {
        rest = tail;
    }
    let record = RawRecord {
        warc_type,
        content_type,
        body: &bytes[body_start..body_end],
    };
    Ok((record, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_table() {
        let ok = b"WARC/1.0\r\nWARC-Type: metadata\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\r\n\r\n";
        let (record, rest) = next_record(ok).expect("frames");
        assert_eq!(record.warc_type, b"metadata");
        assert_eq!(record.content_type, b"application/json");
        assert_eq!(record.body, b"{}");
        assert!(rest.is_empty());
        let cases: &[(&[u8], FramingError)] = &[
            (b"HTTP/1.1 200 OK\r\n\r\n", FramingError::BadHeader),
            (b"WARC/1.0\r\nWARC-Type: x\r\n", FramingError::BadHeader),
            (
                b"WARC/1.0\r\nContent-Length: abc\r\n\r\n",
                FramingError::BadHeader,
            ),
            (
                b"WARC/1.0\r\nContent-Length: 10\r\n\r\n{}",
                FramingError::Truncated,
            ),
            (
                b"WARC/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                FramingError::BadHeader,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(next_record(input).err(), Some(*expected), "{input:?}");
        }
    }
}
