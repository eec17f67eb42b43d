#!/usr/bin/env bash
# The embedded-default demo: the whole swarm on one machine, without the Internet.
#   1. installs what it needs (the PyPI torch that clip-gpu-d links, webdataset, pyarrow; real
#      photos for the test web) and builds the release binaries,
#   2. starts cah-testkit's world (authoritative DNS, image hosts with real photos, a generated
#      Common Crawl of WAT files served over HTTP), tracker-d on SQLite, imports the crawl,
#   3. runs two scraper-d and one clip-gpu-d (on the CPU) until every job is closed,
#   4. prints jobs, candidates, downloads by outcome, pairs kept, throughput, and where the
#      dataset is and how to read it (scripts/demo.py does steps 2 to 4).
# Without real weights it scores with a random-weight checkpoint and says so; after
# scripts/fetch-model.sh it uses OpenAI's ViT-B/32.
#
# Usage: scripts/demo.sh [--wats N] [--pages N] [--scrapers N] [--full-size-model] [--keep]
#                        [--common-crawl CC-MAIN-YYYY-WW --limit N]     (real crawl and web)
#                        [--faults] [--check] [--screenshot PNG]        (what the e2e test adds)
#                        [--timeout SECONDS] [--profile release|debug] [--no-build] [--work DIR]
# Env: CLIP_MODEL_DIR  real checkpoint (default ~/.cache/cah/clip-vit-base-patch32, where
#                      scripts/fetch-model.sh puts it)
# Needs: cargo (rustup), cmake and nasm (the vendored libjpeg-turbo), python3 with venv and pip;
# the first run downloads about 5 GB from PyPI and crates.io and builds for 10 to 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
work=""
full_model=0
keep=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wats|--pages|--scrapers|--common-crawl|--limit|--screenshot|--timeout) pass+=("$1" "$2"); shift 2 ;;
    --faults|--check) pass+=("$1"); shift ;;
    --keep) keep=1; pass+=("$1"); shift ;;
    --full-size-model) full_model=1; shift ;;
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$profile" in release|debug) ;; *) echo "demo: --profile is release or debug" >&2; exit 64 ;; esac

if ! command -v cargo >/dev/null; then
  echo "demo: cargo is not installed; install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
missing=()
for tool in cmake nasm python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -x "${CAH_TORCH_VENV:-.venv}/bin/python" ] || python3 -c 'import venv, ensurepip' 2>/dev/null \
  || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "demo: missing ${missing[*]}; on Debian or Ubuntu: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "== python environment (torch for clip-gpu-d, webdataset and pyarrow to read the dataset)"
scripts/setup-torch.sh
# shellcheck source=scripts/torch-env.sh
source scripts/torch-env.sh
scripts/prepare-photos.sh >/dev/null || echo "demo: real photos unavailable, the test web will serve generated pictures" >&2

if [ "$build" = 1 ]; then
  echo "== building $profile binaries (the first build takes several minutes)"
  flags=(--locked -p tracker-d -p cah-testkit -p scraper-d -p clip-gpu-d --bins)
  [ "$profile" = release ] && flags+=(--release)
  cargo build "${flags[@]}"
fi

model="${CLIP_MODEL_DIR:-$HOME/.cache/cah/clip-vit-base-patch32}"
random=()
if [ ! -f "$model/model.safetensors" ]; then
  size=tiny
  [ "$full_model" = 1 ] && size=full
  model="target/clip-test-models/demo-$size"
  if [ ! -f "$model/model.safetensors" ]; then
    echo "== no real CLIP weights; making a random-weight $size checkpoint (scripts/make-test-model.py)"
    mkdir -p target/clip-test-models
    if [ "$size" = full ]; then
      python scripts/make-test-model.py --out "$model" --full
    else
      python scripts/make-test-model.py --out "$model"
    fi
  fi
  random=(--random-weights)
  echo "== RANDOM WEIGHTS: similarities are meaningless; run scripts/fetch-model.sh for OpenAI's ViT-B/32"
fi

if [ -z "$work" ]; then
  work=$(mktemp -d -t cah-demo.XXXXXX)
fi
echo "== work folder: $work"
python scripts/demo.py --bin-dir "target/$profile" --work "$work" --model "$model" "${random[@]}" "${pass[@]}"
if [ "$keep" = 0 ]; then
  echo "(the work folder stays for you to read; remove it with: rm -rf $work)"
fi
