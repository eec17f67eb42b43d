#!/usr/bin/env bash
# The checks of clip-gpu-d that need a GPU: CUDA parity against PyTorch/transformers, tower
# throughput against Hugging Face fp16 sdpa, peak GPU memory, and the whole daemon end to end.
#
# Three modes:
#   scripts/gpu-check.sh prepare       (development machine) builds target/release/clip-gpu-d
#       and target/release/tracker-d and assembles target/gpu-check/ (both binaries stripped,
#       tiny test checkpoint, a few photos, thumbnails of all 36 test photos, captions, the
#       Python helpers), well under the 64 MiB the device tool carries (prepare fails above 48 MiB).
#   scripts/gpu-check.sh run           (GPU machine) runs every check with the PyTorch there
#       (default /opt/torch/.venv/bin/python, transformers preinstalled; no Rust, no network).
#       With the device tool, after `prepare` here:
#         run(command="bash scripts/gpu-check.sh run", carry=["target/gpu-check"], timeout_s=540)
#       It builds a random-weight ViT-B/32-shaped checkpoint there (too big to carry), writes
#       results to $OUT (or target/gpu-check/results) and prints them; ~4-6 minutes (the daemon check ~1-2).
#   scripts/gpu-check.sh --cpu-dry-run (development machine, no GPU) runs the same `run` path
#       on the CPU with the tiny checkpoint, small batches and the torch venv, so this script
#       itself is tested (cargo test runs it: tests/parity/gpu_check.rs).
# Env: CLIP_GPU_CHECK_DAEMON_ONLY=1 (run only the daemon check; with CLIP_GPU_CHECK_DAEMON_RUNS
#      to choose its runs), CLIP_GPU_D_BIN, TRACKER_D_BIN (already built binaries; skip their release builds),
#      CLIP_GPU_CHECK_KIT (kit folder, default target/gpu-check), GPU_PYTHON (python with torch
#      and transformers on the GPU machine), OUT (results folder; the device tool sets it),
#      CLIP_GPU_CHECK_WORK (scratch folder of the daemon check, default $TMPDIR/clip-gpu-check-daemon;
#      the kit's daemon-work for --cpu-dry-run), CAH_TORCH_PYTHON.
#
# Checks of `run` (each prints one JSON line; a check that fails is reported and the others still
# run, since device time is scarce; the script then exits 1):
#   parity: clip-gpu-d embed on the device in f32, f16, bf16 against transformers CLIPModel fp32
#     on the same device and the same inputs (pixels and token ids dumped by clip-gpu-d):
#     f32 max abs error <= 1e-3 (cuDNN/cuBLAS kernel differences), f16/bf16 row cosine >= 0.999;
#     on the tiny and on the ViT-B/32-shaped checkpoint.
#   throughput: clip-gpu-d bench vs hf_bench.py (transformers, sdpa), fp16, batches 256 and 1024.
#   memory: peak GPU memory (nvidia-smi, whole process) of clip-gpu-d at batch 256, and
#     transformers' max_memory_allocated at batch 256.
#   daemon: tracker-d and `clip-gpu-d run` end to end (daemon_bench.py): 40 bundles of 5,000
#     real-photo thumbnails handed in through the tracker's upload path, scored with the
#     ViT-B/32-shaped checkpoint in fp16 on cuda (threshold -1 and tags off, so every pair is
#     written), once per BATCH:MAX_JOBS in CLIP_GPU_CHECK_DAEMON_RUNS (default "256:8 1024:16":
#     the defaults, then larger batches and more bundles in flight); prints pairs scored per
#     second, the model thread's busy fraction and seconds per stage from the daemon's metrics.
#     Target on an H200: 15,000 pairs/s, busy >= 0.8 (reported as meets_target; the run fails
#     only if the daemon fails or loses pairs).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="${CLIP_GPU_CHECK_KIT:-$repo_root/target/gpu-check}"
mode="${1:-run}"

prepare() {
    local bin="${CLIP_GPU_D_BIN:-}" tracker_bin="${TRACKER_D_BIN:-}"
    if [[ -z "$bin" ]]; then
        # shellcheck source=scripts/torch-env.sh
        source "$repo_root/scripts/torch-env.sh"
        (cd "$repo_root" && cargo build --release -p clip-gpu-d)
        bin="$repo_root/target/release/clip-gpu-d"
    fi
    if [[ -z "$tracker_bin" ]]; then
        (cd "$repo_root" && cargo build --release -p tracker-d)
        tracker_bin="$repo_root/target/release/tracker-d"
    fi
    local python="${CAH_TORCH_PYTHON:-$repo_root/.venv/bin/python}"
    "$repo_root/scripts/prepare-photos.sh" >/dev/null
    "$python" "$repo_root/scripts/make-test-model.py" --out "$repo_root/target/clip-test-models/tiny" >/dev/null
    rm -rf "$kit"
    mkdir -p "$kit/photos" "$kit/python" "$kit/thumbs"
    cp "$bin" "$kit/clip-gpu-d"
    cp "$tracker_bin" "$kit/tracker-d"
    # Debug sections make the release binaries ~105 MB and ~47 MB; stripped they are about 16 MB
    # and 8.5 MB, and the kit about 34 MiB (the carry limit is 64 MiB).
    if command -v strip >/dev/null; then strip "$kit/clip-gpu-d" "$kit/tracker-d"; fi
    # Bundle images for the daemon check, as scraper-d stores them: JPEG, shorter side 256.
    "$python" - "$repo_root/target/testkit-photos" "$kit/thumbs" <<'PY'
import json, os, sys
from PIL import Image
source, out = sys.argv[1], sys.argv[2]
manifest = []
for name in sorted(os.listdir(source)):
    if not name.endswith((".jpg", ".png", ".webp")):
        continue
    image = Image.open(os.path.join(source, name)).convert("RGB")
    scale = 256 / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    file = os.path.splitext(name)[0] + ".jpg"
    image.save(os.path.join(out, file), quality=90)
    caption = "a photo of " + name.split("-")[0].replace("_", " ")
    manifest.append({"file": file, "width": image.width, "height": image.height, "caption": caption})
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
PY
    cp -r "$repo_root/target/clip-test-models/tiny" "$kit/tiny"
    for photo in astronaut-0.80mp-base.jpg chelsea-0.30mp-base.jpg coffee-0.24mp-base.webp \
        hubble_deep_field-0.20mp-base.png motorcycle_left-0.37mp-base.jpg rocket-0.27mp-base.jpg; do
        cp "$repo_root/target/testkit-photos/$photo" "$kit/photos/"
    done
    cp "$repo_root/scripts/make-test-model.py" "$repo_root"/crates/clip-gpu-d/tests/python/*.py "$kit/python/"
    printf '%s\n' "a photo of a cat" "an astronaut in a white suit" "a cup of coffee" "the hubble deep field" \
        "a red motorcycle" "a rocket on the launch pad" "" "Σίσυφος &amp; 🙂" > "$kit/texts.txt"
    local kit_kib
    kit_kib="$(du -sk "$kit" | cut -f1)"
    # Only the release kit travels (the dry run's debug binaries are far larger).
    if [[ "${1:-}" == carried ]] && (( kit_kib > 48 * 1024 )); then
        echo "error: the kit is $((kit_kib / 1024)) MiB; it must stay well under the 64 MiB the device tool carries" >&2
        return 1
    fi
    echo "gpu-check kit ready in $kit ($((kit_kib / 1024)) MiB)"
}

run_checks() {
    local device="$1" python="$2" bench_model_kind="$3" iterations="$4"
    local daemon_bundles="$5" daemon_samples="$6" daemon_runs="$7"
    shift 7
    local batches=("$@")
    local out="${OUT:-$kit/results}"
    local bin="$kit/clip-gpu-d"
    mkdir -p "$out"
    local torch_lib
    torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "{\"check\": \"environment\", \"device\": \"$device\", \"torch\": \"$("$python" -c 'import torch; print(torch.__version__)')\", \"libtorch_cuda_linked\": $(ldd "$bin" | grep -q torch_cuda && echo true || echo false)}" | tee "$out/environment.json"
    if [[ "$device" == cuda* ]]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    fi

    local models=(tiny)
    # The ViT-B/32-shaped checkpoint (605 MB) stays outside $OUT, which the device tool copies back.
    local full_dir="${TMPDIR:-/tmp}/clip-gpu-check-vit-b-32"
    if [[ "$bench_model_kind" == full ]]; then
        "$python" "$kit/python/make-test-model.py" --full --out "$full_dir" --tokenizer-from "$kit/tiny" >/dev/null
        models+=(full)
    fi
    local status=0 name model_dir dtype
    local bench_model="$kit/tiny" bench_dtype=f16
    [[ "$bench_model_kind" == full ]] && bench_model="$full_dir"
    [[ "$device" == cpu ]] && bench_dtype=f32
    # CLIP_GPU_CHECK_DAEMON_ONLY=1: the daemon runs alone (a second call after changing the daemon).
    if [[ "${CLIP_GPU_CHECK_DAEMON_ONLY:-0}" != 1 ]]; then
        for name in "${models[@]}"; do
            model_dir="$kit/tiny"
            [[ "$name" == full ]] && model_dir="$full_dir"
            for dtype in f32 f16 bf16; do
                if ! "$bin" --log-format json embed --model "$model_dir" --device "$device" --dtype "$dtype" \
                    --images "$kit"/photos/* --texts-file "$kit/texts.txt" --output "$out/ours-$name-$dtype" \
                    --dump-inputs 2>>"$out/clip-gpu-d.log"; then
                    echo "{\"check\": \"parity-$name-$device-$dtype\", \"error\": \"clip-gpu-d embed failed (see clip-gpu-d.log)\"}"
                    status=1
                    continue
                fi
                if [[ "$dtype" == f32 ]]; then
                    "$python" "$kit/python/model_reference.py" --model "$model_dir" --device "$device" \
                        --pixels "$out/ours-$name-f32.pixels.npy" --tokens "$out/ours-$name-f32.tokens.npy" \
                        --out "$out/hf-$name" || status=1
                fi
                local max_abs=1e-3 min_cosine=0.99999
                [[ "$dtype" != f32 ]] && max_abs=0.05 && min_cosine=0.999
                "$python" "$kit/python/compare_embeddings.py" "$out/ours-$name-$dtype" "$out/hf-$name" \
                    "parity-$name-$device-$dtype" "$max_abs" "$min_cosine" | tee -a "$out/parity.jsonl" || status=1
            done
        done

        "$python" "$kit/python/hf_bench.py" --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
            --batch-sizes "${batches[@]}" --iterations "$iterations" --out "$out/bench-hf.json" 2>"$out/hf-bench.log" |
            sed 's/^/{"check": "throughput-hf", "result": /; s/$/}/' || status=1
        local smi_pid=""
        if [[ "$device" == cuda* ]]; then
            nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$out/memory-ours.txt" &
            smi_pid=$!
            # Batch 256 alone first, for its peak memory.
            "$bin" --log-format json bench --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
                --batch-sizes 256 --iterations 3 --warmup 1 --output "$out/bench-ours-256.json" 2>>"$out/clip-gpu-d.log" ||
                status=1
            kill "$smi_pid" && wait "$smi_pid" 2>/dev/null || true
            echo "{\"check\": \"memory-ours-batch-256\", \"peak_used_mib\": $(sort -n "$out/memory-ours.txt" | tail -n 1)}"
        fi
        "$bin" --log-format json bench --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
            --batch-sizes "${batches[@]}" --iterations "$iterations" --output "$out/bench-ours.json" 2>>"$out/clip-gpu-d.log" ||
            status=1
        [[ -f "$out/bench-ours.json" ]] &&
            echo "{\"check\": \"throughput-ours\", \"result\": $(tr -d '\n' < "$out/bench-ours.json")}"
    fi

    # The whole daemon: tracker-d, bundles through its upload path, `clip-gpu-d run`. The
    # scratch folder (tracker staging and dataset, GBs on the GPU machine) stays outside $OUT.
    # Once per BATCH:MAX_JOBS in $daemon_runs, each with its own logs; a stuck daemon fails its
    # run after 240 s rather than spend the device time of the whole call.
    local run batch max_jobs
    for run in $daemon_runs; do
        batch="${run%%:*}" max_jobs="${run##*:}"
        "$python" "$kit/python/daemon_bench.py" --tracker-bin "$kit/tracker-d" --daemon-bin "$bin" \
            --model "$bench_model" --thumbs "$kit/thumbs" --device "$device" --dtype "$bench_dtype" \
            --bundles "$daemon_bundles" --samples "$daemon_samples" --batch-size "$batch" \
            --max-jobs "$max_jobs" --timeout 240 \
            --work "${CLIP_GPU_CHECK_WORK:-${TMPDIR:-/tmp}/clip-gpu-check-daemon}" --logs "$out/daemon-$batch-$max_jobs" |
            tee -a "$out/daemon-bench.json" || status=1
    done
    if [[ "$status" != 0 ]]; then
        echo "gpu-check: a check failed (see $out/parity.jsonl, $out/*.log and $out/daemon-bench*); the others ran" >&2
        return 1
    fi
    echo "gpu-check: all checks passed; results in $out"
}

case "$mode" in
    prepare)
        prepare carried
        echo 'on the GPU machine: run(command="bash scripts/gpu-check.sh run", carry=["target/gpu-check"], timeout_s=540)'
        ;;
    run)
        [[ -x "$kit/clip-gpu-d" ]] || { echo "error: no $kit/clip-gpu-d; run scripts/gpu-check.sh prepare first" >&2; exit 1; }
        run_checks "${CLIP_GPU_CHECK_DEVICE:-cuda}" "${GPU_PYTHON:-/opt/torch/.venv/bin/python}" full 20 40 5000 \
            "${CLIP_GPU_CHECK_DAEMON_RUNS:-256:8 1024:16}" 256 1024
        ;;
    --cpu-dry-run)
        prepare
        OUT="${OUT:-$kit/results-cpu}" CLIP_GPU_CHECK_WORK="${CLIP_GPU_CHECK_WORK:-$kit/daemon-work}" run_checks cpu "${CAH_TORCH_PYTHON:-$repo_root/.venv/bin/python}" tiny 2 4 24 "8:8 16:2" 4 8
        ;;
    *)
        echo "usage: $0 prepare | run | --cpu-dry-run" >&2
        exit 2
        ;;
esac
