//! Reading a scraper's bundle (`cah_protocol::bundle`) as hostile input.
//!
//! Only flat names are accepted (`{sample_id}.{jpg|png|webp}`, `samples.jsonl`, `stats.json`):
//! no directories, links, absolute paths or `..`. Every entry is size-capped before it is read,
//! every image must be listed in `samples.jsonl` and match its byte count and SHA-256, and
//! sample IDs must lie in the job's range, each listed once. Any violation rejects the whole
//! bundle.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use cah_protocol::bundle::{BundleSample, SAMPLES_FILE, STATS_FILE};
use sha2::{Digest, Sha256};

/// Largest image entry we read.
pub const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;
/// Largest metadata entry we read.
pub const MAX_METADATA_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries in one bundle.
pub const MAX_ENTRIES: usize = 200_000;
/// Decoded pixels a bundle may hold per listed image on average, by the images' headers
/// (`--max-bundle-megapixels`): 4 MP, 15 times a 256-pixel thumbnail of 16:9 as scraper-d
/// stores by default, and more than a web original on average. Every image is decoded whole
/// for CLIP, so a bundle of the largest images the per-image limits let through (flat 16,384 ×
/// 10,900 JPEGs of 2.8 MB, 1.3 s of decoding each) would hold the preprocessing pool for
/// minutes.
pub const DEFAULT_PIXELS_PER_IMAGE: u64 = 4_000_000;
/// A bundle of fewer images still gets this many images' worth of pixels.
pub const MIN_BUDGET_IMAGES: u64 = 64;

/// Why a bundle is rejected; the text goes to the tracker as the invalid reason.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The downloaded file could not be opened: a local failure, not the bundle's.
    #[error("failed to open the downloaded bundle")]
    Open(#[source] std::io::Error),
    #[error("failed to read the bundle tar")]
    Io(#[from] std::io::Error),
    #[error("entry {name:?} is not allowed: {reason}")]
    BadEntry { name: String, reason: &'static str },
    #[error("entry {name:?} of {size} bytes exceeds the limit of {limit}")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("the bundle has no {SAMPLES_FILE}")]
    NoSamples,
    /// No stats file: scraper-d writes it last, so a bundle without it was cut short.
    #[error("the bundle has no {STATS_FILE} (cut short?)")]
    NoStats,
    #[error("{STATS_FILE} says {stored} samples were stored, {SAMPLES_FILE} lists {listed}")]
    StoredMismatch { stored: u64, listed: u64 },
    #[error("line {line} of {SAMPLES_FILE} is invalid: {detail}")]
    BadSample { line: usize, detail: String },
    #[error("image {0:?} is not listed in {SAMPLES_FILE}")]
    Unlisted(String),
    #[error("the bundle has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error(
        "the bundle's images hold {pixels} pixels by their headers, more than its budget of \
         {budget} ({per_image} per image on average, clip-gpu-d --max-bundle-megapixels)"
    )]
    PixelBudget {
        pixels: u64,
        budget: u64,
        per_image: u64,
    },
}

/// Longest alt text accepted, in bytes: the scraper keeps 2,000 characters (8,000 bytes at
/// most), so a longer one is not the scraper's (a 50 MB caption once reached a dataset).
pub const MAX_ALT_BYTES: usize = 8_000;
/// Longest `url`, `final_url` or `page_url` accepted, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Longest entry name quoted in a [`BundleError`], in bytes (a pax header can carry
/// megabytes of name, which the invalid report would echo).
pub const MAX_QUOTED_NAME_BYTES: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, ending with `…` when cut.
pub fn truncate_utf8(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

fn quoted(name: &str) -> String {
    truncate_utf8(name, MAX_QUOTED_NAME_BYTES)
}

/// One sample with its image bytes.
#[derive(Debug, Clone)]
pub struct Sample {
    pub meta: BundleSample,
    pub image: Vec<u8>,
}

/// Reads and checks the bundle at `path` for a job owning sample IDs `start_id..end_id`.
pub fn read_bundle(
    path: &Path,
    start_id: u64,
    end_id: u64,
    pixels_per_image: u64,
) -> Result<Vec<Sample>, BundleError> {
    let file = std::fs::File::open(path).map_err(BundleError::Open)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut images: HashMap<String, Vec<u8>> = HashMap::new();
    let mut samples_text: Option<Vec<u8>> = None;
    let mut stored: Option<u64> = None;
    let mut n_entries = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        n_entries += 1;
        if n_entries > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries);
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_name(&name)?;
        if !entry.header().entry_type().is_file() {
            return Err(bad(&name, "not a regular file"));
        }
        let size = entry.header().size()?;
        let limit = if name == SAMPLES_FILE || name == STATS_FILE {
            MAX_METADATA_BYTES
        } else {
            MAX_IMAGE_BYTES
        };
        if size > limit {
            return Err(BundleError::TooLarge {
                name: quoted(&name),
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry).take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != size {
            return Err(bad(&name, "its size differs from its header"));
        }
        if name == SAMPLES_FILE {
            if samples_text.replace(bytes).is_some() {
                return Err(bad(&name, "duplicate entry"));
            }
        } else if name == STATS_FILE {
            let stats = serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|_| bad(&name, "not JSON"))?;
            let count = stats
                .get("stored")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(&name, "has no stored count"))?;
            if stored.replace(count).is_some() {
                return Err(bad(&name, "duplicate entry"));
            }
        } else if images.insert(name.clone(), bytes).is_some() {
            return Err(bad(&name, "duplicate entry"));
        }
    }
    let samples_text = samples_text.ok_or(BundleError::NoSamples)?;
    // scraper-d writes the stats last: without them the bundle may have been cut at an entry
    // boundary, which a tar reader cannot tell from a complete archive.
    let stored = stored.ok_or(BundleError::NoStats)?;
    let mut samples = Vec::new();
    let mut sample_ids = HashSet::new();
    for (index, line) in samples_text.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad_sample = |detail: String| BundleError::BadSample {
            line: index + 1,
            detail,
        };
        let meta: BundleSample =
            serde_json::from_slice(line).map_err(|error| bad_sample(error.to_string()))?;
        if meta.alt.len() > MAX_ALT_BYTES {
            return Err(bad_sample(format!(
                "alt has {} bytes, more than {MAX_ALT_BYTES}",
                meta.alt.len()
            )));
        }
        for (field, value) in [
            ("url", &meta.url),
            ("final_url", &meta.final_url),
            ("page_url", &meta.page_url),
        ] {
            if value.len() > MAX_URL_BYTES {
                return Err(bad_sample(format!(
                    "{field} has {} bytes, more than {MAX_URL_BYTES}",
                    value.len()
                )));
            }
        }
        if !(start_id..end_id).contains(&meta.sample_id) {
            return Err(bad_sample(format!(
                "sample id {} is outside the job's range {start_id}..{end_id}",
                meta.sample_id
            )));
        }
        // `5.jpg` and `5.png` are two files, but one sample ID must name one pair.
        if !sample_ids.insert(meta.sample_id) {
            return Err(bad_sample(format!(
                "sample id {} is repeated",
                meta.sample_id
            )));
        }
        let stem = meta.file.rsplit_once('.').map(|(stem, _)| stem);
        if stem != Some(meta.sample_id.to_string().as_str()) {
            return Err(bad_sample(format!(
                "file {:?} is not named after sample {}",
                meta.file, meta.sample_id
            )));
        }
        let image = images
            .remove(&meta.file)
            .ok_or_else(|| bad_sample(format!("image {:?} is missing or repeated", meta.file)))?;
        if image.len() as u64 != meta.bytes {
            return Err(bad_sample(format!(
                "image {:?} has {} bytes, not {}",
                meta.file,
                image.len(),
                meta.bytes
            )));
        }
        if hex::encode(Sha256::digest(&image)) != meta.sha256.to_ascii_lowercase() {
            return Err(bad_sample(format!(
                "image {:?} does not match its sha256",
                meta.file
            )));
        }
        samples.push(Sample { meta, image });
    }
    if let Some(name) = images.into_keys().next() {
        return Err(BundleError::Unlisted(quoted(&name)));
    }
    if samples.len() as u64 != stored {
        return Err(BundleError::StoredMismatch {
            stored,
            listed: samples.len() as u64,
        });
    }
    let budget = pixels_per_image.saturating_mul((samples.len() as u64).max(MIN_BUDGET_IMAGES));
    let mut pixels = 0u64;
    for sample in &samples {
        pixels = pixels.saturating_add(crate::preprocess::header_pixels(&sample.image));
        if pixels > budget {
            return Err(BundleError::PixelBudget {
                pixels,
                budget,
                per_image: pixels_per_image,
            });
        }
    }
    Ok(samples)
}

/// The image's extension as stored (`jpg`, `png` or `webp`).
pub fn image_extension(file: &str) -> &str {
    file.rsplit_once('.').map_or("jpg", |(_, ext)| ext)
}

fn check_name(name: &str) -> Result<(), BundleError> {
    if name == SAMPLES_FILE || name == STATS_FILE {
        return Ok(());
    }
    let Some((stem, ext)) = name.split_once('.') else {
        return Err(bad(name, "not a flat image name"));
    };
    if stem.is_empty() || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad(name, "not a flat image name"));
    }
    if !matches!(ext, "jpg" | "png" | "webp") {
        return Err(bad(name, "not a jpg, png or webp image"));
    }
    Ok(())
}

fn bad(name: &str, reason: &'static str) -> BundleError {
    BundleError::BadEntry {
        name: quoted(name),
        reason,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sample of `image` stored as `file`, with a placeholder caption and URLs.
    pub(crate) fn sample(sample_id: u64, file: &str, image: &[u8]) -> BundleSample {
        BundleSample {
            sample_id,
            file: file.to_owned(),
            url: format!("http://img.test/{file}"),
            final_url: format!("http://img.test/{file}"),
            alt: "a cat".to_owned(),
            page_url: "http://page.test/".to_owned(),
            license: None,
            language: None,
            original_width: 1,
            original_height: 1,
            width: 1,
            height: 1,
            bytes: image.len() as u64,
            sha256: hex::encode(Sha256::digest(image)),
        }
    }

    /// Writes a bundle of `(file, bytes)` images and their `samples` to a temporary file.
    fn write_bundle(images: &[(&str, &[u8])], samples: &[BundleSample]) -> tempfile::TempPath {
        let stats = format!(r#"{{"format_version": 1, "stored": {}}}"#, samples.len());
        write_bundle_with_stats(images, samples, Some(&stats))
    }

    /// As [`write_bundle`], with `stats` as `stats.json` (none when `None`).
    fn write_bundle_with_stats(
        images: &[(&str, &[u8])],
        samples: &[BundleSample],
        stats: Option<&str>,
    ) -> tempfile::TempPath {
        let mut builder = tar::Builder::new(Vec::new());
        let lines: String = samples
            .iter()
            .map(|sample| serde_json::to_string(sample).expect("json") + "\n")
            .collect();
        let mut metadata = vec![(SAMPLES_FILE, lines.as_bytes())];
        metadata.extend(stats.map(|stats| (STATS_FILE, stats.as_bytes())));
        for (name, bytes) in images.iter().copied().chain(metadata) {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, bytes)
                .expect("append");
        }
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), builder.into_inner().expect("tar")).expect("write");
        file.into_temp_path()
    }

    #[test]
    fn distinct_sample_ids_are_read() {
        let images: [(&str, &[u8]); 2] = [("5.jpg", b"jpeg"), ("6.png", b"png")];
        let samples = [sample(5, "5.jpg", b"jpeg"), sample(6, "6.png", b"png")];
        let path = write_bundle(&images, &samples);
        let read = read_bundle(&path, 0, 10, DEFAULT_PIXELS_PER_IMAGE).expect("a good bundle");
        let ids: Vec<u64> = read.iter().map(|sample| sample.meta.sample_id).collect();
        assert_eq!(ids, [5, 6]);
    }

    #[test]
    fn repeated_sample_ids_are_rejected() {
        let images: [(&str, &[u8]); 2] = [("5.jpg", b"jpeg"), ("5.png", b"png")];
        let samples = [sample(5, "5.jpg", b"jpeg"), sample(5, "5.png", b"png")];
        let path = write_bundle(&images, &samples);
        let error =
            read_bundle(&path, 0, 10, DEFAULT_PIXELS_PER_IMAGE).expect_err("sample 5 twice");
        assert!(
            matches!(&error, BundleError::BadSample { line: 2, detail } if detail == "sample id 5 is repeated"),
            "{error}"
        );
    }

    #[test]
    fn overlong_captions_and_urls_are_rejected() {
        let image: &[u8] = b"jpeg";
        let mut long_alt = sample(5, "5.jpg", image);
        long_alt.alt = "é".repeat(MAX_ALT_BYTES / 2 + 1);
        let mut long_url = sample(5, "5.jpg", image);
        long_url.page_url = format!("http://page.test/{}", "a".repeat(MAX_URL_BYTES));
        for (bad_sample, what) in [(long_alt, "alt has"), (long_url, "page_url has")] {
            let path = write_bundle(&[("5.jpg", image)], &[bad_sample]);
            let error = read_bundle(&path, 0, 10, DEFAULT_PIXELS_PER_IMAGE).expect_err(what);
            assert!(
                matches!(&error, BundleError::BadSample { line: 1, detail } if detail.starts_with(what)),
                "{error}"
            );
        }
        let mut longest = sample(5, "5.jpg", image);
        longest.alt = "a".repeat(MAX_ALT_BYTES);
        let path = write_bundle(&[("5.jpg", image)], &[longest]);
        assert!(read_bundle(&path, 0, 10, DEFAULT_PIXELS_PER_IMAGE).is_ok());
    }

    #[test]
    fn a_bundle_cut_before_its_stats_or_miscounted_is_rejected() {
        let images: [(&str, &[u8]); 2] = [("5.jpg", b"jpeg"), ("6.png", b"png")];
        let samples = [sample(5, "5.jpg", b"jpeg"), sample(6, "6.png", b"png")];
        let cut = write_bundle_with_stats(&images, &samples, None);
        let error = read_bundle(&cut, 0, 10, DEFAULT_PIXELS_PER_IMAGE).expect_err("no stats.json");
        assert!(matches!(error, BundleError::NoStats), "{error}");
        let miscounted = write_bundle_with_stats(&images, &samples, Some(r#"{"stored": 3}"#));
        let error = read_bundle(&miscounted, 0, 10, DEFAULT_PIXELS_PER_IMAGE)
            .expect_err("3 stored, 2 listed");
        assert!(
            matches!(
                error,
                BundleError::StoredMismatch {
                    stored: 3,
                    listed: 2
                }
            ),
            "{error}"
        );
        let no_count = write_bundle_with_stats(&images, &samples, Some("{}"));
        assert!(read_bundle(&no_count, 0, 10, DEFAULT_PIXELS_PER_IMAGE).is_err());
    }

    #[test]
    fn quoted_entry_names_are_capped() {
        let long = "x".repeat(9 << 20);
        let error = bad(&long, "not a flat image name");
        assert!(
            error.to_string().len() < 2 * MAX_QUOTED_NAME_BYTES,
            "{error}"
        );
        assert_eq!(truncate_utf8("ab", 2), "ab");
        assert_eq!(truncate_utf8("aéé", 4), "a…");
    }

    #[test]
    fn names_are_flat() {
        for good in ["12.jpg", "0.png", "99.webp", SAMPLES_FILE, STATS_FILE] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for evil in [
            "../1.jpg",
            "/1.jpg",
            "a/1.jpg",
            "1.jpg/",
            "1.exe",
            "x.jpg",
            "1.tar.jpg",
            ".jpg",
            "",
        ] {
            assert!(check_name(evil).is_err(), "{evil}");
        }
    }

    /// A PNG of `width` × `height` black pixels.
    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .expect("png");
        bytes
    }

    #[test]
    fn images_over_the_pixel_budget_reject_the_bundle() {
        let small = png(100, 100);
        let large = png(400, 300);
        let images: [(&str, &[u8]); 3] = [("1.png", &small), ("2.png", &small), ("3.png", &large)];
        let samples = [
            sample(1, "1.png", &small),
            sample(2, "2.png", &small),
            sample(3, "3.png", &large),
        ];
        let path = write_bundle(&images, &samples);
        // 140,000 pixels: within 64 images' worth of 2,500 (160,000), not of 2,000 (128,000).
        assert_eq!(read_bundle(&path, 0, 10, 2_500).expect("within").len(), 3);
        let error = read_bundle(&path, 0, 10, 2_000).expect_err("over the budget");
        assert!(
            matches!(
                error,
                BundleError::PixelBudget {
                    pixels: 140_000,
                    budget: 128_000,
                    per_image: 2_000
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("--max-bundle-megapixels"));
    }
}
