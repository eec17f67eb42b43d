#!/usr/bin/env bash
# Profile-guided (PGO) release build of scraper-d: an instrumented build extracts generated WAT files,
# then the release build is optimised with the profile that run wrote.
#
#   scripts/pgo-build.sh            writes target/pgo/scraper-d.profdata and builds
#                                   target/pgo/use/HOST/release/scraper-d (printed as `binary: PATH`)
#   scripts/pgo-build.sh --profile  writes the profile only
#
# The training files come from `cah-testkit wat` with seeds and crawls of their own (one file per
# header style), never the benchmark's file. PGO_TRAIN_MB sets each file's size (default 20).
# Needs llvm-profdata of the same LLVM as rustc: the rustup component llvm-tools, added here when
# rustup is present. Rust code only: libdeflate and libjpeg-turbo (C) are built as usual.
# A profile newer than every Rust source and manifest is reused (a new one would rebuild all
# crates); PGO_RETRAIN=1 writes it again anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly DIR=target/pgo
readonly TRAIN_MB="${PGO_TRAIN_MB:-20}"
# A profile matches functions by their symbol names, which carry a hash that cargo derives from
# how the crate was built: the profile fits only a build made like these two (both name the
# target). install-scraper.sh's cargo-zigbuild build cannot use it (crates/scraper-d/README.md).
HOST=$(rustc -vV | sed -n 's/^host: //p')
readonly HOST

die() {
  echo "pgo-build: $*" >&2
  exit 1
}

llvm_profdata() {
  local tool
  tool="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
  if [ ! -x "$tool" ]; then
    command -v rustup >/dev/null || die "llvm-profdata is missing and rustup is not here: install the llvm-tools component of this toolchain"
    echo "pgo-build: adding the rustup component llvm-tools (llvm-profdata)" >&2
    rustup component add llvm-tools >&2 || die "rustup component add llvm-tools failed: add it by hand, then rerun"
  fi
  [ -x "$tool" ] || die "no llvm-profdata at $tool after adding llvm-tools"
  echo "$tool"
}

profile() {
  local profdata raw file style crawl seed
  profdata=$(llvm_profdata)
  raw="$PWD/$DIR/raw"
  echo "pgo-build: instrumented build (target dir $DIR/gen)" >&2
  cargo build --release --locked --quiet -p cah-testkit
  RUSTFLAGS="-Cprofile-generate=$raw" \
    cargo build --release --locked --quiet -p scraper-d --bin scraper-d --target "$HOST" \
    --target-dir "$DIR/gen"
  # Profiles of an earlier training run would be merged in too.
  rm -rf "$raw"
  echo "pgo-build: training on two ${TRAIN_MB} MB WAT files" >&2
  # One file per header style: strings before CC-MAIN-2024-51, arrays from it.
  for style in "CC-MAIN-2023-50 7" "CC-MAIN-2024-51 8"; do
    read -r crawl seed <<<"$style"
    file=$(target/release/cah-testkit wat --target-mb "$TRAIN_MB" --crawl "$crawl" --seed "$seed" \
      --out-dir "$DIR/train-$seed" | sed -n 's/^path=//p')
    [ -f "$file" ] || die "cah-testkit wat wrote no file"
    "$DIR/gen/$HOST/release/scraper-d" extract "$file" >/dev/null 2>"$DIR/train.log" ||
      die "the instrumented extract failed (see $DIR/train.log)"
    "$DIR/gen/$HOST/release/scraper-d" extract --format parquet --output "$DIR/train.parquet" "$file" \
      2>"$DIR/train.log" || die "the instrumented extract failed (see $DIR/train.log)"
  done
  rm -f "$DIR/train.parquet"
  "$profdata" merge -o "$DIR/scraper-d.profdata" "$raw"
  echo "profile: $DIR/scraper-d.profdata"
}

build() {
  echo "pgo-build: release build with the profile (target dir $DIR/use)" >&2
  RUSTFLAGS="-Cprofile-use=$PWD/$DIR/scraper-d.profdata" \
    cargo build --release --locked --quiet -p scraper-d --bin scraper-d --target "$HOST" \
    --target-dir "$DIR/use"
  "$DIR/use/$HOST/release/scraper-d" --version >/dev/null
  echo "binary: $DIR/use/$HOST/release/scraper-d"
}

# Whether the profile is missing or older than a source it was taken from.
stale() {
  [ "${PGO_RETRAIN:-0}" = 1 ] || [ ! -f "$DIR/scraper-d.profdata" ] ||
    [ -n "$(find crates Cargo.toml Cargo.lock -newer "$DIR/scraper-d.profdata" \
      \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit)" ]
}

case "${1:-}" in
  "" | --profile) ;;
  *) die "unknown argument $1 (usage: scripts/pgo-build.sh [--profile])" ;;
esac
mkdir -p "$DIR"
if stale; then
  profile
else
  echo "pgo-build: reusing $DIR/scraper-d.profdata (PGO_RETRAIN=1 writes it again)" >&2
  echo "profile: $DIR/scraper-d.profdata"
fi
[ "${1:-}" = --profile ] || build
