//! Resizes a decoded picture (shorter side to 256 by default, aspect kept, never enlarged)
//! with `fast_image_resize` (SIMD) and encodes it as JPEG with libjpeg-turbo.
//!
//! The default filter averages areas, as OpenCV's `INTER_AREA` that img2dataset downscales with;
//! Lanczos-3 (sharper, about twice the resizing time) is a setting.
//!
//! Large JPEGs arrive here already decoded at a reduced scale (see `validate.rs`).

use fast_image_resize::images::Image;
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

/// Resizes and encodes; `None` when the resizer or encoder fails (counted as a decode error).
pub fn resize_and_encode(decoded: Decoded, config: &ResizeConfig) -> Option<Stored> {
    let rgb = into_rgb8(decoded.image);
    let (width, height) = rgb.dimensions();
    let (target_width, target_height) = target_size(width, height, config.shorter_side);
    let pixels = if (target_width, target_height) == (width, height) {
        rgb.into_raw()
    } else {
        let source = Image::from_vec_u8(width, height, rgb.into_raw(), PixelType::U8x3).ok()?;
        let mut target = Image::new(target_width, target_height, PixelType::U8x3);
        let options =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(config.filter.filter_type()));
        Resizer::new().resize(&source, &mut target, &options).ok()?;
        target.into_vec()
    };
    let jpeg = crate::jpeg::encode_rgb(&pixels, target_width, target_height, config.jpeg_quality)?;
    Some(Stored {
        jpeg,
        width: target_width,
        height: target_height,
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
