//! PNG chunks dropped before decoding: colour profiles (`iCCP`). The thumbnails ignore them (as
//! OpenCV does), and a profile is zlib data that the decoder inflates up to its whole memory
//! limit: a 1 MB file whose profile inflates to 1 GiB held 512 MiB per decode.

use std::ops::Range;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// `bytes` without its `iCCP` chunks; `None` when it has none (or is no PNG). Chunks are walked
/// up to the first `IDAT` (a profile must come before it); a chunk list that breaks off before
/// is left for the decoder to judge.
pub(crate) fn without_iccp(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&SIGNATURE) {
        return None;
    }
    let mut profiles: Vec<Range<usize>> = Vec::new();
    let mut at = SIGNATURE.len();
    while let Some(header) = bytes.get(at..at + 8) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        // Length, type, data, CRC.
        let end = at.saturating_add(12).saturating_add(length);
        if end > bytes.len() || kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"iCCP" {
            profiles.push(at..end);
        }
        at = end;
    }
    if profiles.is_empty() {
        return None;
    }
    let mut kept = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for profile in profiles {
        kept.extend_from_slice(&bytes[from..profile.start]);
        from = profile.end;
    }
    kept.extend_from_slice(&bytes[from..]);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A chunk as PNG writes it.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
        out
    }

    /// A PNG of `image` with `extra` inserted after IHDR.
    fn png_with(image: &image::RgbImage, extra: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut plain), image::ImageFormat::Png)
            .expect("encode");
        // Signature (8) and IHDR (4 + 4 + 13 + 4).
        let split = 8 + 25;
        let mut out = plain[..split].to_vec();
        out.extend_from_slice(extra);
        out.extend_from_slice(&plain[split..]);
        out
    }

    #[test]
    fn profiles_are_dropped_and_everything_else_kept() {
        let image = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        });
        let text = chunk(b"tEXt", b"Comment\0kept");
        let profile = chunk(b"iCCP", b"icc\0\0not really zlib");
        let with_profile = png_with(&image, &[profile.clone(), text.clone()].concat());
        let stripped = without_iccp(&with_profile).expect("has a profile");
        assert_eq!(stripped, png_with(&image, &text));
        assert_eq!(without_iccp(&stripped), None);
        assert_eq!(without_iccp(b"not a png"), None);
    }
}
