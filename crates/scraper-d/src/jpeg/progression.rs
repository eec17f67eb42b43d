//! The scans of a progressive JPEG, and a copy of one without its refinement scans, which a
//! thumbnail does not need.
//!
//! A progressive JPEG (`SOF2`) sends its DCT coefficients in several scans: first the DC values
//! and bands of AC coefficients with their lowest bits held back (successive approximation,
//! `Al` > 0), then refinement scans (`Ah` > 0) that add one bit at a time. In libjpeg's standard
//! script the last luma refinement alone carries the lowest bit of every AC coefficient, and
//! decoding the refinement scans is most of a progressive file's decoding time. Without them the
//! coefficients lack their lowest bit or two, and a picture shrunk 8 to 16 times for a thumbnail
//! keeps almost nothing of that detail anyway. `scripts/bench-fetch.sh` and the tests measure
//! what it changes.

use super::layout::{Layout, Piece, Scan};
use super::quantization::{self, Shifts};

/// Most low bits an AC coefficient may lack once its refinements are left out: libjpeg's and
/// mozjpeg's standard scripts hold back two for luma and one for chroma. A file whose first AC
/// scans hold back more is decoded whole.
const MAX_MISSING_AC_BITS: u8 = 2;
/// Most low bits a DC value may lack: the standard scripts hold back one. A file whose first DC
/// scans hold back more keeps its DC refinements.
const MAX_MISSING_DC_BITS: u8 = 1;

/// What [`without_refinements`] made of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// The file without its refinement scans.
    pub bytes: Vec<u8>,
    /// Scans left out.
    pub dropped: usize,
    /// Whether the first scans' point transforms went into the quantization tables (see
    /// [`fold_point_transforms`]), and the DC refinements were left out too.
    pub folded: bool,
}

/// A copy of a progressive JPEG without the scans that refine coefficients, or `None` when the
/// file is not a Huffman-coded progressive JPEG, has no such scan, or does not parse (the caller
/// then decodes the file as it came, and libjpeg-turbo decides).
///
/// Where the quantization tables can carry the first scans' point transforms, those go into
/// the tables and every refinement scan is left out; otherwise only the AC refinements are, the
/// DC values stay whole, and libjpeg estimates the missing low-frequency AC bits from the
/// neighbouring blocks (block smoothing). No scan that stays refers to one left out, so the
/// progression libjpeg checks stays consistent. The copy is always shorter than the file.
pub(crate) fn without_refinements(bytes: &[u8]) -> Option<Pruned> {
    let layout = Layout::read(bytes)?;
    if layout
        .scans()
        .any(|scan| scan.first_ac() && scan.low_bit > MAX_MISSING_AC_BITS)
    {
        return None;
    }
    let folded = fold_point_transforms(&layout, bytes);
    let left_out = |scan: &Scan| scan.refines_ac() || (folded.is_some() && scan.refines_dc());
    let dropped = layout.scans().filter(|scan| left_out(scan)).count();
    if dropped == 0 {
        return None;
    }
    // The rewritten `DQT` segments, in the order of the pieces they replace.
    let mut rewritten = folded.iter().flatten();
    let mut out = Vec::with_capacity(bytes.len());
    for piece in &layout.pieces {
        match piece {
            Piece::Verbatim(range) => out.extend_from_slice(&bytes[range.clone()]),
            Piece::Quant(range) => match rewritten.next() {
                Some(segment) => out.extend_from_slice(segment),
                None => out.extend_from_slice(&bytes[range.clone()]),
            },
            Piece::Scan { scan, .. } if left_out(scan) => {}
            Piece::Scan { header, data, scan } => {
                let start = out.len();
                out.extend_from_slice(&bytes[header.start..data.end]);
                if folded.is_some() && scan.high_bit == 0 {
                    // Ah/Al is the header's last byte: Al to 0, the tables carry the shift.
                    out[start + header.len() - 1] = 0;
                }
            }
        }
    }
    (out.len() < bytes.len()).then_some(Pruned {
        bytes: out,
        dropped,
        folded: folded.is_some(),
    })
}

/// Takes the point transform out of the first scans: each sends coefficient values shifted
/// right by `Al` bits, which libjpeg shifts back before dequantizing; with `Al` set to 0 and the
/// quantization values of those coefficients multiplied by 2^`Al` instead, libjpeg computes the
/// same products. It then sees every coefficient complete and skips its block smoothing, which
/// is slower than the decode itself and, measured on thumbnails, brought them no closer to the
/// ones with every scan. The DC refinements can then go too: a DC value one bit short is off
/// by at most one quantization step (a fraction of a grey level after the reduction).
///
/// Returns the rewritten `DQT` segments in file order, or `None` when the tables
/// cannot carry the shifts: components sharing a table whose first scans leave out different
/// bit counts for one coefficient, a DC scan holding back more than [`MAX_MISSING_DC_BITS`], a
/// table defined after the first scan, a component without a table, or a value that would
/// outgrow libjpeg's 16-bit multipliers.
fn fold_point_transforms(layout: &Layout, bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if layout.tables_after_scans {
        return None;
    }
    let mut shifts = Shifts::default();
    for scan in layout.scans().filter(|scan| scan.high_bit == 0) {
        if scan.last > 63 || scan.first > scan.last {
            return None;
        }
        if scan.first == 0 && scan.low_bit > MAX_MISSING_DC_BITS {
            return None;
        }
        for id in &scan.components {
            let table = layout
                .components
                .iter()
                .find(|(component, _)| component == id)?
                .1;
            for k in scan.first..=scan.last {
                if !shifts.record(table, k, scan.low_bit) {
                    return None;
                }
            }
        }
    }
    layout
        .pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Quant(range) => Some(range),
            _ => None,
        })
        .map(|range| quantization::scaled(&bytes[range.clone()], &shifts))
        .collect()
}

#[cfg(test)]
mod tests {
    use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

    use super::*;
    use crate::jpeg::layout::{EOI, SOF2, SOS, entropy_data_end, next_marker};

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
        encode_at(90, progressive, arithmetic)
    }

    fn encode_at(quality: i32, progressive: bool, arithmetic: bool) -> Vec<u8> {
        let mut compressor = Compressor::new().expect("compressor");
        compressor.set_quality(quality).expect("quality");
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

    /// The scans of a file, in order, as `(Ss, Ah, Al)`.
    fn scans(bytes: &[u8]) -> Vec<(u8, u8, u8)> {
        Layout::read(bytes)
            .expect("a progressive file")
            .scans()
            .map(|scan| (scan.first, scan.high_bit, scan.low_bit))
            .collect()
    }

    /// The file without any refinement scan and nothing else changed: what the folded copy
    /// must decode like.
    fn without_refinements_unfolded(bytes: &[u8]) -> Vec<u8> {
        let layout = Layout::read(bytes).expect("a progressive file");
        let mut out = Vec::new();
        for piece in &layout.pieces {
            match piece {
                Piece::Verbatim(range) | Piece::Quant(range) => {
                    out.extend_from_slice(&bytes[range.clone()])
                }
                Piece::Scan { scan, .. } if scan.high_bit > 0 => {}
                Piece::Scan { header, data, .. } => {
                    out.extend_from_slice(&bytes[header.start..data.end])
                }
            }
        }
        out
    }

    /// The quantization tables of a file in zigzag order, by table number.
    fn tables(bytes: &[u8]) -> Vec<(u8, Vec<u16>)> {
        let layout = Layout::read(bytes).expect("a progressive file");
        let mut found = Vec::new();
        for piece in &layout.pieces {
            let Piece::Quant(range) = piece else { continue };
            for table in quantization::tables(&bytes[range.clone()]).expect("a DQT segment") {
                let values = table.values.iter().map(|value| *value as u16).collect();
                found.push((table.id, values));
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
    fn leaves_out_the_refinement_scans_and_folds_the_point_transforms() {
        let jpeg = encode(true, false);
        let before = scans(&jpeg);
        // libjpeg's standard script: DC first (Al 1), luma AC 1-5 (Al 2), chroma AC (Al 1),
        // luma AC 6-63 (Al 2), four AC refinements and one DC refinement.
        let refinements = before.iter().filter(|(_, ah, _)| *ah > 0).count();
        assert_eq!((before.len(), refinements), (10, 5), "{before:?}");
        let pruned = without_refinements(&jpeg).expect("a progressive file with refinements");
        assert!(pruned.folded);
        assert_eq!(pruned.dropped, refinements);
        let kept: Vec<_> = before
            .iter()
            .filter(|(_, ah, _)| *ah == 0)
            .map(|(ss, _, _)| (*ss, 0, 0))
            .collect();
        assert_eq!(scans(&pruned.bytes), kept);
        // Each table's values doubled once per bit its first scans held back.
        let (luma_shift, chroma_shift) = (2, 1);
        let folded: Vec<_> = tables(&jpeg)
            .into_iter()
            .map(|(id, values)| {
                let ac_shift = if id == 0 { luma_shift } else { chroma_shift };
                let values = values
                    .iter()
                    .enumerate()
                    .map(|(k, value)| value << if k == 0 { 1 } else { ac_shift })
                    .collect();
                (id, values)
            })
            .collect();
        assert_eq!(tables(&pruned.bytes), folded);
        assert!(
            pruned.bytes.len() < jpeg.len() * 3 / 4,
            "{} of {}",
            pruned.bytes.len(),
            jpeg.len()
        );
        assert_eq!(&pruned.bytes[pruned.bytes.len() - 2..], [0xFF, EOI]);
    }

    #[test]
    fn libjpeg_reads_the_tables_that_outgrow_a_byte() {
        // At quality 40 the luma values reach 120 and more: times 4 they need 16 bits.
        let jpeg = encode_at(40, true, false);
        let pruned = without_refinements(&jpeg).expect("pruned");
        assert!(pruned.folded);
        let widest = tables(&pruned.bytes)
            .iter()
            .flat_map(|(_, values)| values.iter().copied())
            .max();
        assert!(widest.is_some_and(|value| value > 255), "{widest:?}");
        // libjpeg-turbo decodes it without a warning, and the `image` crate's decoder exactly as
        // the unfolded copy.
        let quarter = decode_quarter(&pruned.bytes);
        assert_eq!(quarter.len(), 256 * 192 * 3);
        let decode = |bytes: &[u8]| {
            image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                .expect("decodes")
                .into_rgb8()
        };
        assert_eq!(
            decode(&pruned.bytes),
            decode(&without_refinements_unfolded(&jpeg))
        );
    }

    #[test]
    fn folding_changes_no_coefficient() {
        // The `image` crate's decoder (zune-jpeg) has no block smoothing, so the file without
        // refinements decodes the same whether the tables or the scans carry the shifts.
        let jpeg = encode(true, false);
        let folded = without_refinements(&jpeg).expect("pruned");
        assert!(folded.folded);
        let decode = |bytes: &[u8]| {
            image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                .expect("decodes")
                .into_rgb8()
        };
        let unfolded = decode(&without_refinements_unfolded(&jpeg));
        assert_eq!(decode(&folded.bytes), unfolded);
        assert_ne!(decode(&jpeg), unfolded, "the refinements carried something");
    }

    #[test]
    fn tables_that_cannot_carry_the_shifts_keep_the_dc_refinements() {
        // All three components on table 0: luma holds back two bits of AC 1-5, chroma one.
        let mut jpeg = encode(true, false);
        let layout = Layout::read(&jpeg).expect("progressive");
        let frame = layout
            .pieces
            .iter()
            .find_map(|piece| match piece {
                Piece::Verbatim(range) if jpeg[range.start + 1] == SOF2 => Some(range.start),
                _ => None,
            })
            .expect("a frame header");
        for component in 0..3 {
            jpeg[frame + 12 + 3 * component] = 0;
        }
        let pruned = without_refinements(&jpeg).expect("pruned");
        assert!(!pruned.folded);
        let kept: Vec<_> = scans(&jpeg)
            .into_iter()
            .filter(|(ss, ah, _)| *ss == 0 || *ah == 0)
            .collect();
        assert_eq!(pruned.dropped, 4, "the AC refinements only");
        assert_eq!(scans(&pruned.bytes), kept, "point transforms as they were");
        assert_eq!(tables(&pruned.bytes), tables(&jpeg));
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
        let pruned = without_refinements(&jpeg).expect("pruned");
        let (whole, quick) = (decode_quarter(&jpeg), decode_quarter(&pruned.bytes));
        assert_ne!(whole, quick, "the refinements carried something");
        let pruning = squared_error(&whole, &quick);
        let storing = squared_error(&whole, &stored(&whole));
        assert!(pruning < storing, "{pruning} against {storing}");
    }

    #[test]
    fn other_files_are_left_as_they_are() {
        assert_eq!(without_refinements(&encode(false, false)), None, "baseline");
        assert_eq!(
            without_refinements(&encode(true, true)),
            None,
            "arithmetic coding"
        );
        let jpeg = encode(true, false);
        assert_eq!(
            without_refinements(&jpeg[..jpeg.len() / 2]),
            None,
            "truncated"
        );
        assert_eq!(without_refinements(b"\xFF\xD8\xFF"), None);
        assert_eq!(without_refinements(b"GIF89a"), None);
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
        assert_eq!(without_refinements(&coarse), None, "three bits held back");
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
            if let Some(copy) = without_refinements(&damaged) {
                assert!(copy.bytes.len() < damaged.len());
                pruned += 1;
            }
        }
        // Damage inside entropy data leaves the structure as it was (about 1,350 of 3,000).
        assert!(pruned > 1_000, "{pruned} of 3,000 pruned");
    }
}
