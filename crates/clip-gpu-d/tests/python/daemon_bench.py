"""End-to-end throughput of `clip-gpu-d run`, as scripts/gpu-check.sh runs it on the GPU machine.

Starts tracker-d (SQLite, in a scratch folder), imports jobs, and hands in one bundle per job
through the tracker's upload path as scraper-d does (claim as a CPU client, PUT the bundle to
the signed upload URL, complete with `blob:KEY`). Every bundle holds --samples real-photo
thumbnails from the kit (shorter side 256, as scraper-d stores them) with unique URLs and
captions, in the layout of crates/cah-protocol/src/bundle.rs. Then starts the daemon, waits
until it has scored every pair and completed every job, stops it with SIGTERM, and prints one
JSON line: pairs scored per second from the first claim to the last pair scored, the model
threads' busy fraction over that window (from the daemon's Prometheus metrics
`clip_pairs_scored_total` and `clip_backend_busy_seconds_total`), and whether they meet the
targets. Falling short of a target does not fail; a daemon that fails, or a dataset without
every pair, does.

Standard library only: the GPU machine's Python has torch but maybe not PIL, so the thumbnails
and their sizes come from the kit (thumbs/manifest.json, written by gpu-check.sh prepare).
Usage: daemon_bench.py --tracker-bin BIN --daemon-bin BIN --model DIR --thumbs DIR --device DEV
       --dtype T --bundles N --samples S --batch-size B --work DIR --logs DIR
"""

import argparse
import concurrent.futures
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        urllib.parse.urljoin(base, path),
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    try:
        return json.loads(text)
    except ValueError:
        return text.decode(errors="replace")  # Some answers are plain text ("OK").


def wait_until(what, check, timeout, processes):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"daemon_bench: {process.args[0]} exited ({process.returncode}) while waiting for {what}")
        value = check()
        if value is not None:
            return value
        time.sleep(0.05)
    raise SystemExit(f"daemon_bench: timed out waiting for {what}")


def start_tracker(binary, work, bundles, log):
    """tracker-d on SQLite in `work`, with WATs imported for `bundles` jobs (two halves each),
    on a free loopback port; returns the process and its URL once it answers."""
    database = f"sqlite://{os.path.join(work, 'tracker.sqlite')}"
    wats = os.path.join(work, "wat.paths")
    with open(wats, "w") as out:
        for index in range((bundles + 1) // 2):
            out.write(f"http://cc.gpu-check.test/wat/{index}.warc.wat.gz\n")
    subprocess.run([binary, "import", "--database-url", database, wats], check=True, stdout=log, stderr=log)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    tracker = subprocess.Popen([
        binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", database,
        "--blob-dir", os.path.join(work, "staging"),
    ], stdout=log, stderr=log)

    def up():
        try:
            return call(base, "GET", "/api/ext/info")
        except OSError:  # URLError and refused connections while it starts
            return None

    try:
        wait_until("tracker-d", up, 60, [tracker])
    except BaseException:
        stop(tracker, 30)
        raise
    return tracker, base


def bundle_bytes(job, samples, thumbs):
    """A bundle of `samples` thumbnails for `job`: images, samples.jsonl, stats.json."""
    out = io.BytesIO()
    lines = []
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index in range(samples):
            thumb = thumbs[(job["number"] * 7 + index) % len(thumbs)]
            sample_id = job["start_id"] + index
            name = f"{sample_id}.jpg"
            info = tarfile.TarInfo(name)
            info.size = len(thumb["bytes"])
            tar.addfile(info, io.BytesIO(thumb["bytes"]))
            url = f"http://img.gpu-check.test/{job['number']}/{index}.jpg"
            lines.append(json.dumps({
                "sample_id": sample_id, "file": name, "url": url, "final_url": url,
                "alt": f"{thumb['caption']}, picture {index} of job {job['number']}",
                "page_url": f"http://page.gpu-check.test/{job['number']}", "license": None,
                "language": "eng", "original_width": thumb["width"], "original_height": thumb["height"],
                "width": thumb["width"], "height": thumb["height"], "bytes": len(thumb["bytes"]),
                "sha256": thumb["sha256"],
            }))
        for name, data in (
            ("samples.jsonl", ("\n".join(lines) + "\n").encode()),
            ("stats.json", json.dumps({"format_version": 1, "job": job["number"], "candidates": samples,
                                       "stored": samples, "outcomes": {"ok": samples}}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def hand_in(base, token, job, samples, thumbs):
    data = bundle_bytes(job, samples, thumbs)
    target = call(base, "POST", "/api/ext/uploadUrl", {"token": token, "number": job["number"]})
    request = urllib.request.Request(
        urllib.parse.urljoin(base, target["put_url"]), data=data, method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        stored = json.loads(response.read())
    assert stored["size"] == len(data), stored
    call(base, "POST", "/api/ext/complete", {"token": token, "number": job["number"], "bundle": f"blob:{target['key']}"})


def metrics(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def stop(process, timeout):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def main():
    parser = argparse.ArgumentParser()
    for flag in ("--tracker-bin", "--daemon-bin", "--model", "--thumbs", "--work", "--logs"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="f16")
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-jobs", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--target-pairs-per-second", type=float, default=15000)
    parser.add_argument("--target-busy-fraction", type=float, default=0.8)
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    os.makedirs(args.logs, exist_ok=True)
    manifest = json.load(open(os.path.join(args.thumbs, "manifest.json")))
    thumbs = []
    for entry in manifest:
        data = open(os.path.join(args.thumbs, entry["file"]), "rb").read()
        thumbs.append({**entry, "bytes": data, "sha256": hashlib.sha256(data).hexdigest()})

    tracker_log = open(os.path.join(args.logs, "daemon-bench-tracker.log"), "wb")
    tracker, base = start_tracker(args.tracker_bin, args.work, args.bundles, tracker_log)
    daemon = None
    try:
        token = call(base, "GET", "/api/new?nickname=gpu-check-scraper&type=CPU")["token"]
        jobs = []
        while len(jobs) < args.bundles:
            claimed = call(base, "POST", "/api/ext/claim", {"token": token, "max_jobs": args.bundles - len(jobs), "whole_wat": False})["jobs"]
            if not claimed:
                raise SystemExit(f"daemon_bench: the tracker has {len(jobs)} jobs, {args.bundles} wanted")
            jobs += claimed
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda job: hand_in(base, token, job, args.samples, thumbs), jobs))
        handed_in_s = time.monotonic() - started
        total = args.bundles * args.samples

        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        dataset = os.path.join(args.work, "dataset")
        daemon_log = open(os.path.join(args.logs, "daemon-bench-clip-gpu-d.log"), "wb")
        daemon = subprocess.Popen([
            args.daemon_bin, "--log-format", "json", "run", "--tracker", base, "--model", args.model,
            "--output", dataset, "--devices", args.device, "--dtype", args.dtype,
            "--batch-size", str(args.batch_size), "--max-jobs", str(args.max_jobs),
            "--threshold", "-1", "--tags", "off", "--poll-interval", "1s", "--flush-interval", "2s",
            "--metrics-listen", f"127.0.0.1:{metrics_port}", "--nickname", "gpu-check",
        ], stdout=daemon_log, stderr=daemon_log)
        processes = [tracker, daemon]
        first = wait_until(
            "the first claim",
            lambda: (lambda m: (time.monotonic(), m) if m and m["clip_jobs_claimed_total"] > 0 else None)(metrics(metrics_url)),
            args.timeout, processes)
        last = wait_until(
            "every pair scored",
            lambda: (lambda m: (time.monotonic(), m) if m and m["clip_pairs_scored_total"] >= total else None)(metrics(metrics_url)),
            args.timeout, processes)
        wait_until(
            "every job completed",
            lambda: (lambda m: m if m and m["clip_jobs_completed_total"] >= args.bundles else None)(metrics(metrics_url)),
            args.timeout, processes)
        completed_s = time.monotonic() - first[0]
        daemon_exit = stop(daemon, 120)
        rows = sum(json.load(open(path))["count"] for path in glob.glob(os.path.join(dataset, "*_stats.json")))
        seconds = max(last[0] - first[0], 1e-9)
        scored = last[1]["clip_pairs_scored_total"] - first[1]["clip_pairs_scored_total"]
        busy = last[1]["clip_backend_busy_seconds_total"] - first[1]["clip_backend_busy_seconds_total"]
        n_devices = len(args.device.split(",")) if args.device != "cpu" else 1
        pairs_per_second = scored / seconds
        busy_fraction = busy / seconds / n_devices
        result = {
            "check": "daemon-end-to-end", "device": args.device, "dtype": args.dtype,
            "bundles": args.bundles, "pairs": total, "rows": rows, "batch_size": args.batch_size,
            "max_jobs": args.max_jobs,
            "handed_in_s": round(handed_in_s, 2), "seconds": round(seconds, 3),
            "completed_s": round(completed_s, 3), "pairs_per_second": round(pairs_per_second, 1),
            "busy_fraction": round(busy_fraction, 3),
            # Seconds per pipeline stage over the window, summed over the batches in flight
            # (so preprocessing, on the blocking pool, may exceed the wall time).
            "stage_seconds": {
                name.split('"')[1]: round(value - first[1].get(name, 0.0), 2)
                for name, value in last[1].items() if name.startswith("clip_stage_seconds_total{")
            },
            "target_pairs_per_second": args.target_pairs_per_second,
            "target_busy_fraction": args.target_busy_fraction,
            "meets_target": pairs_per_second >= args.target_pairs_per_second and busy_fraction >= args.target_busy_fraction,
            "daemon_exit": daemon_exit, "ok": daemon_exit == 0 and rows == total,
        }
        print(json.dumps(result), flush=True)
        if not result["ok"]:
            raise SystemExit(f"daemon_bench: daemon exit {daemon_exit}, {rows} of {total} pairs in the dataset")
    finally:
        if daemon is not None:
            stop(daemon, 30)
        stop(tracker, 30)
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
