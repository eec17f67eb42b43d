#!/usr/bin/env bash
# Prepares the real-photo corpus of cah-testkit: scikit-image's sample photos (from its PyPI
# wheel), re-encoded at a realistic size and format mix into target/testkit-photos/.
# Idempotent: does nothing when the corpus of the current recipe version is already there.
#
# Usage: scripts/prepare-photos.sh [OUT_DIR]
# Env:   CAH_TESTKIT_PHOTOS   output folder (default: <repo>/target/testkit-photos)
#        CAH_PHOTOS_PY_DIR    pip --target folder for pillow + scikit-image (default: <repo>/target/photos-py)
#        PYTHON               interpreter (default: python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-${CAH_TESTKIT_PHOTOS:-$repo_root/target/testkit-photos}}"
py_dir="${CAH_PHOTOS_PY_DIR:-$repo_root/target/photos-py}"
python="${PYTHON:-python3}"
recipe_version="3"
# Pinned so the corpus is the same on every machine.
pillow_version="12.0.0"
skimage_version="0.26.0"

if [[ -f "$out_dir/manifest.json" ]] && grep -q "\"recipe_version\": $recipe_version," "$out_dir/manifest.json"; then
    echo "photo corpus already prepared in $out_dir"
    exit 0
fi

if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "error: $python -m pip is not available; install python3-pip" >&2
    exit 1
fi

if [[ ! -f "$py_dir/.ready-$pillow_version-$skimage_version" ]]; then
    echo "installing pillow $pillow_version and scikit-image $skimage_version (data files only) into $py_dir"
    rm -rf "$py_dir.tmp"
    # scikit-image is installed without its dependencies: only its bundled sample photos are used.
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input --only-binary=:all: \
        --target "$py_dir.tmp" "pillow==$pillow_version"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input --only-binary=:all: --no-deps \
        --target "$py_dir.tmp" "scikit-image==$skimage_version"
    rm -rf "$py_dir"
    mv "$py_dir.tmp" "$py_dir"
    touch "$py_dir/.ready-$pillow_version-$skimage_version"
fi

PYTHONPATH="$py_dir" "$python" "$repo_root/scripts/prepare_photos.py" \
    --skimage-data "$py_dir/skimage/data" --out "$out_dir" --recipe-version "$recipe_version"
