//! The pictures behind the test web: real photos prepared by `scripts/prepare-photos.sh`, or
//! procedurally generated ones when that corpus is absent.
//!
//! The prepared corpus is a folder with `manifest.json` and the encoded files (JPEG 4:2:0 mostly,
//! some PNG and WebP, 0.05 to 4 megapixels, re-encoded from scikit-image's sample photos).
//! Entries marked `"default_mix": false` are served only by name ([`PhotoCorpus::named`]), never
//! by [`PhotoCorpus::pick`], so adding them leaves the default mix as it was.
//! GIF and SVG are always generated here: the corpus holds no such files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::error::TestkitError;
use crate::images::{self, ImageKind};

/// Environment variable naming a prepared corpus folder (overrides the default location).
pub const PHOTOS_ENV: &str = "CAH_TESTKIT_PHOTOS";

/// Where the pictures came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusSource {
    /// Real photos from a prepared folder.
    Prepared { dir: PathBuf, n_photos: usize },
    /// Procedural pictures made by the `image` crate, because no prepared folder was found.
    Generated { reason: String },
}

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct Photo {
    pub name: String,
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
    pub bytes: Bytes,
}

/// A set of pictures indexed by format.
#[derive(Debug)]
pub struct PhotoCorpus {
    source: CorpusSource,
    /// The default mix, what [`Self::pick`] chooses from.
    by_kind: BTreeMap<ImageKind, Vec<Photo>>,
    /// Pictures outside the default mix, reachable only through [`Self::named`].
    by_name_only: Vec<Photo>,
}

#[derive(serde::Deserialize)]
struct Manifest {
    photos: Vec<ManifestEntry>,
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    file: String,
    format: ImageKind,
    width: u32,
    height: u32,
    #[serde(default = "in_default_mix")]
    default_mix: bool,
}

fn in_default_mix() -> bool {
    true
}

impl PhotoCorpus {
    /// Loads a prepared folder (its `manifest.json` and the files it names) and adds generated GIF and SVG.
    pub fn load(dir: &Path) -> Result<Self, TestkitError> {
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read(&manifest_path).map_err(TestkitError::file(&manifest_path))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|source| TestkitError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        let mut by_kind: BTreeMap<ImageKind, Vec<Photo>> = BTreeMap::new();
        let mut by_name_only = Vec::new();
        for entry in manifest.photos {
            let path = dir.join(&entry.file);
            let bytes = std::fs::read(&path).map_err(TestkitError::file(&path))?;
            let photo = Photo {
                name: entry.file,
                kind: entry.format,
                width: entry.width,
                height: entry.height,
                bytes: Bytes::from(bytes),
            };
            if entry.default_mix {
                by_kind.entry(entry.format).or_default().push(photo);
            } else {
                by_name_only.push(photo);
            }
        }
        let n_photos = by_kind.values().map(Vec::len).sum::<usize>() + by_name_only.len();
        // `pick` falls back to the default mix's JPEGs, so there must be one.
        if by_kind.get(&ImageKind::Jpeg).is_none_or(Vec::is_empty) {
            return Err(TestkitError::Config(format!(
                "photo corpus {} has no JPEG in its default mix (run scripts/prepare-photos.sh again)",
                dir.display()
            )));
        }
        add_generated(&mut by_kind, &[ImageKind::Gif, ImageKind::Svg])?;
        Ok(Self {
            source: CorpusSource::Prepared {
                dir: dir.to_path_buf(),
                n_photos,
            },
            by_kind,
            by_name_only,
        })
    }

    /// Procedural pictures only (0.02 to 0.5 megapixels), for machines without the prepared corpus.
    pub fn generated(reason: impl Into<String>) -> Result<Self, TestkitError> {
        let mut by_kind = BTreeMap::new();
        add_generated(&mut by_kind, &ImageKind::ALL)?;
        Ok(Self {
            source: CorpusSource::Generated {
                reason: reason.into(),
            },
            by_kind,
            by_name_only: Vec::new(),
        })
    }

    /// The prepared corpus at `$CAH_TESTKIT_PHOTOS` or [`default_photo_dir`], else the generated fallback.
    ///
    /// The fallback is logged at `warn` and visible through [`Self::source`].
    pub fn discover() -> Result<Self, TestkitError> {
        let dir = std::env::var_os(PHOTOS_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(default_photo_dir);
        if dir.join("manifest.json").is_file() {
            let corpus = Self::load(&dir)?;
            tracing::info!(dir = %dir.display(), n_photos = corpus.len(), "using prepared photo corpus");
            return Ok(corpus);
        }
        let reason = format!(
            "no manifest.json in {} (run scripts/prepare-photos.sh)",
            dir.display()
        );
        tracing::warn!(%reason, "using generated pictures instead of real photos");
        Self::generated(reason)
    }

    /// One corpus per process, built by [`Self::discover`] on first use.
    pub fn shared() -> Result<Arc<Self>, TestkitError> {
        static SHARED: OnceLock<Arc<PhotoCorpus>> = OnceLock::new();
        if let Some(corpus) = SHARED.get() {
            return Ok(corpus.clone());
        }
        let corpus = Arc::new(Self::discover()?);
        Ok(SHARED.get_or_init(|| corpus).clone())
    }

    pub fn source(&self) -> &CorpusSource {
        &self.source
    }

    /// True when real photos are in use.
    pub fn is_prepared(&self) -> bool {
        matches!(self.source, CorpusSource::Prepared { .. })
    }

    /// Every picture, the default mix and those served only by name.
    pub fn len(&self) -> usize {
        self.by_kind.values().map(Vec::len).sum::<usize>() + self.by_name_only.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every picture, the default mix first.
    pub fn photos(&self) -> impl Iterator<Item = &Photo> {
        self.by_kind.values().flatten().chain(&self.by_name_only)
    }

    /// The picture whose file name is `name`, in the default mix or not.
    pub fn named(&self, name: &str) -> Option<&Photo> {
        self.photos().find(|photo| photo.name == name)
    }

    /// The pictures of one format in the default mix (possibly none, e.g. WebP in a corpus
    /// prepared without it).
    pub fn of_kind(&self, kind: ImageKind) -> &[Photo] {
        self.by_kind
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A deterministic choice for `key` among the default mix's pictures of `kind`, or its JPEGs if
    /// it has none of that kind.
    pub fn pick(&self, kind: ImageKind, key: u64) -> &Photo {
        let candidates = match self.of_kind(kind) {
            [] => self.of_kind(ImageKind::Jpeg),
            some => some,
        };
        let index = usize::try_from(key % candidates.len().max(1) as u64)
            .expect("index below a usize length");
        candidates
            .get(index)
            .expect("every corpus holds at least one jpeg")
    }
}

/// `<workspace>/target/testkit-photos`, where `scripts/prepare-photos.sh` writes by default.
pub fn default_photo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testkit-photos")
}

const GENERATED_SIZES: &[(ImageKind, u32, u32)] = &[
    (ImageKind::Jpeg, 160, 120),
    (ImageKind::Jpeg, 320, 240),
    (ImageKind::Jpeg, 480, 360),
    (ImageKind::Jpeg, 640, 480),
    (ImageKind::Jpeg, 800, 600),
    (ImageKind::Png, 200, 150),
    (ImageKind::Png, 400, 300),
    (ImageKind::Webp, 256, 192),
    (ImageKind::Webp, 300, 300),
    (ImageKind::Gif, 64, 48),
    (ImageKind::Gif, 120, 90),
    (ImageKind::Svg, 300, 200),
    (ImageKind::Svg, 640, 480),
];

fn add_generated(
    by_kind: &mut BTreeMap<ImageKind, Vec<Photo>>,
    kinds: &[ImageKind],
) -> Result<(), TestkitError> {
    for (index, (kind, width, height)) in GENERATED_SIZES.iter().enumerate() {
        if !kinds.contains(kind) {
            continue;
        }
        let seed = index as u64 + 1;
        let bytes = match kind {
            ImageKind::Svg => images::svg(*width, *height, seed),
            raster => images::encode(&images::photo_like(*width, *height, seed), *raster)?,
        };
        by_kind.entry(*kind).or_default().push(Photo {
            name: format!("generated-{index:02}-{width}x{height}.{}", kind.extension()),
            kind: *kind,
            width: *width,
            height: *height,
            bytes: Bytes::from(bytes),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_corpus_covers_every_kind() {
        let corpus = PhotoCorpus::generated("test").expect("generate");
        assert!(!corpus.is_prepared());
        for kind in ImageKind::ALL {
            assert!(!corpus.of_kind(kind).is_empty(), "{kind:?}");
            let photo = corpus.pick(kind, 12345);
            assert_eq!(photo.kind, kind);
            if kind != ImageKind::Svg {
                let (_, width, height) = images::sniff(&photo.bytes).expect("sniff");
                assert_eq!((width, height), (photo.width, photo.height));
            }
        }
    }

    #[test]
    fn loads_a_prepared_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jpeg = images::encode(&images::photo_like(50, 40, 1), ImageKind::Jpeg).expect("encode");
        std::fs::write(dir.path().join("a.jpg"), &jpeg).expect("write");
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"version": 1, "photos": [{"file": "a.jpg", "format": "jpeg", "width": 50, "height": 40, "origin": "x"}]}"#,
        )
        .expect("write");
        let corpus = PhotoCorpus::load(dir.path()).expect("load");
        assert_eq!(
            corpus.source(),
            &CorpusSource::Prepared {
                dir: dir.path().to_path_buf(),
                n_photos: 1
            }
        );
        assert_eq!(
            corpus.pick(ImageKind::Jpeg, 7).bytes.as_ref(),
            jpeg.as_slice()
        );
        assert_eq!(
            corpus.pick(ImageKind::Webp, 7).kind,
            ImageKind::Jpeg,
            "missing kinds fall back to jpeg"
        );
        assert_eq!(corpus.of_kind(ImageKind::Gif).len(), 2);
    }

    #[test]
    fn pictures_outside_the_default_mix_are_served_only_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = images::encode(&images::photo_like(60, 40, 1), ImageKind::Jpeg).expect("encode");
        let small =
            images::encode(&images::photo_like(30, 20, 2), ImageKind::Jpeg).expect("encode");
        std::fs::write(dir.path().join("big.jpg"), &big).expect("write");
        std::fs::write(dir.path().join("small.jpg"), &small).expect("write");
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"photos": [
                {"file": "big.jpg", "format": "jpeg", "width": 60, "height": 40},
                {"file": "small.jpg", "format": "jpeg", "width": 30, "height": 20, "default_mix": false}
            ]}"#,
        )
        .expect("write");
        let corpus = PhotoCorpus::load(dir.path()).expect("load");
        assert_eq!(corpus.of_kind(ImageKind::Jpeg).len(), 1);
        for key in 0..16 {
            assert_eq!(corpus.pick(ImageKind::Jpeg, key).name, "big.jpg");
        }
        let named = corpus.named("small.jpg").expect("served by name");
        assert_eq!(named.bytes.as_ref(), small.as_slice());
        assert_eq!(corpus.named("big.jpg").map(|photo| photo.width), Some(60));
        assert!(corpus.named("missing.jpg").is_none());
        assert_eq!(corpus.len(), 2 + 2 + 2, "two photos, two GIFs, two SVGs");
    }

    #[test]
    fn a_corpus_without_a_jpeg_in_its_default_mix_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jpeg = images::encode(&images::photo_like(30, 20, 2), ImageKind::Jpeg).expect("encode");
        std::fs::write(dir.path().join("a.jpg"), &jpeg).expect("write");
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"photos": [{"file": "a.jpg", "format": "jpeg", "width": 30, "height": 20, "default_mix": false}]}"#,
        )
        .expect("write");
        let error = PhotoCorpus::load(dir.path()).expect_err("refused");
        assert!(
            error.to_string().contains("no JPEG in its default mix"),
            "{error}"
        );
    }
}
