#!/usr/bin/env bash
# Builds scraper-d for any x86-64 Linux with glibc >= 2.31 and/or installs it as a systemd service.
#
#   scripts/install-scraper.sh build [--pgo]
#       Release build linked against glibc 2.31 symbols (cargo-zigbuild with Zig, both from PyPI into
#       target/zigbuild-py), checked with objdump; prints the binary path and its SHA-256 (the values
#       swarm-ctl's cloud-init needs as SCRAPER_URL's file and SCRAPER_SHA256). --pgo builds it
#       profile-guided (scripts/pgo-build.sh --portable: WAT extraction about 1.2 times as fast; three
#       builds, about half an hour on 2 cores the first time).
#   sudo scripts/install-scraper.sh install [--binary PATH] [--root DIR] [--no-start]
#       [--tracker URL --nickname NAME [--node-name NODE] [--swarm NAME] [--enrollment-token TOKEN]]
#       Installs the binary at /usr/local/bin/scraper-d, systemd/scraper-d.service at
#       /etc/systemd/system/, the `scraper` system user, and /etc/cah/scraper-d.env (written only when
#       missing, mode 0640, from the flags); then daemon-reload and enable --now.
#       --root DIR installs into DIR instead of / and touches neither users nor systemd (a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/zigbuild-env.sh
source scripts/zigbuild-env.sh

die() {
  echo "install-scraper: $*" >&2
  exit 1
}

# The workspace's target folder.
target_dir() {
  cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

build() {
  local binary
  command -v objdump >/dev/null || die "objdump is missing: apt-get install binutils"
  case "${1:-}" in
    "")
      portable_build "$(target_dir)"
      binary="$(target_dir)/$PORTABLE_TARGET/release/scraper-d"
      ;;
    --pgo)
      binary=$(scripts/pgo-build.sh --portable | sed -n 's/^binary: //p')
      [ -n "$binary" ] || die "scripts/pgo-build.sh --portable built no binary"
      ;;
    *) die "unknown flag $1 (usage: $0 build [--pgo])" ;;
  esac
  check_portable "$binary" || die "$binary is not portable"
  echo "binary: $binary"
  echo "sha256: $(sha256sum "$binary" | cut -d' ' -f1)"
}

install_service() {
  local binary="" root="" start=1 tracker="" nickname="" node_name="" swarm="" token=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --binary) binary=$2; shift 2 ;;
      --root) root=$2; shift 2 ;;
      --no-start) start=0; shift ;;
      --tracker) tracker=$2; shift 2 ;;
      --nickname) nickname=$2; shift 2 ;;
      --node-name) node_name=$2; shift 2 ;;
      --swarm) swarm=$2; shift 2 ;;
      --enrollment-token) token=$2; shift 2 ;;
      *) die "unknown flag $1" ;;
    esac
  done
  if [ -z "$binary" ]; then
    binary="$(target_dir)/$PORTABLE_TARGET/release/scraper-d"
  fi
  [ -x "$binary" ] || die "no binary at $binary (run: $0 build)"
  local libc
  libc=$(ldd --version 2>&1 | head -1 | grep -o '[0-9]\+\.[0-9]\+$' || true)
  if [ -n "$libc" ] && [ "$(printf '%s\n%s\n' "$libc" "$(glibc_needed "$binary")" | sort -V | head -1)" != "$(glibc_needed "$binary")" ]; then
    die "this machine has glibc $libc; the binary needs $(glibc_needed "$binary")"
  fi
  if [ -z "$root" ]; then
    [ "$(id -u)" -eq 0 ] || die "install needs root (or --root DIR for a dry run)"
    command -v systemctl >/dev/null || die "systemd is required"
    if ! id scraper >/dev/null 2>&1; then
      useradd --system --home-dir /var/lib/scraper-d --no-create-home --shell /usr/sbin/nologin scraper
    fi
  fi
  install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
  install -d -m 0750 "$root/etc/cah"
  # Through a temporary name and a rename, so a running service never sees half a binary.
  install -m 0755 "$binary" "$root/usr/local/bin/.scraper-d.new"
  mv -f "$root/usr/local/bin/.scraper-d.new" "$root/usr/local/bin/scraper-d"
  install -m 0644 systemd/scraper-d.service "$root/etc/systemd/system/scraper-d.service"
  local env_file="$root/etc/cah/scraper-d.env"
  if [ ! -e "$env_file" ]; then
    [ -n "$tracker" ] && [ -n "$nickname" ] || die "$env_file is missing: pass --tracker and --nickname"
    umask 077
    {
      echo "SCRAPER_TRACKER_URL=$tracker"
      echo "SCRAPER_NICKNAME=$nickname"
      echo "SCRAPER_NODE_NAME=${node_name:-$(hostname)}"
      [ -n "$swarm" ] && echo "SCRAPER_SWARM=$swarm"
      [ -n "$token" ] && echo "SCRAPER_ENROLLMENT_TOKEN=$token"
      true
    } >"$env_file"
    chmod 0640 "$env_file"
    [ -z "$root" ] && chgrp scraper "$env_file"
  fi
  if [ -n "$root" ]; then
    echo "install-scraper: installed into $root (no users, no systemd)"
    return
  fi
  systemctl daemon-reload
  if [ "$start" -eq 1 ]; then
    systemctl enable --now scraper-d.service
    systemctl restart scraper-d.service
    systemctl --no-pager --lines=0 status scraper-d.service || true
  else
    systemctl enable scraper-d.service
  fi
}

case "${1:-}" in
  build) shift; build "$@" ;;
  install) shift; install_service "$@" ;;
  *) die "usage: $0 build [--pgo] | install [--binary PATH] [--root DIR] [--no-start] [--tracker URL --nickname NAME ...]" ;;
esac
