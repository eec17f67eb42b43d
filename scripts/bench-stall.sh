#!/usr/bin/env bash
# Peak memory of `scraper-d fetch` against a hostile web: BENCH_STALL_URLS (default 256) bodies
# that stall 1,000 bytes short of 9.5 MB (cah-testkit's `/stall/`, or `/stall-unsized/` with
# BENCH_STALL_ROUTE=stall-unsized), spread over BENCH_STALL_HOSTS (default 64) host names of the
# test DNS, plus BENCH_STALL_OK (default 0) honest `/ok/` pictures on other hosts.
#
# scraper-d runs with its defaults (64 downloads in flight, 2 per host, 10 s per image, 16 large
# bodies) pinned to core 0 as on a 1-vCPU node, under `/usr/bin/time -v`; the test web runs on
# core 1. SCRAPER_BIN and TESTKIT_BIN reuse built binaries (else release builds); extra
# arguments go to `scraper-d fetch` (e.g. --max-large-bodies 4). Files go to target/bench-stall/.
set -euo pipefail
cd "$(dirname "$0")/.."

n_urls=${BENCH_STALL_URLS:-256}
n_hosts=${BENCH_STALL_HOSTS:-64}
n_ok=${BENCH_STALL_OK:-0}
route=${BENCH_STALL_ROUTE:-stall}
out=target/bench-stall
mkdir -p "$out"

# shellcheck source=scripts/test-web.sh
source scripts/test-web.sh
scraper=$(release_bin scraper-d scraper-d "${SCRAPER_BIN:-}")
testkit=$(release_bin cah-testkit cah-testkit "${TESTKIT_BIN:-}")

start_test_web "$testkit" "$out"
port=${web##*:}

python3 - "$port" "$n_urls" "$n_hosts" "$n_ok" "$route" >"$out/urls.txt" <<'EOF'
import sys
port, n, hosts, n_ok, route = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lines = [f"http://stalled-{i % hosts:04d}.photos.test:{port}/{route}/body-{i:06d}.jpg" for i in range(n)]
exts = ["jpg"] * 7 + ["png", "webp"]
lines += [f"http://img-{i:04d}.photos.test:{port}/ok/photo-{i:06d}.{exts[i % len(exts)]}" for i in range(n_ok)]
print("\n".join(lines))
EOF

rm -f "$out/stall.tar"
/usr/bin/time -v -o "$out/scraper-d.time" taskset -c 0 "$scraper" fetch --urls "$out/urls.txt" \
  --output "$out/stall.tar" --nameserver "$dns" --allow-cidr 127.0.0.1/32 --summary-json "$@" \
  >"$out/scraper-d.out" 2>"$out/scraper-d.err"
python3 - "$out" <<'EOF'
import json, re, sys
out = sys.argv[1]
summary = json.loads(open(f"{out}/scraper-d.err").read().strip().splitlines()[-1])
times = open(f"{out}/scraper-d.time").read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", times).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", times).group(1)
print(f"urls: {summary['urls']}, stored: {summary['stored']}, outcomes: {summary['outcomes']}")
print(f"wall: {wall}, peak RSS: {rss_kb / 1024:.0f} MB ({rss_kb} KiB)")
EOF
