//! Image bytes for the test web: procedural pictures, and the damaged and hostile variants.

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use crate::error::TestkitError;
use crate::rng::SplitMix64;

/// The image formats the test web serves.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
    Gif,
    Svg,
}

impl ImageKind {
    pub const ALL: [ImageKind; 5] = [Self::Jpeg, Self::Png, Self::Webp, Self::Gif, Self::Svg];

    /// The kind named by a file extension (`jpg`, `jpeg`, `png`, `webp`, `gif`, `svg`).
    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "png" => Some(Self::Png),
            "webp" => Some(Self::Webp),
            "gif" => Some(Self::Gif),
            "svg" => Some(Self::Svg),
            _ => None,
        }
    }

    /// The kind of a URL path, from the extension of its last segment.
    pub fn from_path(path: &str) -> Option<Self> {
        let last = path.rsplit('/').next()?;
        let (_, extension) = last.rsplit_once('.')?;
        Self::from_extension(extension)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Svg => "svg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Svg => "image/svg+xml",
        }
    }
}

mod scan_bomb;

pub use scan_bomb::{SCAN_BOMB_SCANS, SCAN_BOMB_SIDE, scan_bomb_jpeg};

/// Width and height every decompression bomb claims.
pub const BOMB_SIDE: u32 = 50_000;

/// A smooth, photo-like RGB picture (gradients, discs and grain), deterministic in `seed`.
pub fn photo_like(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let base: [f32; 3] = [
        rng.below(256) as f32,
        rng.below(256) as f32,
        rng.below(256) as f32,
    ];
    let tilt: [f32; 3] = [
        rng.below(200) as f32 - 100.0,
        rng.below(200) as f32 - 100.0,
        rng.below(200) as f32 - 100.0,
    ];
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..6)
        .map(|_| {
            let cx = rng.below(u64::from(width.max(1))) as f32;
            let cy = rng.below(u64::from(height.max(1))) as f32;
            let radius = (rng.below(u64::from(width.min(height).max(4) / 2)) + 2) as f32;
            (
                cx,
                cy,
                radius,
                [
                    rng.below(256) as f32,
                    rng.below(256) as f32,
                    rng.below(256) as f32,
                ],
            )
        })
        .collect();
    let grain_seed = rng.next_u64();
    RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width.max(1) as f32;
        let fy = y as f32 / height.max(1) as f32;
        let mut pixel = [0f32; 3];
        for channel in 0..3 {
            pixel[channel] = base[channel] + tilt[channel] * (fx - fy);
        }
        for (cx, cy, radius, colour) in &discs {
            let distance = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            if distance < *radius {
                let weight = 1.0 - distance / radius;
                for channel in 0..3 {
                    pixel[channel] = pixel[channel] * (1.0 - weight) + colour[channel] * weight;
                }
            }
        }
        let grain = (crate::rng::stable_hash(&[(x ^ y) as u8, (x >> 3) as u8, (y >> 3) as u8])
            ^ grain_seed)
            % 17;
        image::Rgb(pixel.map(|value| (value + grain as f32 - 8.0).clamp(0.0, 255.0) as u8))
    })
}

/// Encodes `picture` as `kind` (JPEG at quality 88; WebP is lossless, the only WebP the `image` crate writes).
pub fn encode(picture: &RgbImage, kind: ImageKind) -> Result<Vec<u8>, TestkitError> {
    let mut out = Vec::new();
    let (width, height) = picture.dimensions();
    match kind {
        ImageKind::Jpeg => JpegEncoder::new_with_quality(&mut out, 88).write_image(
            picture,
            width,
            height,
            ExtendedColorType::Rgb8,
        )?,
        ImageKind::Png => PngEncoder::new(&mut out).write_image(
            picture,
            width,
            height,
            ExtendedColorType::Rgb8,
        )?,
        ImageKind::Webp => WebPEncoder::new_lossless(&mut out).write_image(
            picture,
            width,
            height,
            ExtendedColorType::Rgb8,
        )?,
        ImageKind::Gif => {
            let mut encoder = GifEncoder::new_with_speed(&mut out, 30);
            encoder.encode(picture, width, height, ExtendedColorType::Rgb8)?;
        }
        ImageKind::Svg => out = svg(width, height, 0),
    }
    Ok(out)
}

/// A small SVG document of `width` x `height`.
pub fn svg(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let colour = format!("#{:06x}", rng.below(0x100_0000));
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n  <rect width=\"100%\" height=\"100%\" fill=\"{colour}\"/>\n  <circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"#ffffff\" opacity=\"0.6\"/>\n</svg>\n",
        width / 2,
        height / 2,
        width.min(height) / 3
    )
    .into_bytes()
}

/// The first half of `bytes`: a valid start, then nothing.
pub fn truncated(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len() / 2].to_vec()
}

/// Keeps the format's magic number and replaces everything after it with noise, so no decoder can
/// find a valid header (a corrupted file that still sniffs as the right type).
pub fn corrupt(bytes: &[u8], seed: u64) -> Vec<u8> {
    let keep = 8.min(bytes.len());
    let mut out = bytes[..keep].to_vec();
    let mut noise = vec![0u8; bytes.len().saturating_sub(keep).max(256)];
    SplitMix64::new(seed ^ 0xc0ff_ee00).fill(&mut noise);
    out.extend_from_slice(&noise);
    out
}

/// A small, valid file of `kind` whose header claims [`BOMB_SIDE`] x [`BOMB_SIDE`] pixels.
///
/// A decoder that allocates from the header (7.5 GB of RGB) before checking limits falls over;
/// a careful client rejects it from the dimensions alone.
pub fn lying_bomb(kind: ImageKind) -> Result<Vec<u8>, TestkitError> {
    let tiny = photo_like(16, 16, 99);
    let side16 =
        u16::try_from(BOMB_SIDE).expect("the bomb side fits the 16-bit JPEG and GIF fields");
    match kind {
        ImageKind::Png => Ok(png_with_header(
            BOMB_SIDE,
            BOMB_SIDE,
            2,
            &zlib_zero_rows(1, 3 * 64),
        )),
        ImageKind::Jpeg => {
            let mut bytes = encode(&tiny, ImageKind::Jpeg)?;
            let sof = find_jpeg_sof(&bytes)
                .ok_or_else(|| TestkitError::Config("encoded jpeg has no SOF marker".into()))?;
            bytes[sof + 5..sof + 7].copy_from_slice(&side16.to_be_bytes());
            bytes[sof + 7..sof + 9].copy_from_slice(&side16.to_be_bytes());
            Ok(bytes)
        }
        ImageKind::Gif => {
            let mut bytes = encode(&tiny, ImageKind::Gif)?;
            bytes[6..8].copy_from_slice(&side16.to_le_bytes());
            bytes[8..10].copy_from_slice(&side16.to_le_bytes());
            Ok(bytes)
        }
        ImageKind::Webp => {
            let lossless = encode(&tiny, ImageKind::Webp)?;
            let vp8l = &lossless[12..];
            let mut vp8x = Vec::with_capacity(18);
            vp8x.extend_from_slice(b"VP8X");
            vp8x.extend_from_slice(&10u32.to_le_bytes());
            vp8x.extend_from_slice(&[0, 0, 0, 0]);
            vp8x.extend_from_slice(&(BOMB_SIDE - 1).to_le_bytes()[..3]);
            vp8x.extend_from_slice(&(BOMB_SIDE - 1).to_le_bytes()[..3]);
            let riff_size =
                u32::try_from(4 + vp8x.len() + vp8l.len()).expect("a tiny webp fits in u32");
            let mut out = Vec::new();
            out.extend_from_slice(b"RIFF");
            out.extend_from_slice(&riff_size.to_le_bytes());
            out.extend_from_slice(b"WEBP");
            out.extend_from_slice(&vp8x);
            out.extend_from_slice(vp8l);
            Ok(out)
        }
        ImageKind::Svg => Ok(svg(BOMB_SIDE, BOMB_SIDE, 1)),
    }
}

/// A real decompression bomb: a `side` x `side` 8-bit grey PNG of zeros whose IDAT inflates to
/// `side * (side + 1)` bytes (268 MB for 16384) from a few hundred KB.
pub fn zip_bomb_png(side: u32) -> Vec<u8> {
    let row_len = usize::try_from(side).expect("side fits in usize") + 1;
    png_with_header(side, side, 0, &zlib_zero_rows(side, row_len))
}

/// A valid 200 x 150 PNG whose colour profile (`iCCP`, before the pixels) inflates to about
/// `profile_bytes` zero bytes, from about 1 KB per MiB: what a decoder that reads profiles
/// allocates before any pixel (the `image` crate: up to its allocation limit, 512 MiB by
/// default). Its pixels are [`photo_like`]`(200, 150, 7)`.
pub fn iccp_bomb_png(profile_bytes: u64) -> Result<Vec<u8>, TestkitError> {
    const ROW: u64 = 1 << 20;
    let plain = encode(&photo_like(200, 150, 7), ImageKind::Png)?;
    let n_rows = u32::try_from(profile_bytes.div_ceil(ROW))
        .map_err(|_| TestkitError::Config("profile too large".into()))?;
    let mut profile = b"bomb\0\0".to_vec();
    profile.extend(zlib_zero_rows(n_rows, ROW as usize));
    // The signature (8 bytes) and IHDR (25) come first; the profile must precede IDAT.
    let mut out = plain[..33].to_vec();
    push_png_chunk(&mut out, b"iCCP", &profile);
    out.extend_from_slice(&plain[33..]);
    Ok(out)
}

/// This process's peak resident set so far in KiB (Linux `VmHWM`), for tests that bound what a
/// bomb costs: run them in a test binary of their own, so the peak is theirs alone.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .expect("/proc/self/status has VmHWM")
}

/// Width, height and format of an image, read from its header only.
pub fn sniff(bytes: &[u8]) -> Option<(image::ImageFormat, u32, u32)> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let format = reader.format()?;
    let (width, height) = reader.into_dimensions().ok()?;
    Some((format, width, height))
}

fn find_jpeg_sof(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len().saturating_sub(9))
        .find(|&index| bytes[index] == 0xff && matches!(bytes[index + 1], 0xc0 | 0xc2))
}

fn png_with_header(width: u32, height: u32, colour_type: u8, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, colour_type, 0, 0, 0]);
    push_png_chunk(&mut out, b"IHDR", &ihdr);
    push_png_chunk(&mut out, b"IDAT", idat);
    push_png_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("png chunk below 4 GiB");
    out.extend_from_slice(&length.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A zlib stream of `n_rows` rows of `row_len` zero bytes, built from one compressed row.
///
/// After a full flush a deflate compressor is byte-aligned with an empty dictionary, so the bytes
/// of one row can be repeated; the Adler-32 of `n` zero bytes is `a = 1`, `b = n mod 65521`.
fn zlib_zero_rows(n_rows: u32, row_len: usize) -> Vec<u8> {
    let mut compressor = flate2::Compress::new(flate2::Compression::best(), false);
    let mut row = Vec::with_capacity(row_len / 100 + 64);
    compressor
        .compress_vec(&vec![0u8; row_len], &mut row, flate2::FlushCompress::Full)
        .expect("compressing zeros into a sized buffer cannot fail");
    let mut out = vec![0x78, 0xda];
    for _ in 0..n_rows {
        out.extend_from_slice(&row);
    }
    // A final, empty fixed-Huffman block.
    out.extend_from_slice(&[0x03, 0x00]);
    let total = u64::from(n_rows) * row_len as u64;
    let adler = ((total % 65_521) << 16) | 1;
    out.extend_from_slice(
        &u32::try_from(adler)
            .expect("adler-32 fits in 32 bits")
            .to_be_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_encodes_and_sniffs() {
        let picture = photo_like(40, 30, 3);
        for kind in [
            ImageKind::Jpeg,
            ImageKind::Png,
            ImageKind::Webp,
            ImageKind::Gif,
        ] {
            let bytes = encode(&picture, kind).expect("encode");
            let (_, width, height) = sniff(&bytes).expect("sniff");
            assert_eq!((width, height), (40, 30), "{kind:?}");
            image::load_from_memory(&bytes).expect("decode");
        }
        assert!(
            String::from_utf8(svg(10, 10, 1))
                .expect("utf8")
                .contains("<svg")
        );
    }

    #[test]
    fn bombs_claim_huge_dimensions() {
        for kind in [
            ImageKind::Jpeg,
            ImageKind::Png,
            ImageKind::Webp,
            ImageKind::Gif,
        ] {
            let bytes = lying_bomb(kind).expect("bomb");
            assert!(bytes.len() < 10_000, "{kind:?} is {} bytes", bytes.len());
            let (_, width, height) =
                sniff(&bytes).unwrap_or_else(|| panic!("{kind:?} header unreadable"));
            assert_eq!((width, height), (BOMB_SIDE, BOMB_SIDE), "{kind:?}");
            assert!(
                image::load_from_memory(&bytes).is_err(),
                "{kind:?} decoded under default limits"
            );
        }
    }

    #[test]
    fn zip_bomb_inflates_to_its_claimed_size() {
        use std::io::Read;
        let bytes = zip_bomb_png(2048);
        assert!(bytes.len() < 100_000, "{}", bytes.len());
        let (_, width, height) = sniff(&bytes).expect("sniff");
        assert_eq!((width, height), (2048, 2048));
        let decoded =
            image::load_from_memory(&bytes).expect("a small zip bomb is still a valid png");
        assert_eq!(decoded.width(), 2048);
        // The IDAT alone inflates to side * (side + 1) bytes.
        let idat_start = 8 + 25 + 8;
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(&bytes[idat_start..])
            .read_to_end(&mut inflated)
            .expect("inflate");
        assert_eq!(inflated.len(), 2048 * 2049);
    }

    #[test]
    fn damaged_images_do_not_decode() {
        let good = encode(&photo_like(64, 64, 5), ImageKind::Png).expect("encode");
        assert!(image::load_from_memory(&truncated(&good)).is_err());
        let jpeg = encode(&photo_like(64, 64, 5), ImageKind::Jpeg).expect("encode");
        for bytes in [corrupt(&good, 1), corrupt(&jpeg, 1)] {
            assert!(image::load_from_memory(&bytes).is_err());
        }
        assert_eq!(ImageKind::from_path("/ok/a/b.JPG"), Some(ImageKind::Jpeg));
        assert_eq!(ImageKind::from_path("/ok/a/b"), None);
    }
}
