"""Hugging Face CLIP tower throughput, the baseline of scripts/gpu-check.sh.

Usage: python hf_bench.py --model DIR --device cuda --dtype f16 --batch-sizes 256 1024 --out FILE.json
Median of --iterations timed calls after --warmup calls (CUDA events on CUDA), image tower
from uint8 HWC pixels normalised on the device (as clip-gpu-d does), text tower on 77 tokens,
attention "sdpa" (the transformers default). Peak memory is torch.cuda.max_memory_allocated.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import CLIPModel

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def timed(device, call, warmup, iterations):
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(iterations):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            seconds.append(start.elapsed_time(end) / 1000.0)
        else:
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="f16", choices=sorted(DTYPES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    model = CLIPModel.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa").eval().to(device)
    side = model.config.vision_config.image_size
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    reports = []
    for batch in args.batch_sizes:
        pixels = torch.randint(0, 256, (batch, side, side, 3), dtype=torch.uint8)
        tokens = torch.randint(1, 49405, (batch, 77))
        tokens[:, 0], tokens[:, 40] = 49406, 49407

        def images():
            x = pixels.to(device).permute(0, 3, 1, 2).float().div(255.0).sub(mean).div(std).to(dtype)
            return model.visual_projection(model.vision_model(pixel_values=x).pooler_output).float().cpu()

        def texts():
            return model.text_projection(model.text_model(input_ids=tokens.to(device)).pooler_output).float().cpu()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        image_seconds = timed(device, images, args.warmup, args.iterations)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        text_seconds = timed(device, texts, args.warmup, args.iterations)
        reports.append({
            "implementation": "transformers-sdpa", "device": args.device, "dtype": args.dtype, "batch_size": batch,
            "image_per_second": batch / image_seconds, "text_per_second": batch / text_seconds,
            "image_peak_allocated_bytes": peak,
        })
        print(json.dumps(reports[-1]))
    with open(args.out, "w") as handle:
        json.dump(reports, handle, indent=2)


if __name__ == "__main__":
    main()
