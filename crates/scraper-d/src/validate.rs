//! Checks a downloaded body before and while decoding: size, format sniffed from the bytes,
//! pixel count read from the header before any pixel is decoded, and a decode that may
//! allocate little more than its pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::jpeg::Refusal;
use crate::stats::Outcome;

/// Limits of image validation.
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    /// Smaller bodies are `too_small` (default 5,000 bytes).
    pub min_bytes: usize,
    /// Headers claiming more pixels are `too_big` (default 40 megapixels).
    pub max_pixels: u64,
    /// JPEGs with more scans are `decode_error` before decoding (default 100). Each scan of a
    /// progressive JPEG is a pass over all of the image's blocks, and an empty one takes a few
    /// bytes: a small hostile file of thousands of them costs minutes of CPU (libjpeg-turbo's
    /// "Two Issues with the JPEG Standard"; its TurboJPEG API has the same limit, off by default).
    pub max_jpeg_scans: usize,
    /// Accepted formats (default JPEG, PNG, WebP).
    pub formats: Vec<ImageFormat>,
    /// Leave out the refinement scans of progressive JPEGs decoded at a reduced scale (default
    /// on; see `jpeg/progression.rs`).
    pub skip_refinements: bool,
}

impl ValidateConfig {
    /// The defaults named on each field.
    pub fn standard() -> Self {
        ValidateConfig {
            min_bytes: 5_000,
            max_pixels: 40_000_000,
            max_jpeg_scans: 100,
            formats: vec![ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP],
            skip_refinements: true,
        }
    }
}

/// Most memory reading an image's header may take (its dimensions, before any pixel).
const MAX_HEADER_ALLOCATION: u64 = 16 * 1024 * 1024;

/// A decoded picture with the size it was downloaded at.
#[derive(Debug)]
pub struct Decoded {
    pub image: DynamicImage,
    pub format: ImageFormat,
    pub original_width: u32,
    pub original_height: u32,
}

/// Validates and decodes `bytes`, or names why not. JPEGs go through libjpeg-turbo
/// ([`crate::jpeg`]), at 1/2, 1/4 or 1/8 scale in the DCT domain when the shorter side stays at
/// least `scale_to`, and still WebPs through libwebp ([`crate::webp`]); the `image` crate
/// decodes the rest, and whatever those two libraries refuse.
pub fn decode(
    bytes: &[u8],
    config: &ValidateConfig,
    scale_to: Option<u32>,
) -> Result<Decoded, Outcome> {
    if bytes.len() < config.min_bytes {
        return Err(Outcome::TooSmall);
    }
    let format = image::guess_format(bytes).map_err(|_| Outcome::BadFormat)?;
    if !config.formats.contains(&format) {
        return Err(Outcome::BadFormat);
    }
    // Reading the header allocates little; a format that would allocate more for it (a
    // metadata chunk that inflates) is refused rather than followed.
    let mut probe = ImageReader::with_format(Cursor::new(bytes), format);
    let mut probe_limits = image::Limits::default();
    probe_limits.max_alloc = Some(MAX_HEADER_ALLOCATION);
    probe.limits(probe_limits);
    let (width, height) = probe.into_dimensions().map_err(|_| Outcome::DecodeError)?;
    if width == 0 || height == 0 {
        return Err(Outcome::DecodeError);
    }
    if u64::from(width) * u64::from(height) > config.max_pixels {
        return Err(Outcome::TooBig);
    }
    // Before either decoder sees it: libjpeg-turbo, and the `image` crate it falls back to.
    if format == ImageFormat::Jpeg && crate::jpeg::has_more_scans(bytes, config.max_jpeg_scans) {
        return Err(Outcome::DecodeError);
    }
    if format == ImageFormat::Jpeg {
        let reduce = crate::jpeg::Reduce {
            scale_to,
            skip_refinements: config.skip_refinements,
        };
        match crate::jpeg::decode(bytes, (width, height), reduce) {
            Ok(image) => {
                return Ok(Decoded {
                    image,
                    format,
                    original_width: width,
                    original_height: height,
                });
            }
            Err(Refusal::SizeMismatch) => return Err(Outcome::DecodeError),
            Err(Refusal::Declined) => {}
        }
    }
    if format == ImageFormat::WebP
        && let Some(image) = crate::webp::decode(bytes, width, height)
    {
        return Ok(Decoded {
            image,
            format,
            original_width: width,
            original_height: height,
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The pixels at up to 8 bytes each (16-bit RGBA) and a header's worth of slack, within four
    // bytes per allowed pixel: nothing before the pixels (a PNG's colour profile, zlib data the
    // decoder inflates up to its limit) can take more, nor can a header that lies.
    limits.max_alloc = Some(
        (u64::from(width) * u64::from(height) * 8)
            .saturating_add(MAX_HEADER_ALLOCATION)
            .min(config.max_pixels.saturating_mul(4).saturating_add(1 << 20)),
    );
    reader.limits(limits);
    let image = reader.decode().map_err(|_| Outcome::DecodeError)?;
    Ok(Decoded {
        image,
        format,
        original_width: width,
        original_height: height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 251) as u8,
                (y * 13 % 251) as u8,
                ((x ^ y) % 251) as u8,
            ])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut bytes), format)
            .expect("encode");
        bytes
    }

    #[test]
    fn outcomes_follow_the_checks_in_order() {
        let config = ValidateConfig::standard();
        assert_eq!(
            decode(&[0xff; 10], &config, None).err(),
            Some(Outcome::TooSmall)
        );
        assert_eq!(
            decode(&[b'<'; 6000], &config, None).err(),
            Some(Outcome::BadFormat)
        );
        let png = encoded(300, 200, ImageFormat::Png);
        let decoded = decode(&png, &config, None).expect("valid png");
        assert_eq!(
            (decoded.original_width, decoded.original_height),
            (300, 200)
        );
        let gif = encoded(300, 200, ImageFormat::Gif);
        assert!(gif.len() >= 5000);
        assert_eq!(decode(&gif, &config, None).err(), Some(Outcome::BadFormat));
        let small_cap = ValidateConfig {
            max_pixels: 1000,
            ..ValidateConfig::standard()
        };
        assert_eq!(decode(&png, &small_cap, None).err(), Some(Outcome::TooBig));
        let mut corrupt = png.clone();
        corrupt.truncate(png.len() / 2);
        assert_eq!(
            decode(&corrupt, &config, None).err(),
            Some(Outcome::DecodeError)
        );
    }
}

#[cfg(test)]
mod scaled_tests {
    use super::*;

    #[test]
    fn large_jpegs_are_decoded_at_a_reduced_scale_never_below_the_target() {
        let image = image::RgbImage::from_fn(1024, 768, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .expect("encode");
        let config = ValidateConfig::standard();
        let scaled = decode(&jpeg, &config, Some(256)).expect("decodes");
        assert_eq!((scaled.original_width, scaled.original_height), (1024, 768));
        // 1/2 scale: 512x384, the smallest IDCT scale whose shorter side is at least 256.
        assert_eq!((scaled.image.width(), scaled.image.height()), (512, 384));
        let full = decode(&jpeg, &config, None).expect("decodes");
        assert_eq!((full.image.width(), full.image.height()), (1024, 768));
        let grey =
            image::GrayImage::from_fn(1024, 768, |x, y| image::Luma([((x * y) % 251) as u8]));
        let mut grey_jpeg = Vec::new();
        DynamicImage::ImageLuma8(grey)
            .write_to(&mut Cursor::new(&mut grey_jpeg), ImageFormat::Jpeg)
            .expect("encode");
        let scaled_grey = decode(&grey_jpeg, &config, Some(256)).expect("decodes");
        assert_eq!(
            (scaled_grey.image.width(), scaled_grey.image.height()),
            (512, 384)
        );
        assert_eq!(scaled_grey.image.color(), image::ColorType::L8);
        let small = decode(&jpeg, &config, Some(1000)).expect("decodes");
        assert_eq!((small.image.width(), small.image.height()), (1024, 768));
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// A progressive 640x480 JPEG from libjpeg-turbo (about ten scans).
    fn progressive() -> Vec<u8> {
        let image = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8])
        });
        let mut compressor = turbojpeg::Compressor::new().expect("compressor");
        compressor.set_progressive(true).expect("progressive");
        compressor.set_quality(90).expect("quality");
        compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: image.as_raw().as_slice(),
                width: 640,
                pitch: 640 * 3,
                height: 480,
                format: turbojpeg::PixelFormat::RGB,
            })
            .expect("encode")
    }

    fn scans(jpeg: &[u8]) -> usize {
        jpeg.windows(2).filter(|pair| pair == b"\xff\xda").count()
    }

    #[test]
    fn scans_are_counted_exactly() {
        let jpeg = progressive();
        let n = scans(&jpeg);
        assert!((5..=20).contains(&n), "{n} scans");
        assert!(!crate::jpeg::has_more_scans(&jpeg, n));
        assert!(crate::jpeg::has_more_scans(&jpeg, n - 1));
        assert!(crate::jpeg::has_more_scans(&jpeg, 0));
    }

    #[test]
    fn progressive_refinements_are_skipped_only_at_a_reduced_scale_and_when_configured() {
        let jpeg = progressive();
        let skip = ValidateConfig {
            min_bytes: 1,
            ..ValidateConfig::standard()
        };
        let all = ValidateConfig {
            skip_refinements: false,
            ..skip.clone()
        };
        let pixels = |config: &ValidateConfig, scale_to| {
            let decoded = decode(&jpeg, config, scale_to).expect("decodes");
            (
                decoded.original_width,
                decoded.original_height,
                decoded.image.into_rgb8(),
            )
        };
        // Half size (320×240 for a 160-pixel shorter side): without the refinements.
        let (quick, whole) = (pixels(&skip, Some(160)), pixels(&all, Some(160)));
        assert_eq!(
            (quick.0, quick.1, quick.2.dimensions()),
            (640, 480, (320, 240))
        );
        assert_eq!(whole.2.dimensions(), (320, 240));
        assert_ne!(quick.2, whole.2);
        // At full size every scan counts either way.
        assert_eq!(pixels(&skip, None).2, pixels(&all, None).2);
        assert_eq!(pixels(&skip, Some(480)).2, pixels(&all, Some(480)).2);
    }

    #[test]
    fn a_jpeg_with_too_many_scans_is_refused_before_decoding() {
        let jpeg = progressive();
        let config = ValidateConfig {
            min_bytes: 1,
            ..ValidateConfig::standard()
        };
        let decoded = decode(&jpeg, &config, None).expect("an ordinary progressive jpeg");
        assert_eq!((decoded.image.width(), decoded.image.height()), (640, 480));
        // The last scan repeated 150 times before the end of image marker.
        let last_scan = jpeg
            .windows(2)
            .rposition(|pair| pair == b"\xff\xda")
            .expect("a scan");
        let end = jpeg.len() - 2;
        assert_eq!(&jpeg[end..], b"\xff\xd9");
        let mut bomb = jpeg[..end].to_vec();
        for _ in 0..150 {
            bomb.extend_from_slice(&jpeg[last_scan..end]);
        }
        bomb.extend_from_slice(b"\xff\xd9");
        assert_eq!(
            decode(&bomb, &config, None).err(),
            Some(Outcome::DecodeError)
        );
        // The limit is the configured one.
        let lenient = ValidateConfig {
            max_jpeg_scans: 1000,
            ..config.clone()
        };
        assert!(!crate::jpeg::has_more_scans(&bomb, lenient.max_jpeg_scans));
        assert!(crate::jpeg::has_more_scans(&bomb, config.max_jpeg_scans));
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    /// A JPEG segment: marker, big-endian length, body.
    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xff, marker];
        bytes.extend_from_slice(&u16::try_from(body.len() + 2).expect("short").to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    /// A 100x100 progressive grey JPEG rebuilt so that libjpeg-turbo reads a `side` × `side`
    /// frame while the `image` crate (zune-jpeg) reads the original 100 × 100 one: a standalone
    /// `FF D0` (RST0) that zune-jpeg takes for a segment of length `0xFFC2`, skipping the big
    /// frame header, and landing on the small one hidden in a comment that libjpeg-turbo skips.
    fn two_faced(side: u16) -> Vec<u8> {
        let pixels: Vec<u8> = (0..100u32 * 100).map(|i| (i * 7 % 251) as u8).collect();
        let mut compressor = turbojpeg::Compressor::new().expect("compressor");
        compressor.set_progressive(true).expect("progressive");
        compressor.set_quality(90).expect("quality");
        compressor
            .set_subsamp(turbojpeg::Subsamp::Gray)
            .expect("grey");
        let small = compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: pixels.as_slice(),
                width: 100,
                pitch: 100,
                height: 100,
                format: turbojpeg::PixelFormat::GRAY,
            })
            .expect("encode");
        let at = small
            .windows(2)
            .position(|pair| pair == b"\xff\xc2")
            .expect("a progressive frame header");
        let length = usize::from(u16::from_be_bytes([small[at + 2], small[at + 3]]));
        let frame = &small[at..at + 2 + length];
        let mut big = frame.to_vec();
        big[5..7].copy_from_slice(&side.to_be_bytes());
        big[7..9].copy_from_slice(&side.to_be_bytes());

        let mut out = small[..at].to_vec();
        out.extend_from_slice(b"\xff\xd0");
        // zune-jpeg reads the next two bytes (FF C2) as a length and skips that many minus two.
        let lands_at = out.len() + 0xffc2;
        out.extend_from_slice(&big);
        let comment_data_at = out.len() + 4;
        let mut comment = vec![0u8; lands_at - comment_data_at];
        comment.extend_from_slice(frame);
        comment.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&segment(0xfe, &comment));
        out.extend_from_slice(&small[at + 2 + length..]);
        out
    }

    #[test]
    fn a_frame_hidden_from_the_header_check_is_refused_before_decoding() {
        let config = ValidateConfig::standard();
        let jpeg = two_faced(30_000);
        // The premise: the header check sees a harmless size, libjpeg-turbo 900 megapixels.
        let seen = ImageReader::with_format(Cursor::new(&jpeg), ImageFormat::Jpeg)
            .into_dimensions()
            .expect("zune-jpeg reads a header");
        assert_eq!(seen, (100, 100));
        let header = turbojpeg::Decompressor::new()
            .expect("decompressor")
            .read_header(&jpeg)
            .expect("libjpeg-turbo reads a header");
        assert_eq!((header.width, header.height), (30_000, 30_000));
        assert_eq!(
            decode(&jpeg, &config, Some(256)).err(),
            Some(Outcome::DecodeError)
        );
        // The same file with both frame headers alike decodes as before.
        let honest = two_faced(100);
        let decoded = decode(&honest, &config, None).expect("decodes");
        assert_eq!((decoded.image.width(), decoded.image.height()), (100, 100));
    }
}
