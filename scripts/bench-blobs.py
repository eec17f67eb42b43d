#!/usr/bin/env python3
"""How fast tracker-d stores and serves bundles: the path every GPU daemon downloads through.

Starts a release tracker-d on SQLite (loopback, a scratch folder), hands in --bundles bundles
of --samples 24 KB entries through the upload path a scraper uses (uploadUrl, PUT, complete),
then claims them as a GPU client and downloads each from the signed URL it is given. Prints
MB/s (10^6 bytes) for the downloads, one line per tracker binary; with --baseline OTHER_BIN
the same run on another build first (say a release tracker-d of an older commit), and the ratio.

On the development VM (2026-11-27, 4 bundles of 5,000 entries, 496 MB): 151-170 MB/s before
blob files were read in 256 KiB steps instead of 4 KiB, 2,073-2,669 MB/s after.

Usage: cargo build --release -p tracker-d && scripts/bench-blobs.py [--baseline BIN]
Standard library only; helpers shared with clip-gpu-d's daemon check (daemon_bench.py).
"""

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "crates", "clip-gpu-d", "tests", "python"))
import daemon_bench  # noqa: E402  (the tracker helpers: start_tracker, call, hand_in)


def entries(count, size):
    """Stand-ins for thumbnails: the tracker stores bundles as bytes and decodes no image."""
    rng = random.Random(7)
    out = []
    for index in range(count):
        data = bytes(rng.getrandbits(8) for _ in range(64)) * (size // 64)
        out.append({"file": f"{index}.jpg", "width": 256, "height": 256, "caption": f"entry {index}",
                    "bytes": data, "sha256": hashlib.sha256(data).hexdigest()})
    return out


def measure(binary, bundles, samples, thumbs):
    work = tempfile.mkdtemp(prefix="bench-blobs-")
    tracker = None
    try:
        tracker, base = daemon_bench.start_tracker(binary, work, bundles, subprocess.DEVNULL)
        token = daemon_bench.call(base, "GET", "/api/new?nickname=bench-scraper&type=CPU")["token"]
        jobs = daemon_bench.call(base, "POST", "/api/ext/claim",
                                 {"token": token, "max_jobs": bundles, "whole_wat": False})["jobs"]
        for job in jobs:
            daemon_bench.hand_in(base, token, job, samples, thumbs)
        gpu = daemon_bench.call(base, "GET", "/api/new?nickname=bench-gpu&type=GPU")["token"]
        claimed = daemon_bench.call(base, "POST", "/api/ext/claim", {"token": gpu, "max_jobs": bundles})["jobs"]
        total = 0
        started = time.monotonic()
        for job in claimed:
            url = urllib.parse.urljoin(base, job["bundle"]["url"])
            with urllib.request.urlopen(url, timeout=600) as response:
                while chunk := response.read(1 << 20):
                    total += len(chunk)
        seconds = time.monotonic() - started
        return len(claimed), total, seconds
    finally:
        if tracker is not None:
            daemon_bench.stop(tracker, 30)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracker-bin", default=os.path.join(REPO, "target", "release", "tracker-d"))
    parser.add_argument("--baseline", help="another tracker-d binary to measure first, for a ratio")
    parser.add_argument("--bundles", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--entry-bytes", type=int, default=24 * 1024)
    args = parser.parse_args()
    if not os.access(args.tracker_bin, os.X_OK):
        raise SystemExit(f"bench-blobs: no {args.tracker_bin}; run `cargo build --release -p tracker-d` first")
    thumbs = entries(29, args.entry_bytes)
    rates = {}
    for label, binary in (("baseline", args.baseline), ("tracker-d", args.tracker_bin)):
        if binary is None:
            continue
        count, total, seconds = measure(binary, args.bundles, args.samples, thumbs)
        rates[label] = total / 1e6 / seconds
        print(f"{label} ({binary}): {count} bundles, {total / 1e6:.0f} MB downloaded in {seconds:.2f} s: "
              f"{rates[label]:.0f} MB/s", flush=True)
    if len(rates) == 2:
        print(f"ratio: {rates['tracker-d'] / rates['baseline']:.1f}x the baseline")


if __name__ == "__main__":
    main()
