"""The URL lists of scripts/bench-fetch.sh: which pictures of the test web a benchmark fetches.

Mixes:
  corpus  /ok/photo-N.{jpg,png,webp}: JPEG, PNG and WebP URLs 7:1:1, each URL served one of the
          default mix's pictures of its format by a hash of the URL (the test web's own choice).
          Heavier than the web: a mean of about 183 KB and 0.76 MP a picture, 16% of them with a
          shorter side of 1024 or more.
  laion   /photo/FILE?copy=N: the corpus's pictures weighted so that their shorter sides follow
          laion2B-en (of its 2,322M images, 1,324M have both sides >= 256, 488M >= 512 and
          76M >= 1024: so 43.0% below 256, 36.0% from 256, 17.7% from 512, 3.3% from 1024),
          formats 7:1:1 within each class where the class has them, pictures equally within.

Usage: bench_mix.py MANIFEST MIX HOST:PORT N   (URLs on stdout, the mix's make-up on stderr)
"""

import json
import random
import sys

# Shorter-side classes (lower bounds in pixels) and their share of laion2B-en.
LAION_TOTAL = 2_322_161_807
LAION_AT_LEAST = {256: 1_324e6, 512: 488e6, 1024: 76e6}
FORMAT_SHARE = {"jpeg": 7 / 9, "png": 1 / 9, "webp": 1 / 9}


def size_class(photo):
    shorter = min(photo["width"], photo["height"])
    return max([0] + [bound for bound in LAION_AT_LEAST if shorter >= bound])


def class_shares():
    bounds = [0] + sorted(LAION_AT_LEAST)
    at_least = [LAION_TOTAL] + [LAION_AT_LEAST[bound] for bound in bounds[1:]] + [0]
    return {bound: (at_least[i] - at_least[i + 1]) / LAION_TOTAL for i, bound in enumerate(bounds)}


def corpus_weights(photos):
    """Each default-mix picture's expected share of the corpus mix's URLs."""
    weights = {}
    for fmt, share in FORMAT_SHARE.items():
        of_format = [p for p in photos if p.get("default_mix", True) and p["format"] == fmt]
        for photo in of_format:
            weights[photo["file"]] = share / len(of_format)
    return weights


def laion_weights(photos):
    weights = {}
    for bound, share in class_shares().items():
        in_class = [p for p in photos if size_class(p) == bound]
        if not in_class:
            sys.exit(f"bench_mix: no picture with a shorter side in the {bound}+ class; run scripts/prepare-photos.sh")
        formats = {p["format"] for p in in_class}
        format_total = sum(FORMAT_SHARE[fmt] for fmt in formats)
        for fmt in formats:
            of_format = [p for p in in_class if p["format"] == fmt]
            for photo in of_format:
                weights[photo["file"]] = share * FORMAT_SHARE[fmt] / format_total / len(of_format)
    return weights


def counts(weights, n):
    """Whole URL counts per picture in proportion to the weights (largest remainders)."""
    exact = {name: weight * n for name, weight in weights.items()}
    result = {name: int(value) for name, value in exact.items()}
    short = n - sum(result.values())
    for name in sorted(exact, key=lambda name: (result[name] - exact[name], name))[:short]:
        result[name] += 1
    return result


def describe(name, weights, photos):
    by_file = {p["file"]: p for p in photos}
    mean = lambda value: sum(weights[f] * value(by_file[f]) for f in weights)  # noqa: E731
    classes = {bound: 0.0 for bound in class_shares()}
    formats = {fmt: 0.0 for fmt in FORMAT_SHARE}
    for file, weight in weights.items():
        classes[size_class(by_file[file])] += weight
        formats[by_file[file]["format"]] += weight
    shares = " ".join(f"{bound}+:{share:.1%}" for bound, share in classes.items())
    kinds = " ".join(f"{fmt}:{share:.1%}" for fmt, share in formats.items())
    print(
        f"mix {name}: {len(weights)} pictures, mean {mean(lambda p: p['bytes']) / 1e3:.0f} KB "
        f"and {mean(lambda p: p['width'] * p['height']) / 1e6:.2f} MP a URL; shorter side {shares}; {kinds}",
        file=sys.stderr,
    )


def main():
    manifest, mix, web, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    photos = json.load(open(manifest, encoding="utf-8"))["photos"]
    if mix == "corpus":
        describe(mix, corpus_weights(photos), photos)
        extensions = ["jpg"] * 7 + ["png", "webp"]
        for i in range(n):
            print(f"http://{web}/ok/photo-{i:06d}.{extensions[i % len(extensions)]}")
    elif mix == "laion":
        weights = laion_weights(photos)
        describe(mix, weights, photos)
        urls = [name for name, count in sorted(counts(weights, n).items()) for _ in range(count)]
        random.Random(2021).shuffle(urls)
        for i, name in enumerate(urls):
            print(f"http://{web}/photo/{name}?copy={i}")
    else:
        sys.exit(f"bench_mix: unknown mix '{mix}' (corpus or laion)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
