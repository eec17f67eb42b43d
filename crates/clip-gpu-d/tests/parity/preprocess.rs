//! Pixels equal OpenAI's `_transform(224)` (PIL bicubic, centre crop, normalisation).

use clip_gpu_d::model::{IMAGE_MEAN, IMAGE_STD};
use clip_gpu_d::npy;
use clip_gpu_d::preprocess::preprocess;
use serde::Deserialize;

use crate::support;

#[derive(Deserialize)]
struct Reference {
    image: String,
    npy: String,
}

#[test]
fn pixels_match_openai_transform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photos = support::photos();
    assert!(photos.len() >= 10, "too few photos");
    let mut args: Vec<&std::ffi::OsStr> = vec![dir.path().as_os_str()];
    args.extend(photos.iter().map(|path| path.as_os_str()));
    support::run_python(&support::test_script("preprocess_reference.py"), &args);
    let references: Vec<Reference> =
        serde_json::from_slice(&std::fs::read(dir.path().join("reference.json")).expect("read"))
            .expect("parse");
    let side = 224;
    let (mut worst_lossless, mut worst_jpeg, mut worst_jpeg_mean) = (0.0f32, 0.0f32, 0.0f32);
    for reference in &references {
        let bytes = std::fs::read(&reference.image).expect("read image");
        let pixels = preprocess(&bytes, side).expect("preprocess");
        let (channels, area, expected) = npy::read_f32(reference.npy.as_ref()).expect("read npy");
        assert_eq!((channels, area), (3, side * side));
        // Ours is HWC u8; the reference is CHW normalised.
        let mut ours = vec![0f32; 3 * side * side];
        for (index, value) in pixels.iter().enumerate() {
            let (position, channel) = (index / 3, index % 3);
            ours[channel * side * side + position] =
                ((f64::from(*value) / 255.0 - IMAGE_MEAN[channel]) / IMAGE_STD[channel]) as f32;
        }
        let error = support::max_abs_error(&ours, &expected);
        let mean = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / ours.len() as f32;
        eprintln!(
            "preprocess parity: {} max abs error {error:.6}, mean {mean:.6}",
            reference.image
        );
        if reference.image.ends_with(".jpg") {
            worst_jpeg = worst_jpeg.max(error);
            worst_jpeg_mean = worst_jpeg_mean.max(mean);
        } else {
            worst_lossless = worst_lossless.max(error);
        }
    }
    eprintln!(
        "preprocess parity over {} images: PNG/WebP max abs error {worst_lossless:.6}; JPEG max abs error {worst_jpeg:.6}, worst mean {worst_jpeg_mean:.6}",
        references.len()
    );
    // Decoded PNG and WebP pixels are the same, so the resize and crop must be bit-exact.
    assert!(
        worst_lossless <= 1e-5,
        "PNG/WebP pixels differ from OpenAI's _transform by {worst_lossless}"
    );
    // JPEG: we decode with libjpeg-turbo configured as Pillow does, so the pixels are Pillow's
    // too (measured 0). The bound is the 1e-2, below one level (1 / 255 / std ≥ 0.014),
    // so a single differing pixel fails; the `image` crate's decoder was 0.057 off.
    assert!(
        worst_jpeg <= 1e-2,
        "JPEG pixels differ by {worst_jpeg} (mean {worst_jpeg_mean})"
    );
}
