#!/usr/bin/env python3
"""Checks a finished demo run (scripts/demo.py --work DIR) end to end and fails loudly.

- The dataset reads back with webdataset, pyarrow and numpy, shard by shard, consistently
  (crates/clip-gpu-d/tests/python/check_dataset.py does that part).
- Every job in the tracker is closed, exactly once: each job's kept rows in the dataset equal the
  pairs the tracker credited it with, so no pair is lost or written twice.
- No pair is duplicated: keys, sample ids and (url, caption) are unique.
- Every kept pair is traceable to its WAT record: the generated crawl has a page with that
  WARC-Target-URI and an IMG@/src link on it that resolves to the pair's url with that alt text,
  and the sample id lies in the id range of the job the row names.
- With --screenshot: the PNG exists and the dashboard's DOM (saved beside it) shows progress,
  workers, the leaderboard with the demo's nicknames, and the jobs-per-hour chart.

Usage: check-demo.py --work DIR [--screenshot PNG]
"""

import argparse
import gzip
import html
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urldefrag

REPO = Path(__file__).resolve().parent.parent


def fail(message):
    print(f"check-demo: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def warc_records(path):
    """(headers, body) of every record of a gzip-member WAT file."""
    data = gzip.open(path).read()
    position = 0
    while True:
        start = data.find(b"WARC/1.0\r\n", position)
        if start < 0:
            return
        head_end = data.find(b"\r\n\r\n", start)
        if head_end < 0:
            return
        headers = {}
        for line in data[start:head_end].decode("utf-8", "replace").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = 0
        body = data[head_end + 4: head_end + 4 + length]
        position = head_end + 4 + max(length, 0)
        yield headers, body


def crawl_links(crawl_dir):
    """{(page_url, image_url): {alt, ...}} from every IMG@/src link of the generated crawl."""
    links = {}
    files = sorted(Path(crawl_dir).rglob("*.warc.wat.gz"))
    if not files:
        fail(f"no WAT files under {crawl_dir}")
    for path in files:
        for headers, body in warc_records(path):
            if headers.get("warc-type") != "metadata":
                continue
            try:
                envelope = json.loads(body)["Envelope"]
                page = envelope["WARC-Header-Metadata"]["WARC-Target-URI"]
                meta = envelope["Payload-Metadata"]["HTTP-Response-Metadata"]["HTML-Metadata"]
                found = meta["Links"]
                head = meta.get("Head")
                base = head.get("Base") if isinstance(head, dict) else None
                # A <base href> (relative to the page itself) moves where relative srcs resolve.
                base = urljoin(page, base) if isinstance(base, str) and base.strip() else page
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            for link in found if isinstance(found, list) else []:
                if not isinstance(link, dict) or link.get("path") != "IMG@/src" or not isinstance(link.get("alt"), str):
                    continue
                url = urldefrag(urljoin(base, str(link.get("url", "")).strip()))[0]
                links.setdefault((page, url), set()).add(link["alt"])
    return links


def same_caption(caption, alts):
    """The scraper stores alt text with HTML entities decoded and whitespace squeezed."""
    clean = lambda text: " ".join(html.unescape(text).split())
    return caption in alts or any(clean(alt) == clean(caption) for alt in alts)


def read_rows(dataset):
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(dataset.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def check_dashboard(screenshot):
    png = Path(screenshot)
    if not png.exists() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n" or png.stat().st_size < 10_000:
        fail(f"the dashboard screenshot {png} is missing or not a real PNG")
    dom = png.with_suffix(".html").read_text()
    for needle, what in [
        ('id="progress"', "the progress section"),
        ('id="completion"', "the completion figure"),
        ('id="workers"', "the workers section"),
        ('data-type="CPU"', "a table of CPU workers"),
        ('id="leaderboard-gpu"', "the GPU leaderboard"),
        ('id="leaderboard-cpu"', "the CPU leaderboard"),
        ("demo-scraper-", "a demo scraper on the dashboard"),
        ('id="jobs-per-hour"', "the jobs-per-hour chart"),
        ("<rect", "bars in the chart"),
    ]:
        if needle not in dom:
            fail(f"the dashboard DOM lacks {what} ({needle!r}); see {png.with_suffix('.html')}")
    print(f"dashboard:         screenshot {png} ({png.stat().st_size} bytes) shows progress, workers, leaderboard and chart")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--screenshot")
    args = parser.parse_args()
    work = Path(args.work)
    dataset = work / "dataset"

    checker = REPO / "crates/clip-gpu-d/tests/python/check_dataset.py"
    read_back = subprocess.run([sys.executable, str(checker), str(dataset)], capture_output=True, text=True)
    if read_back.returncode != 0:
        fail(f"the dataset does not read back:\n{read_back.stdout}\n{read_back.stderr}")
    summary = json.loads(read_back.stdout)
    if summary["leftover_tmp"]:
        fail(f"temporary files left in the dataset: {summary['leftover_tmp']}")

    db = sqlite3.connect(work / "tracker.sqlite")
    jobs = {number: (status, pairs, start, end) for number, status, pairs, start, end in
            db.execute("SELECT number, status, pairs, start_id, end_id FROM jobs")}
    # A job whose WAT was reported unusable too often is 'failed': never handed out again.
    failed = {number: (url, failures, reason) for number, url, failures, reason in
              db.execute("SELECT number, url, failures, failure_reason FROM jobs WHERE status = 'failed'")}
    db.close()
    if not jobs:
        fail("the tracker has no jobs")
    if failed:
        fail(f"jobs failed for good, their WAT reported unusable (number: url, reports, last reason): {failed}")
    open_jobs = sorted(n for n, (status, *_rest) in jobs.items() if status != "closed")
    if open_jobs:
        fail(f"jobs not closed: {open_jobs}")

    rows = read_rows(dataset)
    if len(rows) != summary["rows"]:
        fail(f"parquet rows {len(rows)} != rows read back {summary['rows']}")
    if not rows:
        fail("the dataset is empty")
    per_job = {}
    for row in rows:
        per_job[row["job"]] = per_job.get(row["job"], 0) + 1
    for number, (_status, pairs, _start, _end) in jobs.items():
        if per_job.get(number, 0) != (pairs or 0):
            fail(f"job {number}: the tracker credited {pairs} pairs, the dataset holds {per_job.get(number, 0)}")
    unknown = set(per_job) - set(jobs)
    if unknown:
        fail(f"rows name jobs the tracker does not have: {sorted(unknown)}")

    for field in ("key", "sample_id", "hash"):
        values = [row[field] for row in rows]
        if len(set(values)) != len(values):
            fail(f"duplicate {field} values in the dataset")
    pairs = [(row["url"], row["caption"]) for row in rows]
    if len(set(pairs)) != len(pairs):
        fail("duplicate (url, caption) pairs in the dataset")

    links = crawl_links(work / "crawl")
    untraced = []
    for row in rows:
        _status, _pairs, start, end = jobs[row["job"]]
        alts = links.get((row["page_url"], row["url"]))
        if alts is None or not same_caption(row["caption"], alts) or not (start <= row["sample_id"] <= end):
            untraced.append((row["key"], row["page_url"], row["url"], row["caption"][:40]))
    if untraced:
        fail(f"{len(untraced)} of {len(rows)} pairs are not traceable to a WAT record, e.g. {untraced[:3]}")

    print(f"check:             {len(jobs)} jobs closed once; {len(rows)} pairs in {len(summary['shards'])} shard(s), "
          f"each traceable to its WAT record; none lost, none duplicated")
    if args.screenshot:
        check_dashboard(args.screenshot)


if __name__ == "__main__":
    main()
