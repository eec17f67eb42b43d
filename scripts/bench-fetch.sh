#!/usr/bin/env bash
# Image download throughput: `scraper-d fetch` against img2dataset (PyPI) on the same URL list,
# served by cah-testkit's web on loopback with the real photos (scripts/prepare-photos.sh).
#
# Each client runs alone, pinned to one core with taskset (the test web gets the other core), with
# the same work: download, decode, resize so the shorter side is 256 (aspect kept), JPEG quality 95.
# Knobs: BENCH_URLS (default 2000), BENCH_THREADS (in-flight downloads of both, default 64),
# SCRAPER_BIN (a scraper-d binary to use instead of a fresh release build, e.g. the one from
# scripts/install-scraper.sh build), BENCH_PEER=none (scraper-d alone: no img2dataset, so
# nothing is installed from PyPI), BENCH_RUNS (runs of each, alternating, default 1: with more,
# the medians and their ratio are printed too), BENCH_MIX (which pictures, scripts/bench_mix.py:
# `corpus`, the default, is heavier than the web at 183 KB a URL; `laion` weights the pictures
# to laion2B-en's shorter sides, 96 KB a URL as on the wire), BENCH_PEER_ARGS (more img2dataset
# flags, e.g. `--resize_only_if_bigger True`: img2dataset upscales pictures whose shorter side
# is below 256 by default, where scraper-d keeps their size; with the flag it stores their bytes
# as they came, without encoding them, where scraper-d encodes them).
# Prints images/s per core for each and the ratio; files go to target/bench-fetch/.
set -euo pipefail
cd "$(dirname "$0")/.."

n_urls=${BENCH_URLS:-2000}
threads=${BENCH_THREADS:-64}
peer=${BENCH_PEER:-img2dataset}
runs=${BENCH_RUNS:-1}
mix=${BENCH_MIX:-corpus}
read -r -a peer_args <<<"${BENCH_PEER_ARGS:-}"
case "$mix" in
  corpus | laion) ;;
  *) echo "bench-fetch: BENCH_MIX must be corpus or laion (got '$mix')" >&2; exit 2 ;;
esac
case "$runs" in
  '' | *[!0-9]* | 0*) echo "bench-fetch: BENCH_RUNS must be a whole number from 1 (got '$runs')" >&2; exit 2 ;;
esac
out=target/bench-fetch
py=target/bench-py
mkdir -p "$out"

bash scripts/prepare-photos.sh >&2
if [ "$peer" = img2dataset ] && [ ! -x "$py/bin/img2dataset" ]; then
  echo "bench-fetch: installing img2dataset from PyPI into $py" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$py" 'img2dataset==1.47.0'
fi
# img2dataset pulls the `dataclasses` backport, which shadows the standard module under --target.
rm -rf "$py"/dataclasses.py "$py"/dataclasses-*.dist-info
# shellcheck source=scripts/test-web.sh
source scripts/test-web.sh
scraper=$(release_bin scraper-d scraper-d "${SCRAPER_BIN:-}")
testkit=$(release_bin cah-testkit cah-testkit "")

# The test web on core 1.
start_test_web "$testkit" "$out"
grep '^photos=' "$out/world.txt" >&2 || true

# Distinct URLs of real photos by IP, so that img2dataset's system resolver needs no test DNS:
# BENCH_MIX picks which (scripts/bench_mix.py; it prints the mix's make-up).
python3 scripts/bench_mix.py target/testkit-photos/manifest.json "$mix" "$web" "$n_urls" >"$out/urls.txt"

run_timed() { # name, command...
  local name=$1
  shift
  /usr/bin/time -f '%e %M' -o "$out/$name.time" taskset -c 0 "$@" >"$out/$name.out" 2>"$out/$name.err"
}

# One run of each client, scraper-d first; run I's files are NAME.I.{time,out,err,ok}.
run_scraper() { # run number
  rm -f "$out/scraper.tar"
  run_timed "scraper-d.$1" "$scraper" fetch --urls "$out/urls.txt" --output "$out/scraper.tar" \
    --allow-cidr 127.0.0.1/32 --concurrency "$threads" --per-host "$threads" --breaker-threshold 0 \
    --resize 256 --jpeg-quality 95 --summary-json
  tail -1 "$out/scraper-d.$1.err" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored"])' \
    >"$out/scraper-d.$1.ok"
}
run_img2dataset() { # run number
  rm -rf "$out/img2dataset"
  PYTHONPATH="$PWD/$py" run_timed "img2dataset.$1" python3 "$py/bin/img2dataset" --url_list "$out/urls.txt" \
    --output_folder "$out/img2dataset" --input_format txt --output_format files \
    --processes_count 1 --thread_count "$threads" --image_size 256 --resize_mode keep_ratio \
    --encode_format jpg --encode_quality 95 --timeout 10 --retries 0 \
    --enable_wandb False --distributor multiprocessing "${peer_args[@]}"
  python3 -c 'import json,glob,sys; print(sum(json.load(open(f))["successes"] for f in glob.glob(sys.argv[1] + "/img2dataset/*_stats.json")))' \
    "$out" >"$out/img2dataset.$1.ok"
}

for run in $(seq 1 "$runs"); do
  run_scraper "$run"
  if [ "$peer" = img2dataset ]; then
    run_img2dataset "$run"
  fi
done

# Each run's rates, then (for several runs) the medians and the ratio of the medians: the
# VM's speed drifts between minutes, and the two runs of a pair share a minute.
python3 - "$out" "$n_urls" "$runs" "$peer" "$mix" "${BENCH_PEER_ARGS:-}" <<'EOF'
import statistics, sys
out, n, runs, peer, mix, peer_args = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
clients = ["scraper-d"] + (["img2dataset"] if peer == "img2dataset" else [])
rates = {name: [] for name in clients}
print(f"urls: {n} (one core each), {runs} run(s), mix {mix}" + (f", img2dataset {peer_args}" if peer_args and peer == "img2dataset" else ""))
for run in range(1, runs + 1):
    prefix = f"run {run} " if runs > 1 else ""
    for name in clients:
        ok = int(open(f"{out}/{name}.{run}.ok").read())
        seconds, kb = open(f"{out}/{name}.{run}.time").read().split()
        rate = ok / float(seconds)
        rates[name].append(rate)
        print(f"{prefix}{name + ':':<13}{ok} images in {float(seconds):.2f} s = {rate:.1f} images/s per core, peak RSS {int(kb) / 1024:.0f} MB")
    if len(clients) == 2:
        s, i = rates["scraper-d"][-1], rates["img2dataset"][-1]
        print(f"{prefix}ratio: {s / i:.2f}x" if i > 0 else f"{prefix}ratio: n/a (img2dataset stored nothing)")
if runs > 1:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, median in medians.items():
        print(f"median {name}: {median:.1f} images/s per core ({min(rates[name]):.1f}-{max(rates[name]):.1f})")
    if len(clients) == 2 and medians["img2dataset"] > 0:
        print(f"ratio of the medians: {medians['scraper-d'] / medians['img2dataset']:.2f}x")
EOF
