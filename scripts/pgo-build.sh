#!/usr/bin/env bash
# Profile-guided (PGO) release build of scraper-d: an instrumented build extracts generated WAT files,
# then the release build is optimised with the profile that run wrote.
#
#   scripts/pgo-build.sh            writes target/pgo/scraper-d.profdata and builds
#                                   target/pgo/use/HOST/release/scraper-d (printed as `binary: PATH`)
#   scripts/pgo-build.sh --profile  writes the profile only
#   scripts/pgo-build.sh --portable [--profile]
#                                   the same for the nodes' portable binary (glibc 2.31, cargo-zigbuild
#                                   as scripts/install-scraper.sh builds it): target/pgo/scraper-d-portable.profdata
#                                   and target/pgo/zig-use/x86_64-unknown-linux-gnu/release/scraper-d
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
# how the crate was built (and for crates with build scripts it differs between a native and a
# cargo-zigbuild build): the profile fits only a build made like the instrumented one, so the
# native and the portable build each get their own.
HOST=$(rustc -vV | sed -n 's/^host: //p')
readonly HOST
# shellcheck source=scripts/zigbuild-env.sh
source scripts/zigbuild-env.sh

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

# Builds scraper-d into a target dir with RUSTFLAGS, natively or portably (the mode); prints
# nothing.
build_with() { # target dir, rustflags
  if [ "$portable" = 1 ]; then
    portable_build "$1" "$2" >&2
  else
    RUSTFLAGS="$2" cargo build --release --locked --quiet -p scraper-d --bin scraper-d \
      --target "$HOST" --target-dir "$1"
  fi
}

# The scraper-d binary a target dir holds.
binary_in() { # target dir
  if [ "$portable" = 1 ]; then
    echo "$1/$PORTABLE_TARGET/release/scraper-d"
  else
    echo "$1/$HOST/release/scraper-d"
  fi
}

profile() {
  local profdata raw file style crawl seed trainee
  profdata=$(llvm_profdata)
  raw="$PWD/$DIR/raw$suffix"
  echo "pgo-build: instrumented build (target dir $gen_dir)" >&2
  cargo build --release --locked --quiet -p cah-testkit
  build_with "$gen_dir" "-Cprofile-generate=$raw"
  trainee=$(binary_in "$gen_dir")
  # Profiles of an earlier training run would be merged in too.
  rm -rf "$raw"
  echo "pgo-build: training on two ${TRAIN_MB} MB WAT files" >&2
  # One file per header style: strings before CC-MAIN-2024-51, arrays from it.
  for style in "CC-MAIN-2023-50 7" "CC-MAIN-2024-51 8"; do
    read -r crawl seed <<<"$style"
    file=$(target/release/cah-testkit wat --target-mb "$TRAIN_MB" --crawl "$crawl" --seed "$seed" \
      --out-dir "$DIR/train-$seed" | sed -n 's/^path=//p')
    [ -f "$file" ] || die "cah-testkit wat wrote no file"
    "$trainee" extract "$file" >/dev/null 2>"$DIR/train.log" ||
      die "the instrumented extract failed (see $DIR/train.log)"
    "$trainee" extract --format parquet --output "$DIR/train.parquet" "$file" \
      2>"$DIR/train.log" || die "the instrumented extract failed (see $DIR/train.log)"
  done
  rm -f "$DIR/train.parquet"
  "$profdata" merge -o "$profile_file" "$raw"
  echo "profile: $profile_file"
}

build() {
  local binary
  echo "pgo-build: release build with the profile (target dir $use_dir)" >&2
  build_with "$use_dir" "-Cprofile-use=$PWD/$profile_file"
  binary=$(binary_in "$use_dir")
  "$binary" --version >/dev/null
  echo "binary: $binary"
}

# Whether the profile is missing or older than a source it was taken from.
stale() {
  [ "${PGO_RETRAIN:-0}" = 1 ] || [ ! -f "$profile_file" ] ||
    [ -n "$(find crates Cargo.toml Cargo.lock -newer "$profile_file" \
      \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit)" ]
}

portable=0
profile_only=0
for arg in "$@"; do
  case "$arg" in
    --portable) portable=1 ;;
    --profile) profile_only=1 ;;
    *) die "unknown argument $arg (usage: scripts/pgo-build.sh [--portable] [--profile])" ;;
  esac
done
if [ "$portable" = 1 ]; then
  suffix=-portable gen_dir=$DIR/zig-gen use_dir=$DIR/zig-use
else
  suffix="" gen_dir=$DIR/gen use_dir=$DIR/use
fi
profile_file=$DIR/scraper-d$suffix.profdata
mkdir -p "$DIR"
if stale; then
  profile
else
  echo "pgo-build: reusing $profile_file (PGO_RETRAIN=1 writes it again)" >&2
  echo "profile: $profile_file"
fi
[ "$profile_only" = 1 ] || build
