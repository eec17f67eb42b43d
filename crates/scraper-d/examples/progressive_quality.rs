//! What leaving out the refinement scans of progressive JPEGs costs and saves, per file: decode
//! time with every scan and without the refinements (best of 7), and PSNR of the 256-pixel
//! thumbnail (area filter) against the one with every scan, against that thumbnail stored as a
//! quality-95 JPEG, and of both against a thumbnail made from a full-size decode.
//!
//! `cargo run --release -p scraper-d --example progressive_quality -- FILE.jpg...`

use std::io::Write;
use std::time::Instant;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use scraper_d::resize::target_size;
use scraper_d::validate::{ValidateConfig, decode};

/// A thumbnail's pixels and size, and the best decode time in seconds.
struct Thumbnail {
    pixels: Vec<u8>,
    size: (u32, u32),
    seconds: f64,
}

fn thumbnail(bytes: &[u8], skip_refinements: bool, scale_to: Option<u32>) -> Thumbnail {
    let config = ValidateConfig {
        skip_refinements,
        ..ValidateConfig::standard()
    };
    let mut seconds = f64::MAX;
    let mut decoded = None;
    for _ in 0..7 {
        let started = Instant::now();
        decoded = Some(decode(bytes, &config, scale_to).expect("a picture that decodes"));
        seconds = seconds.min(started.elapsed().as_secs_f64());
    }
    let rgb = decoded.expect("decoded").image.into_rgb8();
    let (width, height) = rgb.dimensions();
    let size = target_size(width, height, 256);
    let source = Image::from_vec_u8(width, height, rgb.into_raw(), PixelType::U8x3).expect("rgb");
    let mut target = Image::new(size.0, size.1, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .expect("resizes");
    Thumbnail {
        pixels: target.into_vec(),
        size,
        seconds,
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let squared: f64 = a
        .iter()
        .zip(b)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    10.0 * (255.0f64.powi(2) / (squared / a.len() as f64)).log10()
}

/// `pixels` after a round trip through a quality-95 JPEG (4:2:0, as scraper-d stores them).
fn stored(pixels: &[u8], (width, height): (u32, u32)) -> Vec<u8> {
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_quality(95).expect("quality");
    compressor
        .set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .expect("subsampling");
    let jpeg = compressor
        .compress_to_vec(turbojpeg::Image {
            pixels,
            width: width as usize,
            pitch: width as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .expect("encodes");
    turbojpeg::decompress(&jpeg, turbojpeg::PixelFormat::RGB)
        .expect("decodes")
        .pixels
}

fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "file | decode, every scan -> without refinements | PSNR without/with | q95 storing | to a full-size decode, with / without"
    )?;
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("a readable file");
        let whole = thumbnail(&bytes, false, Some(256));
        let quick = thumbnail(&bytes, true, Some(256));
        let full = thumbnail(&bytes, false, None);
        let distance = if full.size == whole.size {
            format!(
                "{:.2} / {:.2} dB",
                psnr(&full.pixels, &whole.pixels),
                psnr(&full.pixels, &quick.pixels)
            )
        } else {
            "sizes round differently".to_owned()
        };
        writeln!(
            out,
            "{} | {:.1} -> {:.1} ms | {:.1} dB | {:.1} dB | {distance}",
            path.rsplit('/').next().unwrap_or(&path),
            whole.seconds * 1e3,
            quick.seconds * 1e3,
            psnr(&quick.pixels, &whole.pixels),
            psnr(&stored(&whole.pixels, whole.size), &whole.pixels),
        )?;
    }
    Ok(())
}
