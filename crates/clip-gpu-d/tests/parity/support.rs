//! Shared helpers of the parity tests: the venv's python, the tiny checkpoint, comparisons.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Cargo's target folder (where cached test models and photos live).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The torch venv's python; fails (never skips) with the fix when it is missing.
pub(crate) fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python = std::env::var_os("CAH_TORCH_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
            let works = Command::new(&python)
                .args(["-c", "import torch, transformers, clip, open_clip, numpy, PIL"])
                .status()
                .is_ok_and(|status| status.success());
            assert!(
                works,
                "the parity tests need Python with torch, transformers and OpenAI's clip at {}: run scripts/setup-torch.sh \
                 (and `source scripts/torch-env.sh`) first",
                python.display()
            );
            python
        })
        .clone()
}

/// Runs a python script with arguments and fails the test with its output if it fails.
pub(crate) fn run_python(script: &Path, args: &[&std::ffi::OsStr]) {
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("spawn python");
    assert!(
        output.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A helper script of these tests.
pub(crate) fn test_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// The tiny random-weight checkpoint, built once into target/ by scripts/make-test-model.py.
pub(crate) fn tiny_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = target_dir().join("clip-test-models/tiny");
            std::fs::create_dir_all(dir.parent().expect("parent")).expect("create model folder");
            run_python(
                &repo_root().join("scripts/make-test-model.py"),
                &["--out".as_ref(), dir.as_os_str()],
            );
            dir
        })
        .clone()
}

/// The real-photo corpus, prepared once by scripts/prepare-photos.sh when missing.
pub(crate) fn photos() -> Vec<PathBuf> {
    static PHOTOS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    PHOTOS
        .get_or_init(|| {
            let dir = target_dir().join("testkit-photos");
            if !dir.join("manifest.json").is_file() {
                let status = Command::new("bash")
                    .arg(repo_root().join("scripts/prepare-photos.sh"))
                    .arg(&dir)
                    .status()
                    .expect("run prepare-photos.sh");
                assert!(status.success(), "scripts/prepare-photos.sh failed");
            }
            let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("read photos")
                .map(|entry| entry.expect("entry").path())
                .filter(|path| {
                    path.extension()
                        .is_some_and(|ext| ext == "jpg" || ext == "png" || ext == "webp")
                })
                .collect();
            photos.sort();
            photos
        })
        .clone()
}

/// Largest absolute difference.
pub(crate) fn max_abs_error(left: &[f32], right: &[f32]) -> f32 {
    assert_eq!(left.len(), right.len(), "length mismatch");
    left.iter()
        .zip(right)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Smallest cosine between corresponding rows of two `rows × dim` matrices.
pub(crate) fn min_row_cosine(left: &[f32], right: &[f32], dim: usize) -> f32 {
    assert_eq!(left.len(), right.len(), "length mismatch");
    left.chunks(dim)
        .zip(right.chunks(dim))
        .map(|(a, b)| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norms = a.iter().map(|x| x * x).sum::<f32>().sqrt()
                * b.iter().map(|y| y * y).sum::<f32>().sqrt();
            dot / norms
        })
        .fold(1.0, f32::min)
}
