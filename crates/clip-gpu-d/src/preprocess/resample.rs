//! Pillow's bicubic resampling of 8-bit images, bit for bit (`libImaging/Resample.c`).
//!
//! Pillow filters with Keys' cubic (a = -0.5), widens the kernel by the scale on downscaling
//! (antialiasing), turns the weights into 22-bit fixed point, and runs a horizontal pass that
//! rounds to `u8` before the vertical pass. Matching it exactly keeps our pixels equal to
//! OpenAI's `_transform`, which resizes with `PIL.Image.BICUBIC`.

const PRECISION_BITS: u32 = 32 - 8 - 2;
const CUBIC_SUPPORT: f64 = 2.0;

/// Interleaved 8-bit pixels, `channels` per pixel, rows of `width`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image8 {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) channels: usize,
    pub(crate) pixels: Vec<u8>,
}

/// Fixed-point weights of one output coordinate: the first input index and the weights.
struct Coefficients {
    starts: Vec<usize>,
    counts: Vec<usize>,
    kernel_size: usize,
    weights: Vec<i32>,
}

/// `Image.resize((width, height), Image.BICUBIC)` with the default box and no reducing gap.
pub(crate) fn resize_bicubic(image: &Image8, width: usize, height: usize) -> Image8 {
    let mut current = image.clone();
    if width != image.width {
        current = horizontal(&current, width, &coefficients(image.width, width));
    }
    if height != image.height {
        current = vertical(&current, height, &coefficients(image.height, height));
    }
    current
}

fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = CUBIC_SUPPORT * filter_scale;
    let kernel_size = support.ceil() as usize * 2 + 1;
    let mut starts = Vec::with_capacity(out_size);
    let mut counts = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * kernel_size];
    let mut row = vec![0f64; kernel_size];
    let inverse_scale = 1.0 / filter_scale;
    for out_index in 0..out_size {
        let center = (out_index as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; both bounds are then clamped.
        let start = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = end.saturating_sub(start).min(kernel_size);
        let mut total = 0.0;
        for (offset, weight) in row.iter_mut().enumerate().take(count) {
            *weight = cubic((offset as f64 + start as f64 - center + 0.5) * inverse_scale);
            total += *weight;
        }
        for (offset, weight) in row.iter().enumerate().take(count) {
            let normalized = if total != 0.0 {
                weight / total
            } else {
                *weight
            };
            let fixed = normalized * f64::from(1u32 << PRECISION_BITS);
            weights[out_index * kernel_size + offset] = if fixed < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        starts.push(start);
        counts.push(count);
    }
    Coefficients {
        starts,
        counts,
        kernel_size,
        weights,
    }
}

fn clip8(value: i64) -> u8 {
    if value >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if value <= 0 {
        0
    } else {
        (value >> PRECISION_BITS) as u8
    }
}

fn horizontal(image: &Image8, width: usize, coefficients: &Coefficients) -> Image8 {
    let channels = image.channels;
    let mut pixels = vec![0u8; width * image.height * channels];
    let mut sums = vec![0i64; channels];
    for y in 0..image.height {
        let row = &image.pixels[y * image.width * channels..(y + 1) * image.width * channels];
        for x in 0..width {
            let kernel =
                &coefficients.weights[x * coefficients.kernel_size..][..coefficients.counts[x]];
            sums.fill(1i64 << (PRECISION_BITS - 1));
            for (offset, weight) in kernel.iter().enumerate() {
                let source = (coefficients.starts[x] + offset) * channels;
                for (channel, sum) in sums.iter_mut().enumerate() {
                    *sum += i64::from(row[source + channel]) * i64::from(*weight);
                }
            }
            for (channel, sum) in sums.iter().enumerate() {
                pixels[(y * width + x) * channels + channel] = clip8(*sum);
            }
        }
    }
    Image8 {
        width,
        height: image.height,
        channels,
        pixels,
    }
}

fn vertical(image: &Image8, height: usize, coefficients: &Coefficients) -> Image8 {
    let channels = image.channels;
    let stride = image.width * channels;
    let mut pixels = vec![0u8; image.width * height * channels];
    let mut sums = vec![0i64; stride];
    for y in 0..height {
        let kernel =
            &coefficients.weights[y * coefficients.kernel_size..][..coefficients.counts[y]];
        sums.fill(1i64 << (PRECISION_BITS - 1));
        for (offset, weight) in kernel.iter().enumerate() {
            let source = &image.pixels[(coefficients.starts[y] + offset) * stride..][..stride];
            for (sum, value) in sums.iter_mut().zip(source) {
                *sum += i64::from(*value) * i64::from(*weight);
            }
        }
        for (out, sum) in pixels[y * stride..(y + 1) * stride].iter_mut().zip(&sums) {
            *out = clip8(*sum);
        }
    }
    Image8 {
        width: image.width,
        height,
        channels,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_flat_images_survive() {
        let image = Image8 {
            width: 3,
            height: 2,
            channels: 1,
            pixels: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(resize_bicubic(&image, 3, 2), image);
        let flat = Image8 {
            width: 10,
            height: 7,
            channels: 3,
            pixels: vec![77; 210],
        };
        let resized = resize_bicubic(&flat, 4, 3);
        assert!(resized.pixels.iter().all(|value| *value == 77));
    }
}
