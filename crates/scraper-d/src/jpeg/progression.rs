//! The scans of a progressive JPEG, and a copy of one without its AC refinement scans, which a
//! thumbnail does not need.
//!
//! A progressive JPEG (`SOF2`) sends its DCT coefficients in several scans: first the DC values
//! and bands of AC coefficients with their lowest bits held back (successive approximation,
//! `Al` > 0), then refinement scans (`Ah` > 0) that add one bit at a time. In libjpeg's standard
//! script the last luma refinement alone carries the lowest bit of every AC coefficient, and
//! decoding the refinement scans is most of a progressive file's decoding time. Without them the
//! AC coefficients lack their lowest bit or two; libjpeg then estimates the missing low-frequency
//! ones from the neighbouring blocks (block smoothing, as a browser's progressive preview), and a
//! picture shrunk 8 to 16 times for a thumbnail keeps almost nothing of that detail anyway.
//! `scripts/bench-fetch.sh` and the tests measure what it changes.

/// Start of frame, progressive with Huffman coding: the only kind [`without_ac_refinement`]
/// changes.
const SOF2: u8 = 0xC2;
/// Start of scan.
const SOS: u8 = 0xDA;
/// End of image.
const EOI: u8 = 0xD9;
/// Start of image.
const SOI: u8 = 0xD8;
/// Most low bits an AC coefficient may lack once its refinements are left out: libjpeg's and
/// mozjpeg's standard scripts hold back two for luma and one for chroma. A file whose first AC
/// scans hold back more is decoded whole.
const MAX_MISSING_BITS: u8 = 2;

/// What [`without_ac_refinement`] made of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// The file without its AC refinement scans.
    pub bytes: Vec<u8>,
    /// Scans left out.
    pub dropped: usize,
}

/// A copy of a progressive JPEG without the scans that refine AC coefficients, or `None` when
/// the file is not a Huffman-coded progressive JPEG, has no such scan, or does not parse (the
/// caller then decodes the file as it came, and libjpeg-turbo decides).
///
/// DC refinements stay (they are cheap, and a block's mean is what a thumbnail keeps best); no
/// scan that stays refers to one left out, so the progression libjpeg checks stays consistent.
pub(crate) fn without_ac_refinement(bytes: &[u8]) -> Option<Pruned> {
    if bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    let mut progressive = false;
    let mut dropped = 0;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        match marker {
            EOI => {
                out.extend_from_slice(&bytes[start..start + 2]);
                break;
            }
            // Standalone markers outside entropy-coded data: a file that has them is unusual
            // enough to be left to libjpeg-turbo as it is.
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
        match marker {
            SOF2 => {
                progressive = true;
                out.extend_from_slice(segment);
                at = segment_end;
            }
            // Any other start of frame (DHT, JPG and DAC share the range).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return None,
            SOS => {
                if !progressive {
                    return None;
                }
                let data_end = entropy_data_end(bytes, segment_end);
                let scan = Scan::read(segment)?;
                if scan.first_ac() && scan.low_bit > MAX_MISSING_BITS {
                    return None;
                }
                if scan.refines_ac() {
                    dropped += 1;
                } else {
                    out.extend_from_slice(&bytes[start..data_end]);
                }
                at = data_end;
            }
            _ => {
                out.extend_from_slice(segment);
                at = segment_end;
            }
        }
    }
    (dropped > 0).then_some(Pruned {
        bytes: out,
        dropped,
    })
}

/// The next marker at or after `at` (fill bytes `FF` skipped) and where its `FF` is.
fn next_marker(bytes: &[u8], at: usize) -> Option<(u8, usize)> {
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
fn entropy_data_end(bytes: &[u8], from: usize) -> usize {
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

/// The spectral selection and successive approximation of one scan.
struct Scan {
    /// First coefficient (`Ss`, 0 for DC).
    first: u8,
    /// Bit position before this scan (`Ah`, 0 for a first scan).
    high_bit: u8,
    /// Bit position this scan sends (`Al`).
    low_bit: u8,
}

impl Scan {
    /// Reads a start-of-scan segment: `FF DA`, length, component count and selectors, `Ss`,
    /// `Se`, `Ah`/`Al`.
    fn read(segment: &[u8]) -> Option<Scan> {
        let n_components = usize::from(*segment.get(4)?);
        let spectral = 5 + 2 * n_components;
        let approximation = *segment.get(spectral + 2)?;
        Some(Scan {
            first: *segment.get(spectral)?,
            high_bit: approximation >> 4,
            low_bit: approximation & 0x0F,
        })
    }

    /// A first pass over AC coefficients.
    fn first_ac(&self) -> bool {
        self.first > 0 && self.high_bit == 0
    }

    /// A refinement of AC coefficients.
    fn refines_ac(&self) -> bool {
        self.first > 0 && self.high_bit > 0
    }
}

#[cfg(test)]
mod tests {
    use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

    use super::*;

    /// A 1024×768 picture with detail at every frequency: gradients, stripes and noise.
    fn detailed() -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        let mut pixels = Vec::with_capacity(1024 * 768 * 3);
        for y in 0..768u32 {
            for x in 0..1024u32 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state % 48) as u8;
                let stripes = if (x / 3 + y / 5) % 2 == 0 { 60 } else { 0 };
                pixels.extend([
                    (x / 8) as u8 / 2 + noise + stripes,
                    (y / 6) as u8 / 2 + noise,
                    ((x + y) / 16) as u8 + stripes,
                ]);
            }
        }
        pixels
    }

    fn encode(progressive: bool, arithmetic: bool) -> Vec<u8> {
        let mut compressor = Compressor::new().expect("compressor");
        compressor.set_quality(90).expect("quality");
        compressor
            .set_subsamp(Subsamp::Sub2x2)
            .expect("subsampling");
        compressor
            .set_progressive(progressive)
            .expect("progressive");
        compressor.set_arithmetic(arithmetic).expect("arithmetic");
        let pixels = detailed();
        compressor
            .compress_to_vec(Image {
                pixels: pixels.as_slice(),
                width: 1024,
                pitch: 1024 * 3,
                height: 768,
                format: PixelFormat::RGB,
            })
            .expect("encodes")
    }

    /// The scans of a file, in order, as `(Ss, Ah)`.
    fn scans(bytes: &[u8]) -> Vec<(u8, u8)> {
        let mut found = Vec::new();
        let mut at = 2;
        while let Some((marker, start)) = next_marker(bytes, at) {
            if marker == EOI {
                break;
            }
            let length = usize::from(u16::from_be_bytes([bytes[start + 2], bytes[start + 3]]));
            let end = start + 2 + length;
            if marker == SOS {
                let scan = Scan::read(&bytes[start..end]).expect("scan header");
                found.push((scan.first, scan.high_bit));
                at = entropy_data_end(bytes, end);
            } else {
                at = end;
            }
        }
        found
    }

    fn decode_quarter(bytes: &[u8]) -> Vec<u8> {
        let mut decompressor = Decompressor::new().expect("decompressor");
        let quarter = ScalingFactor::new(1, 4);
        decompressor.set_scaling_factor(quarter).expect("scale");
        let header = decompressor
            .read_header(bytes)
            .expect("header")
            .scaled(quarter);
        let mut image = Image {
            pixels: vec![0; header.width * header.height * 3],
            width: header.width,
            pitch: header.width * 3,
            height: header.height,
            format: PixelFormat::RGB,
        };
        decompressor
            .decompress(bytes, image.as_deref_mut())
            .expect("decodes without a warning");
        image.pixels
    }

    #[test]
    fn leaves_out_exactly_the_ac_refinement_scans() {
        let jpeg = encode(true, false);
        let before = scans(&jpeg);
        let pruned = without_ac_refinement(&jpeg).expect("a progressive file with refinements");
        let after = scans(&pruned.bytes);
        let refinements = before.iter().filter(|(ss, ah)| *ss > 0 && *ah > 0).count();
        // libjpeg's standard script: 10 scans, of which four refine AC coefficients.
        assert_eq!((before.len(), refinements), (10, 4), "{before:?}");
        assert_eq!(pruned.dropped, refinements);
        let kept: Vec<_> = before
            .iter()
            .copied()
            .filter(|(ss, ah)| *ss == 0 || *ah == 0)
            .collect();
        assert_eq!(after, kept);
        assert!(
            pruned.bytes.len() < jpeg.len() * 3 / 4,
            "{} of {}",
            pruned.bytes.len(),
            jpeg.len()
        );
        assert_eq!(&pruned.bytes[pruned.bytes.len() - 2..], [0xFF, EOI]);
    }

    fn squared_error(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum()
    }

    /// What storing `pixels` (256×192 RGB) as a quality-95 JPEG does to them.
    fn stored(pixels: &[u8]) -> Vec<u8> {
        let jpeg = crate::jpeg::encode_rgb(pixels, 256, 192, 95).expect("encodes");
        turbojpeg::decompress(&jpeg, PixelFormat::RGB)
            .expect("decodes")
            .pixels
    }

    #[test]
    fn the_pruned_file_differs_less_than_storing_the_thumbnail_does() {
        let jpeg = encode(true, false);
        let pruned = without_ac_refinement(&jpeg).expect("pruned");
        let (whole, quick) = (decode_quarter(&jpeg), decode_quarter(&pruned.bytes));
        assert_ne!(whole, quick, "the refinements carried something");
        let pruning = squared_error(&whole, &quick);
        let storing = squared_error(&whole, &stored(&whole));
        assert!(pruning < storing, "{pruning} against {storing}");
    }

    #[test]
    fn other_files_are_left_as_they_are() {
        assert_eq!(
            without_ac_refinement(&encode(false, false)),
            None,
            "baseline"
        );
        assert_eq!(
            without_ac_refinement(&encode(true, true)),
            None,
            "arithmetic coding"
        );
        let jpeg = encode(true, false);
        assert_eq!(
            without_ac_refinement(&jpeg[..jpeg.len() / 2]),
            None,
            "truncated"
        );
        assert_eq!(without_ac_refinement(b"\xFF\xD8\xFF"), None);
        assert_eq!(without_ac_refinement(b"GIF89a"), None);
        // A first AC scan that holds back three bits: the refinements are needed.
        let mut coarse = jpeg.clone();
        let mut at = 2;
        while let Some((marker, start)) = next_marker(&coarse, at) {
            let length = usize::from(u16::from_be_bytes([coarse[start + 2], coarse[start + 3]]));
            let end = start + 2 + length;
            if marker == SOS {
                let scan = Scan::read(&coarse[start..end]).expect("scan");
                if scan.first_ac() {
                    coarse[end - 1] = 3;
                    break;
                }
                at = entropy_data_end(&coarse, end);
            } else {
                at = end;
            }
        }
        assert_eq!(without_ac_refinement(&coarse), None, "three bits held back");
    }

    #[test]
    fn damaged_files_never_panic_and_never_grow() {
        let jpeg = encode(true, false);
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        let mut pruned = 0;
        for _ in 0..3_000 {
            let mut damaged = jpeg.clone();
            for _ in 0..1 + next() % 4 {
                let at = next() % damaged.len();
                // Marker bytes and length fields are where a parser goes wrong.
                damaged[at] = [0xFF, 0xDA, 0x00, 0xD9, next() as u8][next() % 5];
            }
            if next() % 4 == 0 {
                damaged.truncate(damaged.len() - next() % 64);
            }
            if let Some(copy) = without_ac_refinement(&damaged) {
                assert!(copy.bytes.len() < damaged.len());
                pruned += 1;
            }
        }
        // Damage inside entropy data leaves the structure as it was (about 1,350 of 3,000).
        assert!(pruned > 1_000, "{pruned} of 3,000 pruned");
    }

    #[test]
    fn entropy_data_ends_at_a_marker_not_at_stuffing_or_restarts() {
        let data = [1, 0xFF, 0x00, 2, 0xFF, 0xD3, 3, 0xFF, 0xFF, 0xDA, 0, 0];
        assert_eq!(entropy_data_end(&data, 0), 7);
        assert_eq!(entropy_data_end(&[1, 2, 0xFF], 0), 3);
        assert_eq!(entropy_data_end(&[1, 2, 3], 0), 3);
    }
}
