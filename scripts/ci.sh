#!/usr/bin/env bash
# The project's checks: formatting, lints with warnings denied, every test, protocol crate alone.
# Starts a throwaway PostgreSQL on loopback for the tracker suites unless CAH_TEST_POSTGRES_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."

# clip-gpu-d links libtorch from the PyPI torch wheel (tch 0.24 + torch 2.11.0), and its parity
# tests run Hugging Face transformers and OpenAI's CLIP package as references.
if [ -d crates/clip-gpu-d ]; then
  scripts/setup-torch.sh
  # shellcheck source=scripts/torch-env.sh
  source scripts/torch-env.sh
fi

cargo fmt --all -- --check
# Every script parses (the benchmark and build scripts are not run here: they take too long).
for script in scripts/*.sh .ci/run; do
  bash -n "$script"
done
# The zig shim of the portable profile-guided build (scripts/zigbuild-env.sh) hands zig cc
# rustc's `-u SYMBOL` as `-Wl,-u,SYMBOL`; checked with echo for zig, since that build takes half
# an hour.
shim_says=$(
  # shellcheck source=scripts/zigbuild-env.sh
  source scripts/zigbuild-env.sh
  PYTHONPATH="$(zig_u_shim)" ZIG_SHIM_REAL_ZIG=/bin/echo python3 -m ziglang cc -u __llvm_profile_runtime main.o -o main
)
if [ "$shim_says" != "cc -Wl,-u,__llvm_profile_runtime main.o -o main" ]; then
  echo "ci: the zig -u shim of scripts/zigbuild-env.sh passed on: $shim_says" >&2
  exit 1
fi
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ -z "${CAH_TEST_POSTGRES_URL:-}" ]; then
  pg_dir=$(mktemp -d /tmp/cah-ci-postgres.XXXXXX)
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
  CAH_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$pg_dir" "$pg_port")
  export CAH_TEST_POSTGRES_URL
fi

# Real photos for the test web (scikit-image's samples from PyPI, re-encoded once and cached).
scripts/prepare-photos.sh
export CAH_TESTKIT_REQUIRE_PHOTOS=1
# The benchmark's URL lists: both mixes give 2,000 distinct URLs (scripts/bench_mix.py exits
# with an error when one of the LAION mix's size classes has no picture).
for mix in corpus laion; do
  n_distinct=$(python3 scripts/bench_mix.py target/testkit-photos/manifest.json "$mix" 127.0.0.1:1 2000 | sort -u | wc -l)
  [ "$n_distinct" = 2000 ] || { echo "ci: bench_mix.py $mix gave $n_distinct distinct URLs, not 2000" >&2; exit 1; }
done
# clip-gpu-d's S3 tests fail instead of skipping when s3s-fs is missing (.ci/run installs it).
export CAH_REQUIRE_S3S=1

cargo test --workspace --locked
# The whole swarm end to end on the debug binaries just built: demo at small scale, fault drill,
# dashboard in headless Chromium, dataset checked against the crawl and the tracker.
scripts/e2e.sh
# The wire crate must build alone, without features unified from the rest of the workspace.
cargo check -p cah-protocol --locked
scripts/verify-units.sh
