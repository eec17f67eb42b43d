//! What one picture costs scraper-d's workers, per file: decode (as `fetch` decodes it, at a
//! reduced scale where the shorter side allows), resize and encode at the default settings, and
//! the stored JPEG's digest; the median of 15 runs each, in milliseconds, one line per file.
//!
//! `cargo run --release -p scraper-d --example picture_costs -- FILE...`

use std::io::Write;
use std::time::Instant;

use scraper_d::resize::{ResizeConfig, resize_and_encode};
use scraper_d::validate::{ValidateConfig, decode};
use sha2::{Digest, Sha256};

fn median_ms(mut run: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let validate = ValidateConfig::standard();
    let resize = ResizeConfig::standard();
    let mut out = std::io::stdout().lock();
    writeln!(out, "file\tdecode_ms\tresize_encode_ms\ttotal_ms").expect("stdout");
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("a readable file");
        let decode_ms = median_ms(|| {
            decode(&bytes, &validate, Some(resize.shorter_side)).expect("decodes");
        });
        let total_ms = median_ms(|| {
            let decoded = decode(&bytes, &validate, Some(resize.shorter_side)).expect("decodes");
            let stored = resize_and_encode(decoded, &resize).expect("resizes");
            std::hint::black_box(Sha256::digest(&stored.jpeg));
        });
        let name = path.rsplit('/').next().unwrap_or(&path);
        writeln!(
            out,
            "{name}\t{decode_ms:.2}\t{:.2}\t{total_ms:.2}",
            total_ms - decode_ms
        )
        .expect("stdout");
    }
}
