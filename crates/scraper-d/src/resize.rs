//! Resizes a decoded picture (shorter side to 256 by default, aspect kept, never enlarged)
//! with `fast_image_resize` (SIMD) and encodes it as JPEG with libjpeg-turbo.
//!
//! The default filter averages areas, as OpenCV's `INTER_AREA` that img2dataset downscales with;
//! Lanczos-3 (sharper, about twice the resizing time) is a setting.
//!
//! Large JPEGs arrive here already decoded at a reduced scale (see `validate.rs`).

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::validate::Decoded;

/// Resize and encoding settings.
#[derive(Debug, Clone)]
pub struct ResizeConfig {
    /// Target length of the shorter side (default 256); smaller pictures keep their size.
    pub shorter_side: u32,
    /// JPEG quality 1–100 (default 95, as img2dataset).
    pub jpeg_quality: u8,
    /// Downscaling filter (default [`ResizeFilter::Area`], as img2dataset).
    pub filter: ResizeFilter,
}

impl ResizeConfig {
    /// The defaults named on each field.
    pub fn standard() -> Self {
        ResizeConfig {
            shorter_side: 256,
            jpeg_quality: 95,
            filter: ResizeFilter::Area,
        }
    }
}

/// How pixels are combined when a picture is made smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResizeFilter {
    /// The mean of the source pixels each target pixel covers (box filter; OpenCV `INTER_AREA`).
    Area,
    /// Lanczos with 3 lobes: sharper edges, a window three times as wide.
    Lanczos3,
}

impl ResizeFilter {
    fn filter_type(self) -> FilterType {
        match self {
            ResizeFilter::Area => FilterType::Box,
            ResizeFilter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// A stored picture: JPEG bytes and their pixel size.
#[derive(Debug)]
pub struct Stored {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The size a `width`×`height` picture is stored at.
pub fn target_size(width: u32, height: u32, shorter_side: u32) -> (u32, u32) {
    let shorter = width.min(height);
    if shorter <= shorter_side || shorter == 0 {
        return (width, height);
    }
    let scale = |side: u32| -> u32 {
        let scaled = (u64::from(side) * u64::from(shorter_side) + u64::from(shorter) / 2)
            / u64::from(shorter);
        u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
    };
    if width <= height {
        (shorter_side, scale(height))
    } else {
        (scale(width), shorter_side)
    }
}

/// The picture as 8-bit RGB, alpha dropped as `image` and OpenCV's `IMREAD_COLOR` drop it. The
/// 8-bit layouts are converted here: `image`'s general conversion (through its colour-space
/// machinery) was 4 % of the download benchmark's time.
fn into_rgb8(image: image::DynamicImage) -> image::RgbImage {
    use image::DynamicImage;
    let (width, height) = (image.width(), image.height());
    let pixels: Vec<u8> = match &image {
        DynamicImage::ImageRgb8(_) => return image.into_rgb8(),
        DynamicImage::ImageRgba8(rgba) => rgba
            .as_raw()
            .chunks_exact(4)
            .flat_map(|pixel| [pixel[0], pixel[1], pixel[2]])
            .collect(),
        DynamicImage::ImageLuma8(luma) => luma.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(luma) => luma
            .as_raw()
            .chunks_exact(2)
            .flat_map(|pixel| [pixel[0], pixel[0], pixel[0]])
            .collect(),
        _ => return image.into_rgb8(),
    };
    image::RgbImage::from_raw(width, height, pixels).unwrap_or_else(|| image.into_rgb8())
}

thread_local! {
    /// Each worker thread's resizer and the buffer its thumbnails are resized into, kept
    /// between pictures so that neither is allocated and zeroed for each one.
    static RESIZER: RefCell<(Resizer, Vec<u8>)> = RefCell::new((Resizer::new(), Vec::new()));
}

/// Most scratch memory a worker thread keeps between pictures (the resizer's intermediate
/// image and the thumbnail buffer); a larger picture's buffers are freed after it.
const KEPT_BUFFERS: usize = 1024 * 1024;

/// Resizes and encodes; `None` when the resizer or encoder fails (counted as a decode error).
/// Grey pictures are resized as one channel and made RGB afterwards, at the thumbnail's size.
pub fn resize_and_encode(decoded: Decoded, config: &ResizeConfig) -> Option<Stored> {
    let (width, height) = (decoded.image.width(), decoded.image.height());
    let (pixels, pixel_type) = match decoded.image {
        image::DynamicImage::ImageLuma8(grey) => (grey.into_raw(), PixelType::U8),
        image => (into_rgb8(image).into_raw(), PixelType::U8x3),
    };
    let (target_width, target_height) = target_size(width, height, config.shorter_side);
    RESIZER.with(|cell| {
        let (resizer, buffer) = &mut *cell.borrow_mut();
        let resized = if (target_width, target_height) == (width, height) {
            pixels.as_slice()
        } else {
            let n_bytes = target_width as usize * target_height as usize * pixel_type.size();
            if buffer.len() < n_bytes {
                buffer.resize(n_bytes, 0);
            }
            let source = ImageRef::new(width, height, &pixels, pixel_type).ok()?;
            let mut target = Image::from_slice_u8(
                target_width,
                target_height,
                &mut buffer[..n_bytes],
                pixel_type,
            )
            .ok()?;
            let options = ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(config.filter.filter_type()));
            let resized = resizer.resize(&source, &mut target, &options);
            if resizer.size_of_internal_buffers() > KEPT_BUFFERS {
                resizer.reset_internal_buffers();
            }
            resized.ok()?;
            &buffer[..n_bytes]
        };
        let rgb;
        let rgb_pixels = if pixel_type == PixelType::U8 {
            rgb = resized.iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>();
            rgb.as_slice()
        } else {
            resized
        };
        let jpeg =
            crate::jpeg::encode_rgb(rgb_pixels, target_width, target_height, config.jpeg_quality);
        if buffer.capacity() > KEPT_BUFFERS {
            *buffer = Vec::new();
        }
        Some(Stored {
            jpeg: jpeg?,
            width: target_width,
            height: target_height,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_layouts_convert_as_the_image_crate_converts_them() {
        use image::{DynamicImage, GrayAlphaImage, GrayImage, LumaA, Rgba, RgbaImage};
        let pictures = [
            DynamicImage::ImageRgba8(RgbaImage::from_fn(7, 5, |x, y| {
                Rgba([x as u8 * 30, y as u8 * 40, 200, (x * y) as u8])
            })),
            DynamicImage::ImageLuma8(GrayImage::from_fn(7, 5, |x, y| {
                image::Luma([(x * 31 + y * 7) as u8])
            })),
            DynamicImage::ImageLumaA8(GrayAlphaImage::from_fn(7, 5, |x, y| {
                LumaA([(x * 31 + y * 7) as u8, 9])
            })),
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
                3,
                2,
                image::Rgb([65535, 0, 257]),
            )),
        ];
        for picture in pictures {
            assert_eq!(into_rgb8(picture.clone()), picture.into_rgb8());
        }
    }

    #[test]
    fn the_shorter_side_becomes_256_and_small_pictures_stay() {
        assert_eq!(target_size(1024, 512, 256), (512, 256));
        assert_eq!(target_size(512, 1024, 256), (256, 512));
        assert_eq!(target_size(1000, 333, 256), (769, 256));
        assert_eq!(target_size(200, 900, 256), (200, 900));
        assert_eq!(target_size(256, 256, 256), (256, 256));
    }

    #[test]
    fn the_area_filter_averages_what_each_pixel_covers() {
        // Stripes one pixel wide, halved: every target pixel covers one black and one white
        // source column, so area averaging gives mid grey; Lanczos-3 rings instead.
        let stripes = image::RgbImage::from_fn(512, 512, |x, _| {
            image::Rgb(if x % 2 == 0 { [0; 3] } else { [255; 3] })
        });
        let source =
            Image::from_vec_u8(512, 512, stripes.into_raw(), PixelType::U8x3).expect("valid image");
        for (filter, close_to_grey) in [(ResizeFilter::Area, true), (ResizeFilter::Lanczos3, false)]
        {
            let mut target = Image::new(256, 256, PixelType::U8x3);
            let options =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter.filter_type()));
            Resizer::new()
                .resize(&source, &mut target, &options)
                .expect("resizes");
            let pixels = target.into_vec();
            let spread = pixels.iter().map(|&v| i32::from(v).abs_diff(128)).max();
            assert_eq!(
                spread.is_some_and(|spread| spread <= 1),
                close_to_grey,
                "{filter:?}"
            );
        }
    }

    fn decoded(image: image::DynamicImage) -> Decoded {
        Decoded {
            original_width: image.width(),
            original_height: image.height(),
            image,
            format: image::ImageFormat::Png,
        }
    }

    #[test]
    fn grey_pictures_are_stored_as_their_rgb_copies_are() {
        let grey = image::GrayImage::from_fn(900, 601, |x, y| {
            image::Luma([((x * 37 + y * 11) ^ (x * y)) as u8])
        });
        let rgb = image::DynamicImage::ImageLuma8(grey.clone()).into_rgb8();
        let config = ResizeConfig::standard();
        let from_grey = resize_and_encode(decoded(grey.into()), &config).expect("stored");
        let from_rgb = resize_and_encode(decoded(rgb.into()), &config).expect("stored");
        assert_eq!((from_grey.width, from_grey.height), (383, 256));
        assert_eq!(from_grey.jpeg, from_rgb.jpeg);
    }

    #[test]
    fn a_thread_keeps_small_buffers_and_frees_large_ones() {
        let config = ResizeConfig::standard();
        let kept = || {
            RESIZER.with(|cell| {
                let (resizer, buffer) = &*cell.borrow();
                (resizer.size_of_internal_buffers(), buffer.capacity())
            })
        };
        let photo = image::RgbImage::from_pixel(1000, 750, image::Rgb([90, 120, 200]));
        resize_and_encode(decoded(photo.into()), &config).expect("stored");
        let (scratch, thumbnail) = kept();
        assert!(
            scratch > 0 && thumbnail >= 341 * 256 * 3,
            "{scratch}, {thumbnail}"
        );
        // A panorama: a 12,800×256 thumbnail (9.8 MB) through a 12,800×400 intermediate.
        let panorama = image::RgbImage::from_pixel(20_000, 400, image::Rgb([10, 20, 30]));
        let stored = resize_and_encode(decoded(panorama.into()), &config).expect("stored");
        assert_eq!((stored.width, stored.height), (12_800, 256));
        let (scratch, thumbnail) = kept();
        assert!(
            scratch <= KEPT_BUFFERS && thumbnail <= KEPT_BUFFERS,
            "{scratch}, {thumbnail}"
        );
    }

    #[test]
    fn a_picture_is_resized_and_encoded() {
        let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            640,
            480,
            image::Rgb([200, 10, 10]),
        ));
        let decoded = Decoded {
            image,
            format: image::ImageFormat::Png,
            original_width: 640,
            original_height: 480,
        };
        let stored = resize_and_encode(decoded, &ResizeConfig::standard()).expect("stored");
        assert_eq!((stored.width, stored.height), (341, 256));
        let back = image::load_from_memory(&stored.jpeg).expect("jpeg decodes");
        assert_eq!((back.width(), back.height()), (341, 256));
    }
}
