//! OpenAI's image `_transform`, <https://github.com/openai/CLIP/blob/main/clip/clip.py>:
//! `Resize(224, BICUBIC)` (shorter side, long side truncated), `CenterCrop(224)` (offset with
//! Python's `round`), convert to RGB; `ToTensor` and `Normalize` run on the model's device
//! (see `model::IMAGE_MEAN`/`IMAGE_STD`), so the CPU ships `u8` pixels.
//!
//! JPEG is decoded by libjpeg-turbo configured as Pillow configures it (see `jpeg`), and resized
//! in Pillow's mode (grey, RGB or CMYK) before the conversion to RGB, so JPEG pixels are Pillow's.
//! PNG and WebP are decoded by the `image` crate, whose pixels equal Pillow's for them.
//!
//! Differences from Pillow we accept: PNG and WebP images are converted to RGB before resizing
//! (equal for RGB and grey images; Pillow would resize RGBA premultiplied and palette images
//! with nearest-neighbour), and a JPEG that libjpeg-turbo refuses or warns about (corrupt data,
//! which Pillow may still decode) falls back to the `image` crate, whose decoder differs from
//! libjpeg-turbo by a few levels on some pixels.

mod jpeg;
mod resample;

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use rayon::prelude::*;
use tracing::debug;

use resample::{Image8, resize_bicubic_crop};

/// Largest decoded side we accept; larger images are refused before decoding.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Largest decoder allocation, against decompression bombs.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// Most memory reading a header may take, and the slack over the pixels a decode may take
/// (a PNG's colour profile is zlib data that the decoder would otherwise inflate up to its
/// whole limit before the first pixel).
const HEADER_BYTES: u64 = 16 * 1024 * 1024;
/// Most scans a JPEG may have (encoders write about ten). Each scan of a progressive JPEG is a
/// pass over all of its blocks and an empty one takes a few bytes: a hostile bundle of such
/// files would hold the preprocessing pool for hours (scraper-d refuses them the same way).
pub const MAX_JPEG_SCANS: usize = 100;

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("unrecognised image format")]
    Format(#[source] std::io::Error),
    #[error("failed to decode image")]
    Decode(#[from] image::ImageError),
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("image of {width}x{height} exceeds the decoding limits")]
    TooLarge { width: u32, height: u32 },
    #[error("jpeg with more than {MAX_JPEG_SCANS} scans")]
    TooManyScans,
}

/// An image ready for the vision tower, with the size it decoded to.
#[derive(Debug)]
pub struct PreparedImage {
    /// `side × side × 3` RGB pixels.
    pub pixels: Vec<u8>,
    /// Width and height of the decoded image (before resizing): the truth about the bytes,
    /// whatever the bundle's metadata claims.
    pub width: u32,
    pub height: u32,
}

/// Decodes JPEG, PNG or WebP bytes and returns `side × side × 3` RGB pixels.
pub fn preprocess(bytes: &[u8], side: usize) -> Result<Vec<u8>, PreprocessError> {
    prepare_image(bytes, side).map(|prepared| prepared.pixels)
}

/// As [`preprocess`], with the decoded image's size.
pub fn prepare_image(bytes: &[u8], side: usize) -> Result<PreparedImage, PreprocessError> {
    let decoded = if matches!(image::guess_format(bytes), Ok(ImageFormat::Jpeg)) {
        // Every `FF DA` in entropy-coded data starts a scan; one in a metadata segment can only
        // count too many.
        if memchr::memmem::find_iter(bytes, b"\xff\xda")
            .nth(MAX_JPEG_SCANS)
            .is_some()
        {
            return Err(PreprocessError::TooManyScans);
        }
        match jpeg::decode(bytes) {
            Ok(decoded) => decoded,
            Err(jpeg::Failure::TooLarge { width, height }) => {
                return Err(PreprocessError::TooLarge { width, height });
            }
            Err(jpeg::Failure::Library(error)) => {
                debug!(error = %error, "libjpeg-turbo refused a jpeg, decoding it with the image crate");
                decode_rgb(bytes)?
            }
        }
    } else {
        decode_rgb(bytes)?
    };
    let (width, height) = (decoded.image.width, decoded.image.height);
    Ok(PreparedImage {
        pixels: decoded.mode.to_rgb(transform(&decoded.image, side)),
        width: u32::try_from(width).unwrap_or(u32::MAX),
        height: u32::try_from(height).unwrap_or(u32::MAX),
    })
}

/// Width × height by the image's header (0 when no decoder can read one): what preparing it
/// would decode, known before any pixel is. For a JPEG the larger of libjpeg-turbo's reading
/// and the `image` crate's, since either may decode it (a hostile file can show each parser
/// another frame).
pub fn header_pixels(bytes: &[u8]) -> u64 {
    let by_image =
        header_size(bytes).map_or(0, |(width, height)| u64::from(width) * u64::from(height));
    let by_libjpeg = if matches!(image::guess_format(bytes), Ok(ImageFormat::Jpeg)) {
        jpeg::header_pixels(bytes)
    } else {
        None
    };
    by_image.max(by_libjpeg.unwrap_or(0))
}

/// Prepares many images on the current rayon pool, keeping their order.
pub fn preprocess_batch<B: AsRef<[u8]> + Sync>(
    images: &[B],
    side: usize,
) -> Vec<Result<PreparedImage, PreprocessError>> {
    images
        .par_iter()
        .map(|bytes| prepare_image(bytes.as_ref(), side))
        .collect()
}

/// As [`preprocess_batch`], each image's pixels written by the thread that prepared it into its
/// own `side × side × 3` slice of `out` (the batch's buffer, in image order; a failed image
/// leaves its slice as it was). The copy and the first touch of a batch's pages (38.5 MB at 224
/// pixels and 256 images) are then spread over the pool instead of done on one thread.
///
/// # Panics
/// When `out` does not hold exactly one slice per image.
pub fn prepare_batch_into<B: AsRef<[u8]> + Sync>(
    images: &[B],
    side: usize,
    out: &mut [u8],
) -> Vec<Result<(u32, u32), PreprocessError>> {
    let image_bytes = side * side * 3;
    assert_eq!(out.len(), images.len() * image_bytes, "one slice per image");
    images
        .par_iter()
        .zip(out.par_chunks_mut(image_bytes.max(1)))
        .map(|(bytes, slot)| {
            prepare_image(bytes.as_ref(), side).map(|prepared| {
                slot.copy_from_slice(&prepared.pixels);
                (prepared.width, prepared.height)
            })
        })
        .collect()
}

/// Pillow's mode of a decoded image, which `_transform` resizes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `L`: one channel.
    Grey,
    /// `RGB`: three channels.
    Rgb,
    /// `CMYK`: four channels, not inverted.
    Cmyk,
}

/// Decoded pixels in the mode Pillow opens the image in.
#[derive(Debug)]
struct Decoded {
    image: Image8,
    mode: Mode,
}

// === impl Mode ===

impl Mode {
    /// Pillow's `convert("RGB")` (`libImaging/Convert.c`), on pixels of this mode.
    fn to_rgb(self, pixels: Vec<u8>) -> Vec<u8> {
        match self {
            Mode::Rgb => pixels,
            Mode::Grey => pixels.iter().flat_map(|value| [*value; 3]).collect(),
            Mode::Cmyk => pixels.chunks_exact(4).flat_map(cmyk_to_rgb).collect(),
        }
    }
}

/// Pillow's `cmyk2rgb`: `255 - k - round(c * (255 - k) / 255)` per channel, in its integer form.
fn cmyk_to_rgb(cmyk: &[u8]) -> [u8; 3] {
    let not_k = 255 - u32::from(cmyk[3]);
    // Pillow's MULDIV255: a * b / 255, rounded, exact for 8-bit operands.
    let scaled = |value: u8| {
        let product = u32::from(value) * not_k + 128;
        ((product >> 8) + product) >> 8
    };
    [cmyk[0], cmyk[1], cmyk[2]].map(|value| not_k.saturating_sub(scaled(value)) as u8)
}

/// The `image` crate's reader of `bytes`, its format guessed from them.
fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, PreprocessError> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(PreprocessError::Format)
}

/// Limits with the largest side we accept and a header's worth of memory.
fn side_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(HEADER_BYTES);
    limits
}

/// Width and height by the `image` crate's reading of the header, within [`side_limits`].
fn header_size(bytes: &[u8]) -> Result<(u32, u32), PreprocessError> {
    let mut probe = reader(bytes)?;
    probe.limits(side_limits());
    Ok(probe.into_dimensions()?)
}

/// Decodes with the `image` crate and converts to RGB, within the decompression-bomb limits.
fn decode_rgb(bytes: &[u8]) -> Result<Decoded, PreprocessError> {
    let (width, height) = header_size(bytes)?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(PreprocessError::TooLarge { width, height });
    }
    // The pixels at up to 8 bytes each (16-bit RGBA) and a header's worth of slack: all a
    // decode of this picture needs, so nothing before the pixels can take more.
    let mut limits = side_limits();
    limits.max_alloc = Some(
        (u64::from(width) * u64::from(height) * 8)
            .saturating_add(HEADER_BYTES)
            .min(MAX_DECODE_BYTES),
    );
    let mut reader = reader(bytes)?;
    reader.limits(limits);
    let decoded = reader.decode()?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    let rgb = decoded.into_rgb8();
    Ok(Decoded {
        image: Image8 {
            width: width as usize,
            height: height as usize,
            channels: 3,
            pixels: rgb.into_raw(),
        },
        mode: Mode::Rgb,
    })
}

/// Resize of the shorter side to `side`, then the centre crop; only the kept pixels are
/// resampled (see `resize_bicubic_crop`), so an extreme aspect ratio costs no more than a square.
fn transform(image: &Image8, side: usize) -> Vec<u8> {
    let (width, height) = resized_size(image.width, image.height, side);
    let (left, top) = (crop_offset(width, side), crop_offset(height, side));
    resize_bicubic_crop(image, (width, height), left..left + side, top..top + side).pixels
}

/// torchvision's `_compute_resized_output_size` for an int size: the long side is truncated.
fn resized_size(width: usize, height: usize, side: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((side as f64 * long as f64 / short as f64) as usize).max(side);
    if width <= height {
        (side, new_long)
    } else {
        (new_long, side)
    }
}

/// torchvision's `CenterCrop`: `int(round((size - crop) / 2.0))`, halves to even.
fn crop_offset(size: usize, crop: usize) -> usize {
    let difference = size.saturating_sub(crop);
    let half = difference / 2;
    if difference % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_of_thousands_of_scans_is_refused_before_decoding() {
        let bomb = cah_testkit::images::scan_bomb_jpeg(2000, 2000);
        assert!(matches!(
            preprocess(&bomb, 224),
            Err(PreprocessError::TooManyScans)
        ));
        // Ten scans, as encoders write, decode.
        let fine = cah_testkit::images::scan_bomb_jpeg(64, 10);
        assert_eq!(preprocess(&fine, 32).expect("decodes").len(), 32 * 32 * 3);
    }

    #[test]
    fn sizes_and_offsets_follow_torchvision() {
        assert_eq!(resized_size(640, 480, 224), (298, 224));
        assert_eq!(resized_size(480, 640, 224), (224, 298));
        assert_eq!(resized_size(1000, 1000, 224), (224, 224));
        assert_eq!(crop_offset(298, 224), 37);
        assert_eq!(crop_offset(227, 224), 2); // round(1.5) = 2
        assert_eq!(crop_offset(229, 224), 2); // round(2.5) = 2
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn prepares_a_png() {
        let mut png = Vec::new();
        let image =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
        image
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode png");
        let pixels = preprocess(&png, 32).expect("preprocess");
        assert_eq!(pixels.len(), 32 * 32 * 3);
        assert!(preprocess(b"not an image", 32).is_err());
    }

    #[test]
    fn a_batch_prepared_in_place_equals_the_images_prepared_one_by_one() {
        let wide = encode_jpeg(image::RgbImage::from_fn(90, 40, |x, y| {
            image::Rgb([x as u8 * 2, y as u8 * 6, (x + y) as u8])
        }));
        let tall = encode_jpeg(image::GrayImage::from_fn(30, 70, |x, y| {
            image::Luma([(x * y) as u8])
        }));
        let images: [&[u8]; 3] = [&wide, b"not an image", &tall];
        let side = 32;
        let mut out = vec![7u8; 3 * side * side * 3];
        let sizes = prepare_batch_into(&images, side, &mut out);
        let one_by_one = preprocess_batch(&images, side);
        let slots: Vec<&[u8]> = out.chunks(side * side * 3).collect();
        assert_eq!(sizes[0].as_ref().ok(), Some(&(90, 40)));
        assert_eq!(sizes[2].as_ref().ok(), Some(&(30, 70)));
        assert!(sizes[1].is_err() && one_by_one[1].is_err());
        for index in [0, 2] {
            let alone = one_by_one[index].as_ref().expect("prepared");
            assert_eq!(slots[index], alone.pixels.as_slice(), "image {index}");
        }
        assert!(
            slots[1].iter().all(|&byte| byte == 7),
            "a failed image leaves its slot"
        );
    }

    #[test]
    fn an_extreme_aspect_ratio_resamples_only_the_crop() {
        // A small PNG (about 100 bytes at best compression, 20 KB here): one column of 16,384
        // pixels, within the decoding limits.
        let image = image::RgbImage::from_pixel(1, MAX_IMAGE_SIDE, image::Rgb([200, 100, 50]));
        let mut png = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("encode png");
        assert!(png.len() < 64 * 1024, "{} bytes", png.len());
        // The whole resize would be 224×3,670,016 pixels (2.3 GiB of RGB).
        let (width, height) = resized_size(1, MAX_IMAGE_SIDE as usize, 224);
        assert_eq!((width, height), (224, 3_670_016));
        assert_eq!(crop_offset(height, 224), 1_834_896);
        let pixels = preprocess(&png, 224).expect("preprocess");
        assert_eq!(pixels.len(), 224 * 224 * 3);
        assert!(
            pixels.chunks_exact(3).all(|pixel| pixel == [200, 100, 50]),
            "a flat image stays flat"
        );
    }

    fn encode_jpeg(image: impl Into<image::DynamicImage>) -> Vec<u8> {
        let mut jpeg = Vec::new();
        image
            .into()
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .expect("encode jpeg");
        jpeg
    }

    #[test]
    fn decodes_jpegs_in_pillows_mode() {
        let grey = encode_jpeg(image::GrayImage::from_fn(40, 30, |x, y| {
            image::Luma([(x * 6 + y) as u8])
        }));
        let decoded = jpeg::decode(&grey).expect("decode grey");
        assert_eq!(decoded.mode, Mode::Grey);
        assert_eq!(decoded.image.channels, 1);
        let colour = encode_jpeg(image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([x as u8 * 6, y as u8 * 8, 90])
        }));
        let decoded = jpeg::decode(&colour).expect("decode colour");
        assert_eq!(decoded.mode, Mode::Rgb);
        assert_eq!((decoded.image.width, decoded.image.height), (40, 30));
        for bytes in [&grey, &colour] {
            assert_eq!(
                preprocess(bytes, 16).expect("preprocess").len(),
                16 * 16 * 3
            );
        }
        assert!(preprocess(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3], 16).is_err());
    }

    #[test]
    fn refuses_jpegs_over_the_limits_before_decoding() {
        let mut jpeg = encode_jpeg(image::RgbImage::new(8, 8));
        // The baseline frame header: FF C0, length, precision, height, width.
        let frame = jpeg
            .windows(2)
            .position(|pair| pair == [0xFF, 0xC0])
            .expect("SOF0 marker");
        let side = (MAX_IMAGE_SIDE + 1) as u16;
        jpeg[frame + 5..frame + 7].copy_from_slice(&side.to_be_bytes());
        jpeg[frame + 7..frame + 9].copy_from_slice(&8u16.to_be_bytes());
        assert!(matches!(
            preprocess(&jpeg, 16),
            Err(PreprocessError::TooLarge { width: 8, height }) if height == MAX_IMAGE_SIDE + 1
        ));
    }

    #[test]
    fn converts_like_pillow() {
        // Pillow 12: `Image.new("CMYK", (1, 1), cmyk).convert("RGB")`.
        for (cmyk, rgb) in [
            ([0, 0, 0, 0], [255, 255, 255]),
            ([255, 0, 0, 0], [0, 255, 255]),
            ([0, 0, 0, 255], [0, 0, 0]),
            ([128, 64, 1, 128], [63, 95, 127]),
        ] {
            assert_eq!(cmyk_to_rgb(&cmyk), rgb, "cmyk {cmyk:?}");
        }
        assert_eq!(Mode::Grey.to_rgb(vec![7, 9]), vec![7, 7, 7, 9, 9, 9]);
    }

    #[test]
    fn header_pixels_come_from_the_header_alone() {
        let jpeg = encode_jpeg(image::RgbImage::new(320, 200));
        assert_eq!(header_pixels(&jpeg), 64_000);
        let mut png = Vec::new();
        image::GrayImage::new(30, 20)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("png");
        assert_eq!(header_pixels(&png), 600);
        // A JPEG cut after its frame header still tells its size; garbage tells nothing.
        assert_eq!(header_pixels(&jpeg[..jpeg.len() / 3]), 64_000);
        assert_eq!(header_pixels(b"not an image"), 0);
    }
}
