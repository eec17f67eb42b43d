#!/usr/bin/env bash
# Shared by the benchmarks that need release binaries and cah-testkit's test web (sourced, not
# run): bench-fetch.sh and bench-stall.sh.

# The workspace's target folder (CARGO_TARGET_DIR honoured).
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# Prints the path of binary BIN of PACKAGE: OVERRIDE when it is set, else a release build made now.
release_bin() { # package, bin, override
  if [ -n "$3" ]; then
    echo "$3"
    return
  fi
  cargo build --quiet --release --locked -p "$1" --bin "$2" || return 1
  echo "$target_dir/release/$2"
}

# Starts `TESTKIT serve` on core 1, writing OUT/world.txt and OUT/world.log, stopped when the
# script exits; sets `web` (host:port) and `dns` (the test nameserver) from what it prints.
start_test_web() { # testkit binary, out folder
  taskset -c 1 "$1" serve >"$2/world.txt" 2>"$2/world.log" &
  world=$!
  trap 'kill "$world" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    grep -q '^web=' "$2/world.txt" 2>/dev/null && break
    sleep 0.1
  done
  web=$(grep '^web=' "$2/world.txt" | cut -d= -f2)
  dns=$(grep '^dns=' "$2/world.txt" | cut -d= -f2)
  if [ -z "$web" ] || [ -z "$dns" ]; then
    echo "$(basename "$0"): the test web did not start" >&2
    cat "$2/world.log" >&2
    exit 1
  fi
}
