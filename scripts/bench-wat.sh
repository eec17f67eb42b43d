#!/usr/bin/env bash
# Benchmarks scraper-d's WAT extraction on one core against cc2dataset (its own `process_wat` from
# PyPI, scripts/cc2dataset_own.py, and a leaner re-implementation of its method with simdjson or
# orjson, scripts/cc2dataset_wat.py) and against plain decompression (gzip -dc), on the same
# generated WAT file. Prints MB/s (compressed MB, 10^6 bytes), records/s, peak RSS and the ratios.
# Every command runs BENCH_RUNS times (default 3), the fastest run counts.
# scraper-d runs twice: the plain release build and the profile-guided one of scripts/pgo-build.sh
# (trained on other generated files; adds about 15 minutes of building on 2 cores the first time;
# BENCH_WAT_PGO=0 leaves it out; BENCH_WAT_PGO=portable takes the nodes' portable one instead,
# scripts/pgo-build.sh --portable). Both must write the same candidates, byte for byte.
#
#   BENCH_WAT_MB=100 scripts/bench-wat.sh     # default ~100 MB file; 400 for the full run
#
# Needs: cargo, python3 with pip (PyPI), /usr/bin/time (Debian package `time`, installed with
# apt-get when missing and running as root). Everything it downloads or writes stays in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

MB="${BENCH_WAT_MB:-100}"
RUNS="${BENCH_RUNS:-3}"
OUT="target/bench-wat"
PY="target/wat-peer-py"
mkdir -p "$OUT"

if [[ ! -x /usr/bin/time ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y -qq time >/dev/null
    else
        echo "bench-wat: /usr/bin/time is missing (apt-get install time)" >&2
        exit 1
    fi
fi

echo "== building release binaries" >&2
cargo build --release --quiet -p scraper-d -p cah-testkit
cargo build --release --quiet -p scraper-d --example inflate_wat
PGO_BIN=""
case "${BENCH_WAT_PGO:-1}" in
    0) ;;
    portable)
        echo "== building the portable profile-guided binary (scripts/pgo-build.sh --portable)" >&2
        PGO_BIN="$(scripts/pgo-build.sh --portable | sed -n 's/^binary: //p')"
        ;;
    *)
        echo "== building the profile-guided release binary (scripts/pgo-build.sh)" >&2
        PGO_BIN="$(scripts/pgo-build.sh | sed -n 's/^binary: //p')"
        ;;
esac

echo "== generating (or reusing) a ${MB} MB WAT file" >&2
WAT="$(target/release/cah-testkit wat --target-mb "$MB" --out-dir "$OUT/crawl-${MB}mb" | sed -n 's/^path=//p')"
BYTES="$(stat -c %s "$WAT")"

if [[ ! -f "$PY/.installed-2" ]]; then
    echo "== installing the Python peer's packages into $PY" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$PY" \
        fastwarc==0.15.2 pysimdjson==7.0.2 orjson==3.13.0 fsspec==2026.9.0 loguru==0.7.3
    # cc2dataset itself without its Spark, S3 and pandas dependencies (see cc2dataset_own.py).
    python3 -m pip install --quiet --disable-pip-version-check --target "$PY" --no-deps \
        cc2dataset==1.5.0
    touch "$PY/.installed-2"
fi

CPU="taskset -c 0"
command -v taskset >/dev/null || CPU=""

# Runs a command RUNS times under /usr/bin/time; sets SECONDS_TAKEN and RSS_KB of the fastest run
# (its stdout is what the command printed last).
measure() {
    local log="$OUT/time.txt"
    local start end seconds run
    SECONDS_TAKEN=""
    for run in $(seq "$RUNS"); do
        start="$(date +%s.%N)"
        /usr/bin/time -v -o "$log" "$@"
        end="$(date +%s.%N)"
        seconds="$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$start" "$end")"
        if [[ -z "$SECONDS_TAKEN" ]] || python3 -c 'import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))' "$seconds" "$SECONDS_TAKEN"; then
            SECONDS_TAKEN="$seconds"
            RSS_KB="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")"
        fi
    done
}

echo "== 1. scraper-d extract (release, one thread)" >&2
measure $CPU target/release/scraper-d extract --summary-json "$WAT" >/dev/null 2>"$OUT/ours.stderr"
OURS_S="$SECONDS_TAKEN"; OURS_RSS="$RSS_KB"
SUMMARY="$(tail -n 1 "$OUT/ours.stderr")"
RECORDS="$(echo "$SUMMARY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')"
OURS_CANDIDATES="$(echo "$SUMMARY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["candidates"])')"

PGO_S=0; PGO_RSS=0
if [[ -n "$PGO_BIN" ]]; then
    echo "== 1b. scraper-d extract, profile-guided build (one thread)" >&2
    measure $CPU "$PGO_BIN" extract "$WAT" >/dev/null 2>/dev/null
    PGO_S="$SECONDS_TAKEN"; PGO_RSS="$RSS_KB"
    if ! cmp -s <(target/release/scraper-d extract "$WAT" 2>/dev/null) <("$PGO_BIN" extract "$WAT" 2>/dev/null); then
        echo "bench-wat: the PGO build wrote other candidates than the release build" >&2
        exit 1
    fi
fi

echo "== 2. cc2dataset 1.5.0's own process_wat (fastwarc + simdjson, one thread)" >&2
measure env PYTHONPATH="$PY" $CPU python3 scripts/cc2dataset_own.py "$WAT" >"$OUT/own.json" 2>"$OUT/own.stderr"
OWN_S="$SECONDS_TAKEN"; OWN_RSS="$RSS_KB"
OWN_CANDIDATES="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["candidates"])' "$OUT/own.json")"

echo "== 2a. cc2dataset's method re-implemented lean (fastwarc + simdjson, one thread)" >&2
measure env PYTHONPATH="$PY" $CPU python3 scripts/cc2dataset_wat.py "$WAT" >"$OUT/peer.json"
PEER_S="$SECONDS_TAKEN"; PEER_RSS="$RSS_KB"
PEER_CANDIDATES="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["candidates"])' "$OUT/peer.json")"

echo "== 2b. the lean re-implementation with orjson" >&2
measure env PYTHONPATH="$PY" $CPU python3 scripts/cc2dataset_wat.py --json orjson "$WAT" >"$OUT/peer-orjson.json"
ORJSON_S="$SECONDS_TAKEN"; ORJSON_RSS="$RSS_KB"

echo "== 3. plain decompression (gzip -dc > /dev/null)" >&2
measure $CPU sh -c "gzip -dc '$WAT' >/dev/null"
ZCAT_S="$SECONDS_TAKEN"; ZCAT_RSS="$RSS_KB"

echo "== 3b. plain decompression (flate2 + zlib-rs MultiGzDecoder, scraper-d's fallback for long members)" >&2
measure $CPU target/release/examples/inflate_wat "$WAT" 2>/dev/null
INFLATE_S="$SECONDS_TAKEN"; INFLATE_RSS="$RSS_KB"

echo "== 3c. scraper-d's member reader alone (libdeflate, WARC framing, no JSON)" >&2
measure $CPU target/release/examples/inflate_wat --members "$WAT" 2>/dev/null
MEMBERS_S="$SECONDS_TAKEN"; MEMBERS_RSS="$RSS_KB"

python3 - "$BYTES" "$RECORDS" "$OURS_S" "$OURS_RSS" "$PEER_S" "$PEER_RSS" "$ZCAT_S" "$ZCAT_RSS" \
    "$OURS_CANDIDATES" "$PEER_CANDIDATES" "$WAT" "$ORJSON_S" "$ORJSON_RSS" "$INFLATE_S" "$INFLATE_RSS" \
    "$MEMBERS_S" "$MEMBERS_RSS" "$OWN_S" "$OWN_RSS" "$OWN_CANDIDATES" "$RUNS" "$PGO_S" "$PGO_RSS" <<'PYEOF'
import sys
(bytes_, records, ours_s, ours_rss, peer_s, peer_rss, zcat_s, zcat_rss,
 ours_c, peer_c, wat, orjson_s, orjson_rss, inflate_s, inflate_rss,
 members_s, members_rss, own_s, own_rss, own_c, runs, pgo_s, pgo_rss) = sys.argv[1:]
bytes_, records = int(bytes_), int(records)
rows = [("scraper-d", float(ours_s), int(ours_rss)),
        ("cc2dataset 1.5.0 process_wat", float(own_s), int(own_rss)),
        ("cc2dataset method, lean, simdjson", float(peer_s), int(peer_rss)),
        ("cc2dataset method, lean, orjson", float(orjson_s), int(orjson_rss)),
        ("gzip -dc", float(zcat_s), int(zcat_rss)),
        ("flate2/zlib-rs inflate loop", float(inflate_s), int(inflate_rss)),
        ("scraper-d member reader alone", float(members_s), int(members_rss))]
ours, own, peer, orjson, zcat, inflate, members = (r[1] for r in rows)
pgo = float(pgo_s)
if pgo > 0:
    rows.insert(1, ("scraper-d, profile-guided build", pgo, int(pgo_rss)))
print(f"file: {wat} ({bytes_ / 1e6:.1f} MB, {records} records); fastest of {runs} runs each")
print(f"{'method':<34} {'seconds':>8} {'MB/s':>8} {'records/s':>10} {'peak RSS MB':>12}")
for name, seconds, rss in rows:
    print(f"{name:<34} {seconds:8.2f} {bytes_ / 1e6 / seconds:8.1f} {records / seconds:10.0f} {rss / 1024:12.1f}")
print(f"ours/peer speed: {own / ours:.2f}x (cc2dataset's own code), {peer / ours:.2f}x (lean, simdjson), "
      f"{orjson / ours:.2f}x (lean, orjson)")
if pgo > 0:
    print(f"profile-guided build/peer speed: {own / pgo:.2f}x (cc2dataset's own code), "
          f"{peer / pgo:.2f}x (lean, simdjson), {orjson / pgo:.2f}x (lean, orjson); "
          f"{ours / pgo:.2f}x the plain release build")
print(f"ours/decompression speed: {zcat / ours:.2f} (gzip -dc), {inflate / ours:.2f} (zlib-rs loop), "
      f"{members / ours:.2f} (our own member reader)")
print(f"candidates: scraper-d {ours_c} (all filters), cc2dataset {own_c}, lean peer {peer_c} (cc2dataset's filters)")
PYEOF
