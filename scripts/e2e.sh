#!/usr/bin/env bash
# The end-to-end test that .ci/run runs after the unit and integration suites: the demo at small
# scale on the debug binaries those suites built, with the fault drill (SIGKILL a scraper-d,
# restart tracker-d, SIGKILL and restart clip-gpu-d), a dashboard screenshot in headless
# Chromium, and scripts/check-demo.py on the result: every job closed once, every kept pair
# traceable to its WAT record, none lost, none duplicated, read back by webdataset and pyarrow.
# Usage: scripts/e2e.sh [WORK_DIR]   (default target/e2e; the screenshot is WORK_DIR/dashboard.png)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-target/e2e}"
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
build=(--no-build)
for bin in tracker-d scraper-d clip-gpu-d cah-testkit; do
  [ -x "target/debug/$bin" ] || build=()
done
scripts/demo.sh --profile debug "${build[@]}" --work "$work" --wats 3 --pages 60 --scrapers 2 \
  --faults --check --screenshot "$work/dashboard.png" --timeout 600
