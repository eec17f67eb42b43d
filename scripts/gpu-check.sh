#!/usr/bin/env bash
# The checks of clip-gpu-d that need a GPU: CUDA parity against PyTorch/transformers, tower
# throughput against Hugging Face fp16 sdpa, and peak GPU memory.
#
# Three modes:
#   scripts/gpu-check.sh prepare       (development machine) builds target/release/clip-gpu-d
#       and assembles target/gpu-check/ (binary, tiny test checkpoint, a few photos, captions,
#       the Python helpers), well under the 64 MiB the device tool carries.
#   scripts/gpu-check.sh run           (GPU machine) runs every check with the PyTorch there
#       (default /opt/torch/.venv/bin/python, transformers preinstalled; no Rust, no network).
#       With the device tool, after `prepare` here:
#         run(command="bash scripts/gpu-check.sh run", carry=["target/gpu-check"], timeout_s=540)
#       It builds a random-weight ViT-B/32-shaped checkpoint there (too big to carry), writes
#       results to $OUT (or target/gpu-check/results) and prints them; ~3-5 minutes.
#   scripts/gpu-check.sh --cpu-dry-run (development machine, no GPU) runs the same `run` path
#       on the CPU with the tiny checkpoint, small batches and the torch venv, so this script
#       itself is tested (cargo test runs it: tests/parity/gpu_check.rs).
# Env: CLIP_GPU_D_BIN (an already built binary; skips the release build), CLIP_GPU_CHECK_KIT
#      (kit folder, default target/gpu-check), GPU_PYTHON (python with torch and transformers
#      on the GPU machine), OUT (results folder; the device tool sets it), CAH_TORCH_PYTHON.
#
# Checks of `run` (each prints one JSON line; the script fails if a parity check fails):
#   parity: clip-gpu-d embed on the device in f32, f16, bf16 against transformers CLIPModel fp32
#     on the same device and the same inputs (pixels and token ids dumped by clip-gpu-d):
#     f32 max abs error <= 1e-3 (cuDNN/cuBLAS kernel differences), f16/bf16 row cosine >= 0.999;
#     on the tiny and on the ViT-B/32-shaped checkpoint.
#   throughput: clip-gpu-d bench vs hf_bench.py (transformers, sdpa), fp16, batches 256 and 1024.
#   memory: peak GPU memory (nvidia-smi, whole process) of clip-gpu-d at batch 256, and
#     transformers' max_memory_allocated at batch 256.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="${CLIP_GPU_CHECK_KIT:-$repo_root/target/gpu-check}"
mode="${1:-run}"

prepare() {
    local bin="${CLIP_GPU_D_BIN:-}"
    if [[ -z "$bin" ]]; then
        # shellcheck source=scripts/torch-env.sh
        source "$repo_root/scripts/torch-env.sh"
        (cd "$repo_root" && cargo build --release -p clip-gpu-d)
        bin="$repo_root/target/release/clip-gpu-d"
    fi
    local python="${CAH_TORCH_PYTHON:-$repo_root/.venv/bin/python}"
    "$repo_root/scripts/prepare-photos.sh" >/dev/null
    "$python" "$repo_root/scripts/make-test-model.py" --out "$repo_root/target/clip-test-models/tiny" >/dev/null
    rm -rf "$kit"
    mkdir -p "$kit/photos" "$kit/python"
    cp "$bin" "$kit/clip-gpu-d"
    # Debug sections make the release binary ~57 MB; stripped it is ~5 MB (the carry limit is 64 MiB).
    if command -v strip >/dev/null; then strip "$kit/clip-gpu-d"; fi
    cp -r "$repo_root/target/clip-test-models/tiny" "$kit/tiny"
    for photo in astronaut-0.80mp-base.jpg chelsea-0.30mp-base.jpg coffee-0.24mp-base.webp \
        hubble_deep_field-0.20mp-base.png motorcycle_left-0.37mp-base.jpg rocket-0.27mp-base.jpg; do
        cp "$repo_root/target/testkit-photos/$photo" "$kit/photos/"
    done
    cp "$repo_root/scripts/make-test-model.py" "$repo_root"/crates/clip-gpu-d/tests/python/*.py "$kit/python/"
    printf '%s\n' "a photo of a cat" "an astronaut in a white suit" "a cup of coffee" "the hubble deep field" \
        "a red motorcycle" "a rocket on the launch pad" "" "Σίσυφος &amp; 🙂" > "$kit/texts.txt"
    echo "gpu-check kit ready in $kit ($(du -sh "$kit" | cut -f1))"
}

run_checks() {
    local device="$1" python="$2" bench_model_kind="$3" iterations="$4"
    shift 4
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
    for name in "${models[@]}"; do
        model_dir="$kit/tiny"
        [[ "$name" == full ]] && model_dir="$full_dir"
        for dtype in f32 f16 bf16; do
            "$bin" --log-format json embed --model "$model_dir" --device "$device" --dtype "$dtype" \
                --images "$kit"/photos/* --texts-file "$kit/texts.txt" --output "$out/ours-$name-$dtype" \
                --dump-inputs 2>>"$out/clip-gpu-d.log"
            if [[ "$dtype" == f32 ]]; then
                "$python" "$kit/python/model_reference.py" --model "$model_dir" --device "$device" \
                    --pixels "$out/ours-$name-f32.pixels.npy" --tokens "$out/ours-$name-f32.tokens.npy" \
                    --out "$out/hf-$name"
            fi
            local max_abs=1e-3 min_cosine=0.99999
            [[ "$dtype" != f32 ]] && max_abs=0.05 && min_cosine=0.999
            "$python" "$kit/python/compare_embeddings.py" "$out/ours-$name-$dtype" "$out/hf-$name" \
                "parity-$name-$device-$dtype" "$max_abs" "$min_cosine" | tee -a "$out/parity.jsonl" || status=1
        done
    done

    local bench_model="$kit/tiny" bench_dtype=f16
    [[ "$bench_model_kind" == full ]] && bench_model="$full_dir"
    [[ "$device" == cpu ]] && bench_dtype=f32
    "$python" "$kit/python/hf_bench.py" --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
        --batch-sizes "${batches[@]}" --iterations "$iterations" --out "$out/bench-hf.json" 2>/dev/null |
        sed 's/^/{"check": "throughput-hf", "result": /; s/$/}/'
    local smi_pid=""
    if [[ "$device" == cuda* ]]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$out/memory-ours.txt" &
        smi_pid=$!
        # Batch 256 alone first, for its peak memory.
        "$bin" --log-format json bench --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
            --batch-sizes 256 --iterations 3 --warmup 1 --output "$out/bench-ours-256.json" 2>>"$out/clip-gpu-d.log"
        kill "$smi_pid" && wait "$smi_pid" 2>/dev/null || true
        echo "{\"check\": \"memory-ours-batch-256\", \"peak_used_mib\": $(sort -n "$out/memory-ours.txt" | tail -n 1)}"
    fi
    "$bin" --log-format json bench --model "$bench_model" --device "$device" --dtype "$bench_dtype" \
        --batch-sizes "${batches[@]}" --iterations "$iterations" --output "$out/bench-ours.json" 2>>"$out/clip-gpu-d.log"
    echo "{\"check\": \"throughput-ours\", \"result\": $(tr -d '\n' < "$out/bench-ours.json")}"
    if [[ "$status" != 0 ]]; then
        echo "gpu-check: a parity check failed (see $out/parity.jsonl)" >&2
        return 1
    fi
    echo "gpu-check: all checks passed; results in $out"
}

case "$mode" in
    prepare)
        prepare
        echo 'on the GPU machine: run(command="bash scripts/gpu-check.sh run", carry=["target/gpu-check"], timeout_s=540)'
        ;;
    run)
        [[ -x "$kit/clip-gpu-d" ]] || { echo "error: no $kit/clip-gpu-d; run scripts/gpu-check.sh prepare first" >&2; exit 1; }
        run_checks "${CLIP_GPU_CHECK_DEVICE:-cuda}" "${GPU_PYTHON:-/opt/torch/.venv/bin/python}" full 20 256 1024
        ;;
    --cpu-dry-run)
        prepare
        OUT="${OUT:-$kit/results-cpu}" run_checks cpu "${CAH_TORCH_PYTHON:-$repo_root/.venv/bin/python}" tiny 2 4 8
        ;;
    *)
        echo "usage: $0 prepare | run | --cpu-dry-run" >&2
        exit 2
        ;;
esac
