//! WebP through libwebp (vendored, SIMD): 2.5× the pure-Rust decoder on the benchmark's photos.

use image::{DynamicImage, RgbImage, RgbaImage};

/// Decodes a still WebP whose header said `width` × `height`, or `None` when libwebp refuses it
/// (an animation, damage) or reads another size: the caller then falls back to the `image`
/// crate, which also tells real damage apart.
pub(crate) fn decode(bytes: &[u8], width: u32, height: u32) -> Option<DynamicImage> {
    let decoded = webp::Decoder::new(bytes).decode()?;
    if (decoded.width(), decoded.height()) != (width, height) {
        return None;
    }
    let pixels = decoded.to_vec();
    if decoded.is_alpha() {
        RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{ImageFormat, Rgba};

    use super::*;

    /// A lossless WebP (the `image` crate's encoder), so both decoders must agree exactly.
    fn lossless(image: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::WebP)
            .expect("encode webp");
        bytes
    }

    fn pattern(x: u32, y: u32) -> [u8; 3] {
        [
            (x * 7 % 251) as u8,
            (y * 13 % 251) as u8,
            ((x ^ y) % 251) as u8,
        ]
    }

    #[test]
    fn opaque_and_alpha_pictures_match_the_pure_rust_decoder() {
        let opaque = DynamicImage::ImageRgb8(RgbImage::from_fn(301, 203, |x, y| {
            image::Rgb(pattern(x, y))
        }));
        let alpha = DynamicImage::ImageRgba8(RgbaImage::from_fn(64, 48, |x, y| {
            let [r, g, b] = pattern(x, y);
            Rgba([r, g, b, (x * 4) as u8])
        }));
        for picture in [opaque, alpha] {
            let bytes = lossless(picture.clone());
            let (width, height) = (picture.width(), picture.height());
            let ours = decode(&bytes, width, height).expect("libwebp decodes it");
            let reference = image::load_from_memory_with_format(&bytes, ImageFormat::WebP)
                .expect("image-webp decodes it");
            assert_eq!(ours.color(), reference.color());
            assert_eq!(ours.as_bytes(), reference.as_bytes());
            assert_eq!(ours.as_bytes(), picture.as_bytes());
        }
    }

    #[test]
    fn damage_or_a_lying_size_is_refused() {
        let picture =
            DynamicImage::ImageRgb8(RgbImage::from_fn(120, 80, |x, y| image::Rgb(pattern(x, y))));
        let bytes = lossless(picture);
        assert!(decode(&bytes, 120, 80).is_some());
        assert!(
            decode(&bytes, 121, 80).is_none(),
            "size differs from the header"
        );
        assert!(
            decode(&bytes[..bytes.len() / 2], 120, 80).is_none(),
            "truncated"
        );
        assert!(decode(b"RIFF\x10\0\0\0WEBPVP8 garbage", 120, 80).is_none());
    }
}
