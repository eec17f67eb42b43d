"""Writes extra test images and OpenAI's `_transform(224)` output for each image given.

Usage: python preprocess_reference.py OUT_DIR IMAGE...
Writes OUT_DIR/generated-*.{png,webp,jpg} first (they are processed too), then
OUT_DIR/reference.json: [{"image": path, "npy": path}], each npy float32 [3, 224*224].
"""

import json
import os
import sys

import numpy as np
from PIL import Image
from clip.clip import _transform


def generated_images(out_dir):
    rng = np.random.default_rng(7)
    paths = []
    def smooth(width, height):
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) * 3) % 256], axis=-1)
        noise = rng.integers(0, 40, size=(height, width, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)
    cases = [
        ("generated-wide.png", smooth(641, 227), "PNG", {}),
        ("generated-tall.webp", smooth(225, 500), "WEBP", {"lossless": True}),
        ("generated-small-upscale.png", smooth(50, 37), "PNG", {}),
        ("generated-odd.jpg", smooth(333, 229), "JPEG", {"quality": 92}),
    ]
    for name, pixels, fmt, options in cases:
        path = os.path.join(out_dir, name)
        Image.fromarray(pixels).save(path, fmt, **options)
        paths.append(path)
    grey = os.path.join(out_dir, "generated-grey.png")
    Image.fromarray(smooth(300, 260)[:, :, 0]).save(grey, "PNG")
    paths.append(grey)
    # JPEG in each mode Pillow opens one in (L, RGB, CMYK), 4:4:4 and 4:2:2 chroma, progressive.
    jpegs = [
        ("generated-grey.jpg", Image.fromarray(smooth(301, 233)[:, :, 1]), {"quality": 90}),
        ("generated-444.jpg", Image.fromarray(smooth(259, 301)), {"quality": 95, "subsampling": 0}),
        ("generated-422-progressive.jpg", Image.fromarray(smooth(347, 231)),
         {"quality": 85, "subsampling": 1, "progressive": True}),
        ("generated-cmyk.jpg", Image.fromarray(
            np.concatenate([smooth(283, 241), smooth(283, 241)[:, :, :1] // 2], axis=-1), "CMYK"),
         {"quality": 90}),
    ]
    for name, image, options in jpegs:
        path = os.path.join(out_dir, name)
        image.save(path, "JPEG", **options)
        paths.append(path)
    return paths


def main():
    out_dir = sys.argv[1]
    images = generated_images(out_dir) + sys.argv[2:]
    transform = _transform(224)
    rows = []
    for index, path in enumerate(images):
        with Image.open(path) as image:
            tensor = transform(image)
        npy = os.path.join(out_dir, f"reference-{index}.npy")
        np.save(npy, tensor.numpy().astype(np.float32).reshape(3, -1))
        rows.append({"image": path, "npy": npy})
    with open(os.path.join(out_dir, "reference.json"), "w") as handle:
        json.dump(rows, handle)


if __name__ == "__main__":
    main()
