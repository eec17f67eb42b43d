#!/usr/bin/env python3
"""Runs the whole swarm on one machine: cah-testkit's world, tracker-d on SQLite, two or more
scraper-d and one clip-gpu-d, until every job is closed; then prints what happened.

scripts/demo.sh builds the binaries and the Python environment and calls this; the end-to-end
test (scripts/e2e.sh) calls it with --check, --faults and --screenshot.

Stages and what each process is:
  cah-testkit serve   authoritative DNS, image hosts with real photos, a generated Common Crawl
  tracker-d serve     jobs, leases, staging blobs, dedup sets, dashboard (SQLite file)
  scraper-d run  x N  WAT -> candidates -> downloads -> bundles uploaded to the tracker
  clip-gpu-d run      bundles -> CLIP scores -> webdataset/parquet/npy shards in dataset/

With --common-crawl CC-MAIN-YYYY-WW --limit N it skips cah-testkit and runs against the real
Common Crawl and the real web (needs the Internet and, to mean anything, real weights).
"""

import argparse
import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def metrics(url):
    """Prometheus text to {name{labels}: value}; {} when the process is gone."""
    try:
        text = http_get(url, timeout=2).decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


class Proc:
    """One daemon: its command, log file and (re)starts."""

    def __init__(self, name, argv, work, env=None, metrics_url=None, stdout=None):
        self.name, self.argv, self.env, self.stdout = name, argv, env, stdout
        self.log_path = work / f"{name}.log"
        self.metrics_url = metrics_url
        self.process = None
        self.starts = 0
        # Last metrics seen from each incarnation, summed at the end.
        self.seen = []

    def start(self):
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        out = open(self.stdout, "w") if self.stdout else log
        self.process = subprocess.Popen(self.argv, stdout=out, stderr=log, env=env)
        self.starts += 1
        self.seen.append({})
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def poll_metrics(self):
        if self.metrics_url and self.alive():
            got = metrics(self.metrics_url)
            if got:
                self.seen[-1] = got

    def total(self, name):
        return sum(seen.get(name, 0.0) for seen in self.seen)

    def kill(self):
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout=60):
        if not self.alive():
            return self.process.returncode if self.process else None
        self.poll_metrics()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_for(what, check, timeout, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        for proc in procs:
            if proc.process is not None and not proc.alive() and proc.process.returncode not in (0, None):
                raise SystemExit(f"demo: {proc.name} exited with {proc.process.returncode} while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out after {timeout} s waiting for {what}")


def read_world(path):
    if not path.exists():
        return None
    world = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return world if "photos" in world else None


def tracker_data(tracker):
    try:
        return json.loads(http_get(f"{tracker}/data"))
    except (OSError, ValueError):
        return None


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=str(REPO / "target/release"), help="folder with tracker-d, scraper-d, clip-gpu-d, cah-testkit")
    parser.add_argument("--work", required=True, help="work folder (crawl, tracker.sqlite, staging, dataset, logs)")
    parser.add_argument("--model", required=True, help="CLIP checkpoint folder (Hugging Face layout)")
    parser.add_argument("--random-weights", action="store_true", help="the checkpoint has random weights: keep every pair (threshold -1) and say so")
    parser.add_argument("--wats", type=int, default=4, help="generated WAT files (two jobs each)")
    parser.add_argument("--pages", type=int, default=150, help="pages per generated WAT file")
    parser.add_argument("--scrapers", type=int, default=2, help="scraper-d processes")
    parser.add_argument("--threshold", type=float, default=0.28, help="CLIP similarity threshold with real weights")
    parser.add_argument("--shard-size", type=int, default=10000, help="pairs per dataset shard")
    parser.add_argument("--common-crawl", help="a real crawl id (CC-MAIN-YYYY-WW) instead of the generated one")
    parser.add_argument("--limit", type=int, default=2, help="WAT files imported from a real crawl")
    parser.add_argument("--faults", action="store_true", help="fault drill: SIGKILL a scraper-d, restart tracker-d, SIGKILL and restart clip-gpu-d")
    parser.add_argument("--screenshot", help="PNG of the dashboard taken mid-run with headless Chromium; its DOM is checked too")
    parser.add_argument("--check", action="store_true", help="verify the dataset against the crawl and the tracker (scripts/check-demo.py)")
    parser.add_argument("--timeout", type=int, default=900, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    return parser.parse_args()


def main():
    args = parse_args()
    bins = Path(args.bin_dir)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        run(args, bins, work, procs)
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=30)


def run(args, bins, work, procs):
    real = args.common_crawl is not None
    database = work / "tracker.sqlite"
    dataset = work / "dataset"
    scraper_net = []
    if real:
        source = f"https://data.commoncrawl.org/crawl-data/{args.common_crawl}/wat.paths.gz"
        import_argv = [bins / "tracker-d", "import", "--database-url", f"sqlite://{database}", "--shuffle", "--limit", str(args.limit), source]
        print(f"== importing {args.limit} WAT files of {args.common_crawl} from data.commoncrawl.org")
    else:
        print(f"== starting the test world: DNS, image hosts, a crawl of {args.wats} WAT files x {args.pages} pages")
        world_file = work / "world.txt"
        testkit = Proc("testkit", [str(a) for a in [bins / "cah-testkit", "serve", "--crawl-dir", work / "crawl",
                                   "--wat-files", args.wats, "--pages-per-wat", args.pages]], work, stdout=world_file)
        procs.append(testkit.start())
        world = wait_for("the test world", lambda: read_world(world_file), 300, [testkit])
        print(f"   photos: {world['photos']}; {world['expected_candidates']} candidate images in the crawl")
        import_argv = [bins / "tracker-d", "import", "--database-url", f"sqlite://{database}", "--base-url", world["commoncrawl"], "--shuffle", world["wat_paths"]]
        scraper_net = ["--nameserver", world["dns"], "--allow-cidr", "127.0.0.1/32"]
    with open(work / "import.log", "ab") as log:
        subprocess.run([str(a) for a in import_argv], check=True, stdout=log, stderr=log)

    port = free_port()
    tracker = f"http://127.0.0.1:{port}"
    tracker_proc = Proc("tracker-d", [str(a) for a in [
        bins / "tracker-d", "serve", "--listen", f"127.0.0.1:{port}", "--database-url", f"sqlite://{database}",
        "--blob-dir", work / "staging", "--lease", "20s", "--reap-interval", "2s", "--blob-grace", "10m",
        "--register-per-minute", "10000", "--register-burst", "10000"]], work)
    procs.append(tracker_proc.start())
    wait_for("tracker-d", lambda: tracker_data(tracker), 60, [tracker_proc])
    print(f"== tracker-d at {tracker} (dashboard {tracker}/ ) with the jobs imported")

    scrapers = []
    for index in range(args.scrapers):
        mport = free_port()
        scraper = Proc(f"scraper-d-{index + 1}", [str(a) for a in [
            bins / "scraper-d", "run", "--tracker", tracker, "--nickname", f"demo-scraper-{index + 1}",
            "--work-dir", work / f"scraper-{index + 1}", "--heartbeat", "5s", "--idle-wait", "1s",
            "--shutdown-grace", "10s", "--metrics-listen", f"127.0.0.1:{mport}", *scraper_net]], work,
            env={"RUST_LOG": "info"}, metrics_url=f"http://127.0.0.1:{mport}/metrics")
        (work / f"scraper-{index + 1}").mkdir(exist_ok=True)
        scrapers.append(scraper)
        procs.append(scraper.start())

    threshold = -1.0 if args.random_weights else args.threshold
    cport = free_port()
    clip = Proc("clip-gpu-d", [str(a) for a in [
        bins / "clip-gpu-d", "run", "--tracker", tracker, "--model", args.model, "--output", dataset,
        "--devices", "cpu", "--threshold", threshold, "--shard-size", args.shard_size,
        "--poll-interval", "1s", "--flush-interval", "5s", "--nickname", "demo-clip",
        "--batch-size", "32", "--metrics-listen", f"127.0.0.1:{cport}",
        *(["--tags", "off"] if args.random_weights else [])]], work,
        env={"RUST_LOG": "info"}, metrics_url=f"http://127.0.0.1:{cport}/metrics")
    procs.append(clip.start())
    print(f"== running {args.scrapers} scraper-d and 1 clip-gpu-d (CPU)"
          + (f"; random weights: similarities are meaningless, every pair is kept" if args.random_weights else f"; threshold {threshold}"))

    started = time.time()
    drill = FaultDrill(scrapers, tracker_proc, clip, tracker) if args.faults else None
    shot_taken = False
    last_line = ""
    deadline = started + args.timeout
    while True:
        for proc in [*scrapers, clip]:
            proc.poll_metrics()
        data = tracker_data(tracker)
        if data:
            line = f"   {data['completion_str']} jobs closed, {data['total_pairs_scraped']} pairs kept, {data['total_connected_workers']} workers"
            if line != last_line:
                print(line, flush=True)
                last_line = line
            if args.screenshot and not shot_taken and data["total_connected_workers"] >= 2 and data.get("completion_float", 0) > 0:
                screenshot(tracker, Path(args.screenshot), work)
                shot_taken = True
            if data.get("completion_float", 0) >= 100.0:
                break
            if data.get("failed_jobs"):
                # Never closed, never handed out again: the run cannot finish.
                raise SystemExit(f"demo: {data['failed_jobs']} job(s) failed for good, their WAT reported unusable "
                                 f"by the scrapers; see the tracker's dashboard and {work}/*.log")
        if drill:
            drill.step(data)
        for proc in [tracker_proc, clip]:
            if not proc.alive() and not (drill and drill.expects_down(proc)):
                raise SystemExit(f"demo: {proc.name} exited unexpectedly:\n{proc.tail()}")
        if time.time() > deadline:
            raise SystemExit(f"demo: the run did not finish in {args.timeout} s; logs are in {work}")
        time.sleep(0.5)
    elapsed = time.time() - started
    if args.screenshot and not shot_taken:
        screenshot(tracker, Path(args.screenshot), work)
    if drill and not drill.done():
        raise SystemExit(f"demo: the run ended before the fault drill finished ({drill.state})")

    for proc in [*scrapers, clip]:
        proc.poll_metrics()
    # Drain: clip-gpu-d closes its open shard on SIGTERM; scrapers release nothing (all closed).
    for proc in [clip, *scrapers]:
        code = proc.stop(timeout=120)
        if proc is clip and code not in (0, None):
            raise SystemExit(f"demo: clip-gpu-d exited with {code} on SIGTERM:\n{clip.tail()}")
    summary = summarize(args, work, tracker, database, dataset, scrapers, clip, elapsed, drill)
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.check:
        check = subprocess.run([sys.executable, str(REPO / "scripts/check-demo.py"), "--work", str(work)]
                               + (["--screenshot", args.screenshot] if args.screenshot else []))
        if check.returncode != 0:
            raise SystemExit("demo: the dataset check failed")
    if args.keep:
        print(f"== everything but the workers keeps running: open {tracker}/ ; Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


class FaultDrill:
    """SIGKILL one scraper-d, restart tracker-d, SIGKILL clip-gpu-d once and restart it."""

    def __init__(self, scrapers, tracker_proc, clip, tracker):
        self.scrapers, self.tracker_proc, self.clip, self.tracker = scrapers, tracker_proc, clip, tracker
        self.state = "waiting for a scraper to hold a job"
        self.events = []
        self.since = time.time()

    def log(self, message):
        print(f"!! fault drill: {message}", flush=True)
        self.events.append({"at_s": round(time.time() - self.since, 1), "event": message})

    def expects_down(self, proc):
        return self.state in ("tracker restarting",) and proc is self.tracker_proc

    def done(self):
        return self.state == "done"

    def step(self, data):
        if self.state == "waiting for a scraper to hold a job":
            victim = self.scrapers[0]
            # Kill it a few seconds into its first job, while the job is leased to it.
            if "claimed" in victim.tail(200):
                self.claimed_at = getattr(self, "claimed_at", None) or time.time()
                if time.time() - self.claimed_at > 3:
                    victim.kill()
                    self.log(f"SIGKILL {victim.name} mid-job")
                    self.state = "waiting to restart tracker-d"
                    self.at = time.time()
        elif self.state == "waiting to restart tracker-d" and time.time() - self.at > 3:
            self.tracker_proc.stop(timeout=30)
            self.log("tracker-d stopped (SIGTERM)")
            self.tracker_proc.start()
            wait_for("tracker-d to come back", lambda: tracker_data(self.tracker), 60, [self.tracker_proc])
            self.log("tracker-d restarted on the same database and port")
            self.state = "waiting for clip-gpu-d to score"
        elif self.state == "waiting for clip-gpu-d to score":
            if self.clip.total("clip_pairs_scored_total") > 0:
                self.clip.kill()
                self.log("SIGKILL clip-gpu-d")
                self.clip.start()
                self.log("clip-gpu-d restarted")
                self.state = "done"


def screenshot(tracker, path, work):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        raise SystemExit("demo: --screenshot needs Chromium (apt-get install chromium)")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={work / 'chromium-profile'}"]
    subprocess.run([chromium, *flags, f"--screenshot={path}", "--window-size=1280,1600", f"{tracker}/"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    dom = subprocess.run([chromium, *flags, "--dump-dom", f"{tracker}/"], check=True, capture_output=True, timeout=120)
    (path.with_suffix(".html")).write_bytes(dom.stdout)
    print(f"== dashboard screenshot: {path}")


def summarize(args, work, tracker, database, dataset, scrapers, clip, elapsed, drill):
    db = sqlite3.connect(database)
    jobs = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    pairs_credited = db.execute("SELECT COALESCE(SUM(pairs), 0) FROM jobs").fetchone()[0]
    db.close()
    outcomes = {}
    for scraper in scrapers:
        for incarnation in scraper.seen:
            for name, value in incarnation.items():
                if name.startswith("scraper_images_total{"):
                    outcome = name.split('"')[1]
                    outcomes[outcome] = outcomes.get(outcome, 0) + int(value)
    candidates = sum(outcomes.values())
    stats = [json.loads(p.read_text()) for p in sorted(dataset.glob("*_stats.json"))]
    rows = sum(s["count"] for s in stats)
    scored = int(clip.total("clip_pairs_scored_total"))
    busy = clip.total("clip_backend_busy_seconds_total")
    summary = {
        "jobs": jobs, "candidates": candidates, "downloads_by_outcome": outcomes,
        "pairs_scored": scored, "pairs_kept": rows, "pairs_credited": pairs_credited,
        "shards": len(stats), "elapsed_s": round(elapsed, 1), "dataset": str(dataset),
        "random_weights": args.random_weights, "fault_drill": drill.events if drill else None,
    }
    print()
    print("== summary")
    print(f"jobs:              {jobs.get('closed', 0)} closed of {sum(jobs.values())} ({jobs})")
    print(f"candidates:        {candidates} image-text pairs fetched from the WAT files")
    for outcome, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        if count:
            print(f"  {outcome:<16} {count}")
    print(f"pairs scored:      {scored}  (CLIP on the CPU, {busy:.1f} s busy)")
    print(f"pairs kept:        {rows} in {len(stats)} shard(s); tracker credited {pairs_credited}")
    if args.random_weights:
        print("                   random-weight checkpoint: similarities are meaningless and every pair")
        print("                   was kept; run scripts/fetch-model.sh where the Internet is reachable")
    print(f"throughput:        {candidates / elapsed:.1f} candidates/s fetched, {scored / elapsed:.1f} pairs/s scored,"
          f" {rows / elapsed:.1f} pairs/s kept over {elapsed:.1f} s wall")
    if drill:
        for event in drill.events:
            print(f"fault drill:       +{event['at_s']} s {event['event']}")
    print(f"dataset:           {dataset}")
    print("                   NNNNN.tar (webdataset: key.jpg, key.txt, key.json), NNNNN.parquet,")
    print("                   img_emb/ and text_emb/ (.npy, float32, parquet row order), NNNNN_stats.json")
    # The interpreter running this script is the one with webdataset and pyarrow (the venv
    # scripts/setup-torch.sh made); pandas is not installed, so the parquet line needs none.
    python = sys.executable
    print(f"read it:           {python} -c \"import webdataset as wds; print(next(iter(wds.WebDataset('{dataset}/00000.tar', shardshuffle=False))).keys())\"")
    print(f"                   {python} -c \"import pyarrow.parquet as pq; t = pq.read_table('{dataset}/00000.parquet'); print(t.num_rows, t.schema.names); print(t.slice(0, 2).to_pylist())\"")
    print(f"logs:              {work}/*.log")
    return summary


if __name__ == "__main__":
    main()
