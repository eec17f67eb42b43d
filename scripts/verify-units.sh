#!/usr/bin/env bash
# Checks every unit in systemd/ with `systemd-analyze verify`, pointing ExecStart at the binaries
# that `cargo build` made (verify refuses a unit whose binary does not exist).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
  echo "verify-units: systemd-analyze is not installed; apt-get install systemd" >&2
  exit 1
fi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in systemd/*.service; do
  name=$(basename "$unit")
  # Build the binaries the unit starts, so verify can check they exist.
  for binary in $(grep -o '/usr/local/bin/[A-Za-z0-9_-]*' "$unit" | sort -u | xargs -n1 basename); do
    cargo build --quiet --locked --bin "$binary"
  done
  sed "s#/usr/local/bin/#$target/debug/#g" "$unit" >"$work/$name"
  out=$(systemd-analyze verify "$work/$name" 2>&1 || true)
  # Users that exist only on deployed machines are not an error of the unit file.
  problems=$(printf '%s\n' "$out" | grep -v -e '^$' -e 'Failed to resolve user' -e 'Failed to resolve group' || true)
  if [ -n "$problems" ]; then
    printf 'verify-units: %s\n%s\n' "$unit" "$problems" >&2
    exit 1
  fi
  echo "verify-units: $unit ok"
done
