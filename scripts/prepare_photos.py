"""Re-encodes scikit-image's sample photos into cah-testkit's photo corpus.

Called by scripts/prepare-photos.sh with Pillow and the scikit-image wheel on PYTHONPATH.
Writes the files first and manifest.json last (through a temporary name), so a corpus with a
manifest is always complete.
"""

import argparse
import json
import os
import shutil
import sys

from PIL import Image, ImageChops

# (source file, target megapixels, format, quality, progressive)
# Mostly baseline JPEG 4:2:0 at quality 85-90, some progressive JPEG, some PNG and WebP,
# from 0.05 to 4 megapixels. Sources are at most ~0.9 MP, so the big ones are Lanczos upscales.
# These make the test web's default mix: a URL under /ok/ gets one of them by a hash of the URL.
RECIPE = [
    ("astronaut.png", 0.05, "jpeg", 88, False),
    ("astronaut.png", 0.8, "jpeg", 90, False),
    ("astronaut.png", 4.0, "jpeg", 85, True),
    ("coffee.png", 0.12, "jpeg", 87, False),
    ("coffee.png", 1.2, "jpeg", 89, False),
    ("coffee.png", 0.24, "webp", 82, False),
    ("chelsea.png", 0.05, "png", 0, False),
    ("chelsea.png", 0.3, "jpeg", 86, False),
    ("chelsea.png", 2.0, "jpeg", 88, True),
    ("rocket.jpg", 0.27, "jpeg", 90, False),
    ("rocket.jpg", 3.0, "jpeg", 85, False),
    ("motorcycle_left.png", 0.37, "jpeg", 88, False),
    ("motorcycle_left.png", 1.5, "webp", 80, False),
    ("hubble_deep_field.jpg", 0.87, "jpeg", 87, False),
    ("hubble_deep_field.jpg", 0.2, "png", 0, False),
    ("retina.jpg", 0.5, "jpeg", 86, False),
    ("retina.jpg", 2.5, "jpeg", 89, False),
    ("ihc.png", 0.26, "jpeg", 85, False),
    ("ihc.png", 0.1, "webp", 85, False),
    ("grass.png", 0.25, "jpeg", 88, False),
    ("gravel.png", 0.25, "jpeg", 87, True),
    ("brick.png", 0.25, "png", 0, False),
    ("camera.png", 0.26, "jpeg", 90, False),
    ("logo.png", 0.1, "png", 0, False),
    ("color.png", 0.08, "jpeg", 86, False),
    ("coins.png", 0.1, "jpeg", 88, False),
    ("moon.png", 0.26, "jpeg", 85, False),
    ("page.png", 0.05, "png", 0, False),
]

# Small pictures (shorter side below 256, at least 5 KB) that only /photo/{file} serves, so the
# default mix stays as it was: scripts/bench_mix.py needs them for a mix with LAION's share of
# small images (43% of laion2B-en has a side below 256).
SMALL_RECIPE = [
    ("coffee.png", 0.04, "jpeg", 82, False),
    ("rocket.jpg", 0.05, "jpeg", 85, False),
    ("motorcycle_left.png", 0.04, "jpeg", 80, False),
    ("camera.png", 0.04, "jpeg", 85, False),
    ("hubble_deep_field.jpg", 0.05, "jpeg", 85, False),
    ("ihc.png", 0.03, "jpeg", 88, False),
    ("chelsea.png", 0.04, "webp", 80, False),
    ("motorcycle_left.png", 0.05, "webp", 82, False),
]

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def resized(image, megapixels):
    ratio = (megapixels * 1_000_000 / (image.width * image.height)) ** 0.5
    size = (max(16, round(image.width * ratio)), max(16, round(image.height * ratio)))
    result = image.resize(size, Image.Resampling.LANCZOS)
    if ratio > 1.2 and result.mode in ("RGB", "L"):
        # An upscale is unnaturally smooth; sensor-like grain brings file sizes back to those of
        # real photos of that resolution.
        noise = Image.effect_noise(size, 7).convert(result.mode)
        result = ImageChops.add(result, noise, 1.0, -128)
    return result


def encode(image, path, fmt, quality, progressive):
    if fmt == "jpeg":
        image = image.convert("L" if image.mode in ("L", "I;16") else "RGB")
        # subsampling=2 is 4:2:0, the common web default.
        image.save(path, "JPEG", quality=quality, subsampling=2, optimize=True, progressive=progressive)
    elif fmt == "png":
        image.save(path, "PNG", optimize=True)
    else:
        image.convert("RGBA" if image.mode == "RGBA" else "RGB").save(path, "WEBP", quality=quality, method=4)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skimage-data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipe-version", required=True, type=int)
    args = parser.parse_args()

    staging = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    photos = []
    recipe = [(*entry, True) for entry in RECIPE] + [(*entry, False) for entry in SMALL_RECIPE]
    for source, megapixels, fmt, quality, progressive, default_mix in recipe:
        with Image.open(os.path.join(args.skimage_data, source)) as original:
            original.load()
            image = resized(original, megapixels)
        stem = os.path.splitext(source)[0]
        name = f"{stem}-{megapixels:.2f}mp-{'prog' if progressive else 'base'}.{EXTENSIONS[fmt]}"
        path = os.path.join(staging, name)
        encode(image, path, fmt, quality, progressive)
        photos.append({
            "file": name,
            "format": fmt,
            "width": image.width,
            "height": image.height,
            "bytes": os.path.getsize(path),
            "origin": f"scikit-image skimage/data/{source}",
            "quality": quality or None,
            "progressive": progressive,
            "default_mix": default_mix,
        })
    manifest = {
        "recipe_version": args.recipe_version,
        "source": "scikit-image sample data (see skimage/data/README.txt for licences)",
        "photos": photos,
    }
    readme = os.path.join(args.skimage_data, "README.txt")
    if os.path.exists(readme):
        shutil.copy(readme, os.path.join(staging, "SKIMAGE-DATA-README.txt"))
    # Same-directory rename keeps the folder swap atomic; the manifest is written last.
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(staging, args.out)
    tmp_manifest = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp_manifest, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
    os.rename(tmp_manifest, os.path.join(args.out, "manifest.json"))
    total = sum(photo["bytes"] for photo in photos)
    print(f"prepared {len(photos)} photos ({total / 1e6:.1f} MB) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
