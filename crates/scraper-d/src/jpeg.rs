//! JPEG through libjpeg-turbo (vendored, SIMD): decoding at a reduced scale in the DCT domain and
//! encoding the stored thumbnails, the two costliest steps of a download.
//!
//! Each worker thread keeps one decompressor and one compressor.

mod layout;
mod progression;
mod quantization;

use std::cell::RefCell;

use image::DynamicImage;
use turbojpeg::{Colorspace, Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

/// The reductions used, largest first: the IDCT computes only the needed frequencies, so a
/// 4 MP photo for a 256-pixel thumbnail costs a fraction of a full decode.
const REDUCTIONS: [usize; 3] = [8, 4, 2];

/// Why [`decode`] gave no picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// libjpeg-turbo refused the data, warnings included (a truncated file), or it is CMYK: the
    /// caller falls back to the `image` crate, which then decides.
    Declined,
    /// libjpeg-turbo reads another size than the one the pixel cap was checked against: two
    /// parsers disagree on the frame header (a hostile file hides a huge frame from one of
    /// them), so the file is refused outright.
    SizeMismatch,
}

/// How a JPEG is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reduce {
    /// Decode at the largest 1/2, 1/4 or 1/8 reduction whose shorter side stays at least this
    /// long (at full size without it).
    pub scale_to: Option<u32>,
    /// Leave out the refinement scans of a progressive JPEG decoded at a reduction
    /// ([`progression`]): 3 to 6 times faster on such files, a difference smaller than the
    /// stored thumbnail's own JPEG encoding.
    pub skip_refinements: bool,
}

/// Decodes an RGB or greyscale JPEG whose header was read as `width` × `height` (and checked
/// against the pixel cap), reduced as `reduce` says.
pub(crate) fn decode(
    bytes: &[u8],
    (width, height): (u32, u32),
    reduce: Reduce,
) -> Result<DynamicImage, Refusal> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Decompressor::new().ok();
        }
        let decompressor = slot.as_mut().ok_or(Refusal::Declined)?;
        let header = decompressor
            .read_header(bytes)
            .map_err(|_| Refusal::Declined)?;
        if (header.width, header.height) != (width as usize, height as usize) {
            return Err(Refusal::SizeMismatch);
        }
        let format = match header.colorspace {
            Colorspace::Gray => PixelFormat::GRAY,
            Colorspace::RGB | Colorspace::YCbCr => PixelFormat::RGB,
            Colorspace::CMYK | Colorspace::YCCK => return Err(Refusal::Declined),
        };
        let shorter = header.width.min(header.height);
        let factor = reduce
            .scale_to
            .and_then(|target| {
                REDUCTIONS
                    .iter()
                    .find(|denom| shorter / **denom >= target as usize)
                    .map(|denom| ScalingFactor::new(1, *denom))
            })
            .unwrap_or(ScalingFactor::ONE);
        decompressor
            .set_scaling_factor(factor)
            .map_err(|_| Refusal::Declined)?;
        let scaled = header.scaled(factor);
        let channels = format.size();
        let n_bytes = scaled
            .width
            .checked_mul(scaled.height)
            .and_then(|pixels| pixels.checked_mul(channels))
            .ok_or(Refusal::Declined)?;
        let mut image = Image {
            pixels: vec![0u8; n_bytes],
            width: scaled.width,
            pitch: scaled.width * channels,
            height: scaled.height,
            format,
        };
        let pruned =
            (reduce.skip_refinements && header.is_progressive && factor != ScalingFactor::ONE)
                .then(|| progression::without_refinements(bytes))
                .flatten();
        let decoded = match pruned {
            // Should libjpeg-turbo refuse the copy, the file as it came decides.
            Some(pruned) => decompressor
                .decompress(&pruned.bytes, image.as_deref_mut())
                .or_else(|_| decompressor.decompress(bytes, image.as_deref_mut())),
            None => decompressor.decompress(bytes, image.as_deref_mut()),
        };
        // Scaling is per call: leave the decompressor at full size for the next picture.
        let _ = decompressor.set_scaling_factor(ScalingFactor::ONE);
        decoded.map_err(|_| Refusal::Declined)?;
        let (width, height) = (
            u32::try_from(scaled.width).map_err(|_| Refusal::Declined)?,
            u32::try_from(scaled.height).map_err(|_| Refusal::Declined)?,
        );
        if format == PixelFormat::GRAY {
            image::GrayImage::from_raw(width, height, image.pixels).map(DynamicImage::ImageLuma8)
        } else {
            image::RgbImage::from_raw(width, height, image.pixels).map(DynamicImage::ImageRgb8)
        }
        .ok_or(Refusal::Declined)
    })
}

/// Whether `bytes` holds more than `limit` start-of-scan markers (`FF DA`). Inside entropy-coded
/// data an `FF` is followed only by `00` or a restart marker, so every `FF DA` there starts a
/// scan; one inside a metadata segment (an EXIF thumbnail's scan) can only count too many.
pub(crate) fn has_more_scans(bytes: &[u8], limit: usize) -> bool {
    memchr::memmem::find_iter(bytes, b"\xff\xda")
        .nth(limit)
        .is_some()
}

/// Encodes packed RGB pixels as a baseline JPEG with 4:2:0 chroma (as OpenCV's default, which
/// img2dataset uses).
pub(crate) fn encode_rgb(pixels: &[u8], width: u32, height: u32, quality: u8) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Compressor::new().ok();
        }
        let compressor = slot.as_mut()?;
        compressor.set_quality(i32::from(quality)).ok()?;
        compressor.set_subsamp(Subsamp::Sub2x2).ok()?;
        let width = usize::try_from(width).ok()?;
        let image = Image {
            pixels,
            width,
            pitch: width * 3,
            height: usize::try_from(height).ok()?,
            format: PixelFormat::RGB,
        };
        compressor.compress_to_vec(image).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(scale_to: Option<u32>) -> Reduce {
        Reduce {
            scale_to,
            skip_refinements: true,
        }
    }

    fn photo_like(width: u32, height: u32) -> image::RgbImage {
        image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        })
    }

    #[test]
    fn decodes_what_it_encodes_at_every_reduction() {
        let rgb = photo_like(1024, 768);
        let jpeg = encode_rgb(rgb.as_raw(), 1024, 768, 95).expect("encodes");
        let cases = [
            (None, (1024, 768)),
            (Some(1000), (1024, 768)),
            (Some(384), (512, 384)),
            (Some(256), (512, 384)),
            (Some(192), (256, 192)),
            (Some(96), (128, 96)),
            (Some(10), (128, 96)),
        ];
        for (scale_to, size) in cases {
            let image = decode(&jpeg, (1024, 768), at(scale_to)).expect("decodes");
            assert_eq!((image.width(), image.height()), size, "{scale_to:?}");
        }
        let full = decode(&jpeg, (1024, 768), at(None))
            .expect("decodes")
            .into_rgb8();
        let error = full
            .as_raw()
            .iter()
            .zip(rgb.as_raw())
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .sum::<u32>() as f64
            / rgb.as_raw().len() as f64;
        assert!(error < 4.0, "mean abs error {error}");
    }

    #[test]
    fn truncated_and_garbage_data_are_refused() {
        let rgb = photo_like(320, 240);
        let jpeg = encode_rgb(rgb.as_raw(), 320, 240, 90).expect("encodes");
        let size = (320, 240);
        assert_eq!(
            decode(&jpeg[..jpeg.len() / 2], size, at(None)).err(),
            Some(Refusal::Declined)
        );
        assert_eq!(
            decode(&[0xff, 0xd8, 0xff, 0x00, 1, 2, 3], size, at(None)).err(),
            Some(Refusal::Declined)
        );
        assert_eq!(
            decode(&jpeg, (320, 241), at(None)).err(),
            Some(Refusal::SizeMismatch)
        );
        // The decompressor is still usable afterwards, at full size.
        let again = decode(&jpeg, size, at(None)).expect("decodes");
        assert_eq!((again.width(), again.height()), (320, 240));
    }
}
