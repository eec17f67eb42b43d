#!/usr/bin/env bash
# A half with one slow host: BENCH_SLOW_FAST (default 2000) pictures on as many host names of
# the test DNS, and BENCH_SLOW_URLS (default 100) on one host that answers each after
# BENCH_SLOW_MS (default 500) ms, shuffled together. With the default 2 requests per host that
# host alone needs BENCH_SLOW_URLS x BENCH_SLOW_MS / 2 (25 s), the rest about 2.5 s.
#
# `scraper-d fetch` runs with its defaults, once with the tail cut (`--max-tail 10`, the
# default) and once without (`--max-tail 0`); BASE_BIN adds a run of another scraper-d binary
# (an older build, to compare). Prints each run's seconds, stored and abandoned images, and
# when the tail began (from the log: the other hosts' pictures were done by then).
# SCRAPER_BIN and TESTKIT_BIN reuse built binaries (else release builds). Files go to
# target/bench-slow-host/.
set -euo pipefail
cd "$(dirname "$0")/.."

n_fast=${BENCH_SLOW_FAST:-2000}
n_slow=${BENCH_SLOW_URLS:-100}
slow_ms=${BENCH_SLOW_MS:-500}
out=target/bench-slow-host
mkdir -p "$out"

# shellcheck source=scripts/test-web.sh
source scripts/test-web.sh
scraper=$(release_bin scraper-d scraper-d "${SCRAPER_BIN:-}")
testkit=$(release_bin cah-testkit cah-testkit "${TESTKIT_BIN:-}")

start_test_web "$testkit" "$out"
port=${web##*:}

python3 - "$port" "$n_fast" "$n_slow" "$slow_ms" >"$out/urls.txt" <<'EOF'
import random, sys
port, n_fast, n_slow, slow_ms = (int(arg) for arg in sys.argv[1:])
lines = [f"http://img-{i:04d}.photos.test:{port}/ok/photo-{i:06d}.jpg" for i in range(n_fast)]
lines += [f"http://img-slow.photos.test:{port}/slow/{slow_ms}/ok/slow-{i:06d}.jpg" for i in range(n_slow)]
random.Random(7).shuffle(lines)
print("\n".join(lines))
EOF

run() { # name, binary, extra flags...
  local name=$1 binary=$2
  shift 2
  rm -f "$out/$name.tar"
  "$binary" fetch --urls "$out/urls.txt" --output "$out/$name.tar" --nameserver "$dns" \
    --allow-cidr 127.0.0.1/32 --summary-json "$@" >"$out/$name.out" 2>"$out/$name.err"
  python3 - "$out/$name.err" "$name" <<'EOF'
import json, re, sys
lines = open(sys.argv[1]).read().strip().splitlines()
summary = json.loads(lines[-1])
outcomes = summary["outcomes"]
tail = next((re.search(r"tail_began_s=([0-9.]+)", line) for line in lines if "abandoned the last images" in line), None)
began = f", tail began at {float(tail.group(1)):.1f} s" if tail else ""
print(f"{sys.argv[2] + ':':<16}{summary['seconds']:6.1f} s, stored {summary['stored']}, abandoned {outcomes.get('abandoned', 0)}{began}")
EOF
}

echo "urls: $n_fast on as many hosts, $n_slow on one host answering after $slow_ms ms"
run max-tail-10 "$scraper" --max-tail 10
run max-tail-0 "$scraper" --max-tail 0
if [ -n "${BASE_BIN:-}" ]; then
  run base "$BASE_BIN"
fi
