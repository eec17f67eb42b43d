//! JPEG decoding as Pillow does it: libjpeg-turbo (the `turbojpeg` crate builds it from vendored
//! source and links it statically).
//!
//! Pillow's `JpegDecode.c` keeps libjpeg's defaults unless `Image.draft` is called, and OpenAI's
//! `_transform` never calls it: the accurate integer IDCT (`JDCT_ISLOW`), fancy (smooth) chroma
//! upsampling and no DCT scaling. TurboJPEG's defaults are the same (`TJPARAM_FASTDCT` and
//! `TJPARAM_FASTUPSAMPLE` off, scaling factor 1/1), and libjpeg-turbo's SIMD code gives the same
//! bits as its C code for both, so a build with or without nasm decodes the same pixels.
//!
//! Pillow opens a JPEG in the mode of its components: `L` for one, `RGB` for three (YCbCr or
//! RGB), `CMYK` for four (CMYK or YCCK, read inverted as Adobe writes them, rawmode `CMYK;I`).
//! `_transform` resizes in that mode and converts to RGB after the crop, so we keep it too.

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

use super::resample::Image8;
use super::{Decoded, MAX_DECODE_BYTES, MAX_IMAGE_SIDE, Mode};

/// Why libjpeg-turbo did not decode a JPEG.
#[derive(Debug)]
pub(super) enum Failure {
    /// The header asks for more than the decompression-bomb limits allow.
    TooLarge { width: u32, height: u32 },
    /// libjpeg-turbo failed, or warned (TurboJPEG reports a warning such as extraneous bytes
    /// before a marker as a failure, where Pillow goes on).
    Library(turbojpeg::Error),
}

/// Width × height as libjpeg-turbo reads the frame header, which is what [`decode`] would decode.
pub(super) fn header_pixels(bytes: &[u8]) -> Option<u64> {
    let header = Decompressor::new().ok()?.read_header(bytes).ok()?;
    Some((header.width as u64).saturating_mul(header.height as u64))
}

/// Decodes `bytes` in Pillow's mode, refusing images over the limits before decoding them.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, Failure> {
    let mut decompressor = Decompressor::new().map_err(Failure::Library)?;
    let header = decompressor.read_header(bytes).map_err(Failure::Library)?;
    let (mode, format, n_components) = match header.colorspace {
        Colorspace::Gray => (Mode::Grey, PixelFormat::GRAY, 1),
        Colorspace::RGB | Colorspace::YCbCr => (Mode::Rgb, PixelFormat::RGB, 3),
        Colorspace::CMYK | Colorspace::YCCK => (Mode::Cmyk, PixelFormat::CMYK, 4),
    };
    let channels = format.size();
    let too_large = || Failure::TooLarge {
        width: u32::try_from(header.width).unwrap_or(u32::MAX),
        height: u32::try_from(header.height).unwrap_or(u32::MAX),
    };
    if header.width > MAX_IMAGE_SIDE as usize || header.height > MAX_IMAGE_SIDE as usize {
        return Err(too_large());
    }
    if decode_bytes(
        header.width,
        header.height,
        channels,
        n_components,
        header.is_progressive,
    ) > MAX_DECODE_BYTES
    {
        return Err(too_large());
    }
    let mut image = Image {
        pixels: vec![0u8; header.width * header.height * channels],
        width: header.width,
        pitch: header.width * channels,
        height: header.height,
        format,
    };
    decompressor
        .decompress(bytes, image.as_deref_mut())
        .map_err(Failure::Library)?;
    let mut pixels = image.pixels;
    if mode == Mode::Cmyk {
        // Pillow's rawmode `CMYK;I`: libjpeg hands back Adobe's inverted CMYK.
        for value in &mut pixels {
            *value = 255 - *value;
        }
    }
    Ok(Decoded {
        image: Image8 {
            width: header.width,
            height: header.height,
            channels,
            pixels,
        },
        mode,
    })
}

/// What decoding allocates: the output, and for a progressive JPEG libjpeg's whole-image
/// coefficient buffer (2 bytes a sample, counted without chroma subsampling, blocks of 8×8).
fn decode_bytes(
    width: usize,
    height: usize,
    channels: usize,
    n_components: usize,
    progressive: bool,
) -> u64 {
    let output = width as u64 * height as u64 * channels as u64;
    if !progressive {
        return output;
    }
    let padded = width.div_ceil(8) as u64 * 8 * height.div_ceil(8) as u64 * 8;
    output + padded * n_components as u64 * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progressive_images_count_their_coefficients() {
        assert_eq!(decode_bytes(10, 10, 3, 3, false), 300);
        // 16×16 padded samples, 3 components of 2 bytes.
        assert_eq!(decode_bytes(10, 10, 3, 3, true), 300 + 16 * 16 * 3 * 2);
    }
}
