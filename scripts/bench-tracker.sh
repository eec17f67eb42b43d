#!/usr/bin/env bash
# Benchmarks tracker-d on SQLite and on PostgreSQL with the cah-tracker-client load generator.
#
# Usage: scripts/bench-tracker.sh [sqlite|postgres|all]      (default: all)
#
# For each database it imports BENCH_WATS generated WAT URLs (two jobs each) once, then makes
# two runs, each on a fresh copy of the imported database with its own `tracker-d serve` on
# 127.0.0.1 (port 0), running `examples/load.rs` for BENCH_DURATION:
#   "<db> max"      closed loop: every worker starts its next cycle at once (max throughput);
#   "<db> @<R>/s"   open loop at R claim→heartbeat→complete cycles per second in total
#                   (BENCH_RATE_SQLITE / BENCH_RATE_POSTGRES): latency at a given throughput.
# Each run prints its table; a summary of all runs comes last. PostgreSQL is a throwaway server
# (initdb in a temporary folder, a free port, loopback only), stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_WATS [100000]        WAT URLs to import (jobs = 2 x WATs)
#   BENCH_WORKERS [200]        concurrent simulated workers
#   BENCH_DURATION [20s]       load duration of each run
#   BENCH_RATE_SQLITE [1000]   cycles/s of the paced SQLite run (0 skips it)
#   BENCH_RATE_POSTGRES [2000] cycles/s of the paced PostgreSQL run (0 skips it)
#   BENCH_ROLE [hybrid]        hybrid | cpu | gpu | pipeline (see `load --help`)
#   BENCH_UPLOAD_BYTES [0]     bytes each CPU job uploads to the staging store
#   BENCH_KEEP [0]             1 keeps the temporary folder (databases, logs)
#   BENCH_PG_SOCKET [1]        1: tracker-d reaches PostgreSQL through its Unix socket, as on a
#                              server that runs both; 0: over TCP on 127.0.0.1
#   PG_BIN [/usr/lib/postgresql/15/bin]   PostgreSQL server binaries
set -euo pipefail

# === tracker-d's command line, in one place (its flags may still change) ===
TRACKER_BIN=target/release/tracker-d
LOAD_BIN=target/release/examples/load
# Logs as JSON, so the bound address can be read from the `listening` line.
tracker_import() { # DATABASE_URL SOURCE
  "$TRACKER_BIN" --log-format json import --database-url "$1" "$2"
}
# Runs in the background; `exec` makes its PID tracker-d's own, so the cleanup can stop it.
tracker_serve() { # DATABASE_URL BLOB_DIR
  exec "$TRACKER_BIN" --log-format json serve \
    --listen 127.0.0.1:0 \
    --database-url "$1" \
    --blob-dir "$2" \
    --register-per-minute 1000000 \
    --register-burst 100000 \
    --external-bundles ${BENCH_TRACKER_ARGS:-}
}
# (--external-bundles: with BENCH_UPLOAD_BYTES=0 the load hands off 2021 `rsync` ids.)
# === end of tracker-d's command line ===

BENCH_WATS=${BENCH_WATS:-100000}
BENCH_WORKERS=${BENCH_WORKERS:-200}
BENCH_DURATION=${BENCH_DURATION:-20s}
BENCH_RATE_SQLITE=${BENCH_RATE_SQLITE:-1000}
BENCH_RATE_POSTGRES=${BENCH_RATE_POSTGRES:-2000}
BENCH_ROLE=${BENCH_ROLE:-hybrid}
BENCH_UPLOAD_BYTES=${BENCH_UPLOAD_BYTES:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_PG_SOCKET=${BENCH_PG_SOCKET:-1}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
which_db=${1:-all}

case "$which_db" in
  sqlite | postgres | all) ;;
  *)
    echo "usage: $0 [sqlite|postgres|all]" >&2
    exit 64
    ;;
esac

cd "$(dirname "$0")/.."

work=$(mktemp -d -t bench-tracker.XXXXXX)
tracker_pid=""
tracker_url=""
pg_dir=""
pg_data=""
results="$work/results.jsonl"
: >"$results"

cleanup() {
  local status=$?
  stop_tracker
  if [[ -n "$pg_data" ]]; then
    as_postgres "$PG_BIN/pg_ctl -D '$pg_data' -m fast stop" >/dev/null 2>&1 || true
  fi
  if [[ "$BENCH_KEEP" == 1 ]]; then
    echo "kept $work $pg_dir" >&2
  else
    rm -rf "$work" ${pg_dir:+"$pg_dir"}
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a shell command as the postgres user when we are root (initdb refuses root).
as_postgres() {
  if [[ "$(id -u)" == 0 ]]; then
    su postgres -c "$1"
  else
    bash -c "$1"
  fi
}

stop_tracker() {
  if [[ -n "$tracker_pid" ]] && kill -0 "$tracker_pid" 2>/dev/null; then
    kill -TERM "$tracker_pid" 2>/dev/null || true
    wait "$tracker_pid" 2>/dev/null || true
  fi
  tracker_pid=""
}

# Starts tracker-d and sets tracker_url once it logged `listening` (not in a subshell, so
# tracker_pid stays known to the cleanup).
start_tracker() { # DATABASE_URL NAME
  local database_url=$1 name=$2
  local tracker_log="$work/$name-tracker.log"
  mkdir -p "$work/$name-blobs"
  NO_COLOR=1 tracker_serve "$database_url" "$work/$name-blobs" >"$tracker_log" 2>&1 &
  tracker_pid=$!
  local addr=""
  for _ in $(seq 1 600); do
    addr=$(grep '"listening"' "$tracker_log" 2>/dev/null | grep -oE '"addr":"[^"]+"' | head -n 1 | cut -d'"' -f4 || true)
    [[ -n "$addr" ]] && break
    if ! kill -0 "$tracker_pid" 2>/dev/null; then
      echo "tracker-d exited before listening:" >&2
      cat "$tracker_log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [[ -z "$addr" ]]; then
    echo "tracker-d did not log listening within 60 s:" >&2
    cat "$tracker_log" >&2
    exit 1
  fi
  tracker_url="http://$addr/"
}

import_jobs() { # DATABASE_URL NAME
  local database_url=$1 name=$2
  log "$name: importing $BENCH_WATS WATs"
  local started=$SECONDS
  tracker_import "$database_url" "$wats" >"$work/$name-import.log" 2>&1 || {
    cat "$work/$name-import.log" >&2
    exit 1
  }
  log "$name: imported in $((SECONDS - started)) s"
}

# A fresh copy of the imported database for one run, printed as its URL. Every run starts from
# the same queue, so the paced run does not get what the max run left over.
fresh_sqlite() { # RUN
  local copy="$work/sqlite-$1.sqlite" suffix
  for suffix in "" -wal -shm; do
    if [[ -f "$work/sqlite-template.sqlite$suffix" ]]; then
      cp "$work/sqlite-template.sqlite$suffix" "$copy$suffix"
    fi
  done
  echo "sqlite://$copy"
}

fresh_postgres() { # RUN
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres -T cah_bench_template "cah_bench_$1"
  if [[ "$BENCH_PG_SOCKET" == 1 ]]; then
    echo "postgres://postgres@localhost:$pg_port/cah_bench_$1?host=$pg_dir"
  else
    echo "postgres://postgres@127.0.0.1:$pg_port/cah_bench_$1"
  fi
}

# One run: tracker-d on DATABASE_URL, then the load generator, closed loop or at RATE cycles/s.
run_load() { # DATABASE_URL SLUG LABEL [RATE]
  local database_url=$1 slug=$2 label=$3 rate=${4:-}
  local pace=()
  if [[ -n "$rate" ]]; then pace=(--rate "$rate"); fi
  start_tracker "$database_url" "$slug"
  log "$label: tracker-d at $tracker_url; $BENCH_WORKERS $BENCH_ROLE workers for $BENCH_DURATION"
  "$LOAD_BIN" \
    --tracker-url "$tracker_url" \
    --workers "$BENCH_WORKERS" \
    --duration "$BENCH_DURATION" \
    --role "$BENCH_ROLE" \
    --upload-bytes "$BENCH_UPLOAD_BYTES" \
    "${pace[@]}" \
    --label "$label" | tee "$work/$slug-load.txt"
  grep '^{' "$work/$slug-load.txt" | tail -n 1 >>"$results"
  stop_tracker
}

bench() { # NAME TEMPLATE_URL RATE
  local name=$1 template_url=$2 rate=$3 database_url
  import_jobs "$template_url" "$name"
  database_url=$("fresh_$name" max)
  run_load "$database_url" "$name-max" "$name max"
  if [[ "$rate" != 0 ]]; then
    database_url=$("fresh_$name" paced)
    run_load "$database_url" "$name-paced" "$name @$rate/s" "$rate"
  fi
}

log "building release binaries"
cargo build --release -p tracker-d --bin tracker-d
cargo build --release -p cah-tracker-client --example load

wats="$work/wats.txt"
awk -v n="$BENCH_WATS" 'BEGIN {
  for (i = 0; i < n; i++)
    printf "https://data.commoncrawl.org/crawl-data/CC-MAIN-2021-04/segments/1610703%06d.%02d/wat/CC-MAIN-20210115000000-20210115030000-%05d.warc.wat.gz\n", int(i / 100), i % 100, i
}' >"$wats"

if [[ "$which_db" == sqlite || "$which_db" == all ]]; then
  bench sqlite "sqlite://$work/sqlite-template.sqlite" "$BENCH_RATE_SQLITE"
fi

if [[ "$which_db" == postgres || "$which_db" == all ]]; then
  # A folder of its own right under the temp dir: the postgres user cannot enter $work (0700).
  pg_dir=$(mktemp -d -t bench-tracker-pg.XXXXXX)
  if [[ "$(id -u)" == 0 ]]; then chown postgres "$pg_dir"; fi
  pg_port=$(free_port)
  pg_data="$pg_dir/data"
  log "postgres: starting a throwaway server on 127.0.0.1:$pg_port and in $pg_dir (socket)"
  as_postgres "$PG_BIN/initdb -D '$pg_data' -A trust -U postgres" >"$work/pg-initdb.log"
  as_postgres "$PG_BIN/pg_ctl -D '$pg_data' -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1' -l '$pg_dir/log' -w start" >/dev/null
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres cah_bench_template
  bench postgres "postgres://postgres@127.0.0.1:$pg_port/cah_bench_template" "$BENCH_RATE_POSTGRES"
fi

log "summary"
python3 - "$results" <<'EOF'
import json
import sys

print(
    f"{'run':<18} {'cycles':>8} {'cycles/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}"
    f" {'lag p99':>8} {'late':>7}  errors"
)
for line in open(sys.argv[1]):
    run = json.loads(line)
    overall = run["overall"]
    errors = sum(run["errors"].values())
    # Start lag exists only for paced runs: how long after its due time a cycle started.
    if run.get("rate"):
        lag = f"{run['start_lag']['p99_ms']:>8.2f} {run['late_starts']:>7}"
    else:
        lag = f"{'-':>8} {'-':>7}"
    print(
        f"{run['label']:<18} {run['cycles']:>8} {run['cycles_per_s']:>10.1f} "
        f"{overall['p50_ms']:>8.2f} {overall['p99_ms']:>8.2f} {overall['max_ms']:>9.2f} "
        f"{lag}  {errors}"
    )
EOF
