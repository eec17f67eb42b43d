#!/usr/bin/env bash
# The embedded-default demo, on one machine and without the Internet:
#   1. builds the release binaries,
#   2. starts cah-testkit's world (authoritative DNS, image hosts with real photos, a generated
#      Common Crawl of WAT files served over HTTP with its wat.paths.gz),
#   3. starts tracker-d on SQLite and imports the crawl's wat.paths.gz over HTTP,
#   4. runs a swarm against it: CPU workers that upload bundles through the signed staging
#      URLs and GPU workers that close the jobs (simulated by cah-tracker-client's load
#      generator until scraper-d and clip-gpu-d land),
#   5. prints the summary and where to look.
# Usage: scripts/demo.sh [--wats N] [--workers N] [--keep]   (--keep leaves everything running until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."

wats=8
workers=16
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wats) wats=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

if ! command -v cargo >/dev/null; then
  echo "demo: cargo is not installed; install Rust with rustup first" >&2
  exit 1
fi
scripts/prepare-photos.sh >/dev/null || echo "demo: real photos unavailable, the test web will serve generated pictures" >&2

echo "== building release binaries (first build takes a few minutes)"
cargo build --release --locked -p tracker-d -p cah-testkit -p cah-tracker-client --example load

work=$(mktemp -d -t cah-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

wait_for_line() { # FILE PATTERN
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "demo: timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  exit 1
}

echo "== starting the test world (DNS, image hosts, Common Crawl with $wats WAT files)"
target/release/cah-testkit serve --crawl-dir "$work/crawl" --wat-files "$wats" --pages-per-wat 200 \
  --action-delay-ms 200 >"$work/testkit.out" 2>"$work/testkit.log" &
pids+=($!)
wait_for_line "$work/testkit.out" '^photos='
world() { grep "^$1=" "$work/testkit.out" | head -n 1 | cut -d= -f2-; }
commoncrawl=$(world commoncrawl)
wat_paths=$(world wat_paths)

echo "== importing $wat_paths into tracker-d (SQLite)"
database="sqlite://$work/tracker.sqlite"
target/release/tracker-d import --database-url "$database" --base-url "$commoncrawl" --shuffle "$wat_paths"

target/release/tracker-d --log-format json serve --listen 127.0.0.1:0 --database-url "$database" \
  --blob-dir "$work/staging" --register-per-minute 100000 --register-burst 100000 \
  2>"$work/tracker.log" &
pids+=($!)
wait_for_line "$work/tracker.log" '"listening"'
addr=$(grep -m1 '"listening"' "$work/tracker.log" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["fields"]["addr"])')
tracker="http://$addr"
echo "== tracker-d at $tracker (dashboard: $tracker/ )"

started=$(date +%s.%N)
echo "== running $workers workers (half CPU uploading 256 KiB bundles, half GPU) until every job is closed"
target/release/examples/load --tracker-url "$tracker" --workers "$workers" --role pipeline \
  --upload-bytes 262144 --duration 10m --nickname demo --label demo | tee "$work/load.out"
elapsed=$(python3 -c "import time; print(round(time.time() - $started, 1))")

echo
echo "== summary"
curl -fsS "$tracker/data" | python3 -c "
import json, sys
d = json.load(sys.stdin)
print('jobs closed:     %s (%.1f %%)' % (d['completion_str'], d['completion_float']))
print('workers:         %s' % d['total_connected_workers'])
print('pairs credited:  %s' % d['total_pairs_scraped'])
print('eta:             %s' % d['eta'])"
curl -fsS "$tracker/metrics" | grep -E '^tracker_(claims|handoffs|closes|blobs_stored|blob_bytes|heartbeats)_total' | sed 's/^/metric:          /'
echo "wall time:       ${elapsed} s"
if [ "$keep" = 1 ]; then
  echo "work folder:     $work (tracker.sqlite, staging/, logs)"
else
  echo "work folder:     removed on exit (run with --keep to keep it and the dashboard running)"
fi
if [ "$keep" = 1 ]; then
  echo "== everything keeps running: open $tracker/ in a browser; Ctrl-C stops it"
  wait
fi
