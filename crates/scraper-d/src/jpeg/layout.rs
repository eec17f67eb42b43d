//! The segments and scans of a progressive JPEG file, as `progression.rs` reads them: where
//! each segment and each scan's entropy-coded data lie, and what each scan carries.

use std::ops::Range;

/// Start of frame, progressive with Huffman coding: the only kind [`Layout::read`] reads.
pub(super) const SOF2: u8 = 0xC2;
/// Start of scan.
pub(super) const SOS: u8 = 0xDA;
/// Define quantization tables.
pub(super) const DQT: u8 = 0xDB;
/// End of image.
pub(super) const EOI: u8 = 0xD9;
/// Start of image.
pub(super) const SOI: u8 = 0xD8;

/// One piece of a file, in order.
pub(super) enum Piece {
    /// Copied as it is: markers, metadata, Huffman tables, the frame header.
    Verbatim(Range<usize>),
    /// A `DQT` segment.
    Quant(Range<usize>),
    /// A scan: its header segment and the entropy-coded data after it.
    Scan {
        header: Range<usize>,
        data: Range<usize>,
        scan: Scan,
    },
}

/// The structure of a Huffman-coded progressive JPEG.
pub(super) struct Layout {
    /// The file's pieces, in order, from `SOI` to `EOI`.
    pub(super) pieces: Vec<Piece>,
    /// Component identifiers and their quantization tables, from the frame header.
    pub(super) components: Vec<(u8, u8)>,
    /// Whether a `DQT` segment comes after the first scan.
    pub(super) tables_after_scans: bool,
}

impl Layout {
    /// Reads the segments of `bytes` up to `EOI`; `None` unless it is a Huffman-coded
    /// progressive JPEG that parses.
    pub(super) fn read(bytes: &[u8]) -> Option<Layout> {
        if bytes.get(..2)? != [0xFF, SOI] {
            return None;
        }
        let mut layout = Layout {
            pieces: vec![Piece::Verbatim(0..2)],
            components: Vec::new(),
            tables_after_scans: false,
        };
        let mut at = 2;
        let mut progressive = false;
        let mut scanned = false;
        loop {
            let (marker, start) = next_marker(bytes, at)?;
            match marker {
                EOI => {
                    layout.pieces.push(Piece::Verbatim(start..start + 2));
                    return Some(layout);
                }
                // Standalone markers outside entropy-coded data: a file that has them is
                // unusual enough to be left to libjpeg-turbo as it is.
                0x01 | 0xD0..=0xD8 => return None,
                _ => {}
            }
            let length = usize::from(u16::from_be_bytes([
                *bytes.get(start + 2)?,
                *bytes.get(start + 3)?,
            ]));
            if length < 2 {
                return None;
            }
            let segment_end = start + 2 + length;
            let segment = bytes.get(start..segment_end)?;
            at = segment_end;
            match marker {
                SOF2 => {
                    progressive = true;
                    layout.components = frame_components(segment)?;
                    layout.pieces.push(Piece::Verbatim(start..segment_end));
                }
                // Any other start of frame (DHT, JPG and DAC share the range).
                0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return None,
                SOS => {
                    if !progressive {
                        return None;
                    }
                    scanned = true;
                    let scan = Scan::read(segment)?;
                    let data_end = entropy_data_end(bytes, segment_end);
                    layout.pieces.push(Piece::Scan {
                        header: start..segment_end,
                        data: segment_end..data_end,
                        scan,
                    });
                    at = data_end;
                }
                DQT => {
                    layout.tables_after_scans |= scanned;
                    layout.pieces.push(Piece::Quant(start..segment_end));
                }
                _ => layout.pieces.push(Piece::Verbatim(start..segment_end)),
            }
        }
    }

    pub(super) fn scans(&self) -> impl Iterator<Item = &Scan> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Scan { scan, .. } => Some(scan),
            _ => None,
        })
    }
}

/// The components of a start-of-frame segment: `FF C2`, length, precision, height, width,
/// count, then identifier, sampling factors and table for each.
fn frame_components(segment: &[u8]) -> Option<Vec<(u8, u8)>> {
    let count = usize::from(*segment.get(9)?);
    (0..count)
        .map(|i| {
            let at = 10 + 3 * i;
            Some((*segment.get(at)?, *segment.get(at + 2)?))
        })
        .collect()
}

/// The next marker at or after `at` (fill bytes `FF` skipped) and where its `FF` is.
pub(super) fn next_marker(bytes: &[u8], at: usize) -> Option<(u8, usize)> {
    if *bytes.get(at)? != 0xFF {
        return None;
    }
    let mut code = at + 1;
    while *bytes.get(code)? == 0xFF {
        code += 1;
    }
    Some((bytes[code], code - 1))
}

/// Where the entropy-coded data that starts at `from` ends: at the first `FF` followed by
/// neither a stuffed `00` nor a restart marker (or at the end of the file).
pub(super) fn entropy_data_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(found) = memchr::memchr(0xFF, &bytes[at.min(bytes.len())..]) {
        let ff = at + found;
        match bytes.get(ff + 1) {
            Some(0x00 | 0xD0..=0xD7) => at = ff + 2,
            // A run of fill bytes before a marker: the marker starts at the first of them.
            Some(_) => return ff,
            None => return bytes.len(),
        }
    }
    bytes.len()
}

/// The components, spectral selection and successive approximation of one scan.
pub(super) struct Scan {
    /// Component identifiers.
    pub(super) components: Vec<u8>,
    /// First coefficient (`Ss`, 0 for DC).
    pub(super) first: u8,
    /// Last coefficient (`Se`).
    pub(super) last: u8,
    /// Bit position before this scan (`Ah`, 0 for a first scan).
    pub(super) high_bit: u8,
    /// Bit position this scan sends (`Al`).
    pub(super) low_bit: u8,
}

impl Scan {
    /// Reads a start-of-scan segment: `FF DA`, length, component count and selectors, `Ss`,
    /// `Se`, `Ah`/`Al` (the last byte of the segment).
    pub(super) fn read(segment: &[u8]) -> Option<Scan> {
        let n_components = usize::from(*segment.get(4)?);
        let spectral = 5 + 2 * n_components;
        if segment.len() != spectral + 3 {
            return None;
        }
        let approximation = segment[spectral + 2];
        Some(Scan {
            components: (0..n_components).map(|i| segment[5 + 2 * i]).collect(),
            first: segment[spectral],
            last: segment[spectral + 1],
            high_bit: approximation >> 4,
            low_bit: approximation & 0x0F,
        })
    }

    /// A first pass over AC coefficients.
    pub(super) fn first_ac(&self) -> bool {
        self.first > 0 && self.high_bit == 0
    }

    /// A refinement of AC coefficients.
    pub(super) fn refines_ac(&self) -> bool {
        self.first > 0 && self.high_bit > 0
    }

    /// A refinement of DC values.
    pub(super) fn refines_dc(&self) -> bool {
        self.first == 0 && self.high_bit > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_data_ends_at_a_marker_not_at_stuffing_or_restarts() {
        let data = [1, 0xFF, 0x00, 2, 0xFF, 0xD3, 3, 0xFF, 0xFF, 0xDA, 0, 0];
        assert_eq!(entropy_data_end(&data, 0), 7);
        assert_eq!(entropy_data_end(&[1, 2, 0xFF], 0), 3);
        assert_eq!(entropy_data_end(&[1, 2, 3], 0), 3);
    }
}
