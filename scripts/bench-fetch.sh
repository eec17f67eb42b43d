#!/usr/bin/env bash
# Image download throughput: `scraper-d fetch` against img2dataset (PyPI) on the same URL list,
# served by cah-testkit's web on loopback with the real photos (scripts/prepare-photos.sh).
#
# Each client runs alone, pinned to one core with taskset (the test web gets the other core), with
# the same work: download, decode, resize so the shorter side is 256 (aspect kept), JPEG quality 95.
# Knobs: BENCH_URLS (default 2000), BENCH_THREADS (in-flight downloads of both, default 64),
# SCRAPER_BIN (a scraper-d binary to use instead of a fresh release build, e.g. the one from
# scripts/install-scraper.sh build), BENCH_PEER=none (scraper-d alone: no img2dataset, so
# nothing is installed from PyPI).
# Prints images/s per core for each and the ratio; files go to target/bench-fetch/.
set -euo pipefail
cd "$(dirname "$0")/.."

n_urls=${BENCH_URLS:-2000}
threads=${BENCH_THREADS:-64}
peer=${BENCH_PEER:-img2dataset}
out=target/bench-fetch
py=target/bench-py
mkdir -p "$out"

if [ ! -f target/testkit-photos/manifest.json ]; then
  bash scripts/prepare-photos.sh
fi
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

# Distinct URLs of real photos (JPEG, PNG, WebP mixed as the corpus is), by IP so that
# img2dataset's system resolver needs no test DNS.
python3 - "$web" "$n_urls" >"$out/urls.txt" <<'EOF'
import sys
web, n = sys.argv[1], int(sys.argv[2])
exts = ["jpg"] * 7 + ["png", "webp"]
for i in range(n):
    print(f"http://{web}/ok/photo-{i:06d}.{exts[i % len(exts)]}")
EOF

run_timed() { # name, command...
  local name=$1
  shift
  /usr/bin/time -f '%e %M' -o "$out/$name.time" taskset -c 0 "$@" >"$out/$name.out" 2>"$out/$name.err"
}

rm -rf "$out/scraper.tar" "$out/img2dataset"
run_timed scraper-d "$scraper" fetch --urls "$out/urls.txt" --output "$out/scraper.tar" \
  --allow-cidr 127.0.0.1/32 --concurrency "$threads" --per-host "$threads" --breaker-threshold 0 \
  --resize 256 --jpeg-quality 95 --summary-json
scraper_ok=$(tail -1 "$out/scraper-d.err" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored"])')

if [ "$peer" != img2dataset ]; then
  read -r scraper_s scraper_kb <"$out/scraper-d.time"
  python3 -c 'import sys; n, ok, s, kb = sys.argv[1:]; print(f"urls: {n} (one core)\nscraper-d:   {ok} images in {float(s):.2f} s = {int(ok) / float(s):.1f} images/s per core, peak RSS {int(kb)/1024:.0f} MB")' \
    "$n_urls" "$scraper_ok" "$scraper_s" "$scraper_kb"
  exit 0
fi

PYTHONPATH="$PWD/$py" run_timed img2dataset python3 "$py/bin/img2dataset" --url_list "$out/urls.txt" \
  --output_folder "$out/img2dataset" --input_format txt --output_format files \
  --processes_count 1 --thread_count "$threads" --image_size 256 --resize_mode keep_ratio \
  --encode_format jpg --encode_quality 95 --timeout 10 --retries 0 \
  --enable_wandb False --distributor multiprocessing
img_ok=$(python3 -c 'import json,glob; print(sum(json.load(open(f))["successes"] for f in glob.glob("'"$out"'/img2dataset/*_stats.json")))')

read -r scraper_s scraper_kb <"$out/scraper-d.time"
read -r img_s img_kb <"$out/img2dataset.time"
python3 - "$n_urls" "$scraper_ok" "$scraper_s" "$scraper_kb" "$img_ok" "$img_s" "$img_kb" <<'EOF'
import sys
n, s_ok, s_s, s_kb, i_ok, i_s, i_kb = sys.argv[1:]
n, s_ok, i_ok = int(n), int(s_ok), int(i_ok)
s_s, i_s = float(s_s), float(i_s)
s_rate, i_rate = s_ok / s_s, i_ok / i_s
print(f"urls: {n} (one core each)")
print(f"scraper-d:   {s_ok} images in {s_s:.2f} s = {s_rate:.1f} images/s per core, peak RSS {int(s_kb)/1024:.0f} MB")
print(f"img2dataset: {i_ok} images in {i_s:.2f} s = {i_rate:.1f} images/s per core, peak RSS {int(i_kb)/1024:.0f} MB")
print(f"ratio: {s_rate / i_rate:.2f}x" if i_rate > 0 else "ratio: n/a (img2dataset stored nothing)")
EOF
