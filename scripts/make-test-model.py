#!/usr/bin/env python3
"""Builds a random-weight CLIP checkpoint in the Hugging Face `openai/clip-vit-base-patch32`
layout (config.json, model.safetensors, tokenizer.json and friends) on the CPU, without the hub.

The tokenizer files come from OpenAI's real BPE vocabulary (`bpe_simple_vocab_16e6.txt.gz`,
shipped in the open-clip-torch wheel): vocab and merges are derived exactly as OpenAI's
`SimpleTokenizer` does, then handed to transformers' `CLIPTokenizer` and saved.

Every parameter gets extra random noise after transformers' init, so biases and LayerNorm
parameters are not zero or one and a loader that mixes them up fails the parity tests.

Usage: .venv/bin/python scripts/make-test-model.py --out DIR [--full] [--seed N] [--tokenizer-from DIR]
  default   tiny: hidden 32, 2 layers, 4 heads, patch 32, image 224, the real 49,408 vocab
  --full    the ViT-B/32 shapes (151 M parameters, ~605 MB), for benchmarks
Writes into DIR.tmp-PID and renames it to DIR, so a half-written DIR never exists.
"""

import argparse
import gzip
import importlib.resources
import json
import os
import shutil
import sys

RECIPE_VERSION = 1


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def openai_vocab_and_merges():
    """The vocabulary and merges of OpenAI's `SimpleTokenizer.__init__`."""
    path = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(str(path)).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(merge) for merge in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    assert len(vocab) == 49408, len(vocab)
    return {token: index for index, token in enumerate(vocab)}, merges


def save_tokenizer(out_dir):
    from transformers import CLIPTokenizer

    encoder, merges = openai_vocab_and_merges()
    # transformers 5 takes the vocabulary and merges directly (vocab_file= is ignored there).
    tokenizer = CLIPTokenizer(vocab=encoder, merges=[tuple(merge) for merge in merges])
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    assert len(saved["model"]["vocab"]) == 49408, "tokenizer.json lost vocabulary entries"
    assert saved["model"]["vocab"]["<|endoftext|>"] == 49407
    assert len(saved["model"]["merges"]) == len(merges), "tokenizer.json lost merges"


def config_dict(full):
    if full:
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        projection_dim = 512
    else:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        projection_dim = 24
    # eos_token_id 2 is what the released ViT-B/32 config says (pooling at argmax of the ids).
    text.update(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2, bos_token_id=0, pad_token_id=1)
    vision.update(image_size=224, patch_size=32, num_channels=3, hidden_act="quick_gelu")
    return dict(text_config=text, vision_config=vision, projection_dim=projection_dim)


def save_model(out_dir, full, seed):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    settings = config_dict(full)
    config = CLIPConfig(text_config=settings["text_config"], vision_config=settings["vision_config"], projection_dim=settings["projection_dim"])
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
        model.logit_scale.fill_(4.6052)
    model.save_pretrained(out_dir, safe_serialization=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--tokenizer-from", help="copy tokenizer files from this checkpoint (no open-clip-torch needed)")
    args = parser.parse_args()
    out_dir = os.path.abspath(args.out)
    stamp = {"recipe_version": RECIPE_VERSION, "full": args.full, "seed": args.seed}
    stamp_path = os.path.join(out_dir, "cah-test-model.json")
    if os.path.exists(stamp_path):
        with open(stamp_path) as handle:
            if json.load(handle) == stamp:
                print(f"test model already in {out_dir}")
                return 0
        shutil.rmtree(out_dir)
    scratch = f"{out_dir}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    save_model(scratch, args.full, args.seed)
    if args.tokenizer_from:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
            source = os.path.join(args.tokenizer_from, name)
            if os.path.exists(source):
                shutil.copy(source, scratch)
    else:
        save_tokenizer(scratch)
    with open(os.path.join(scratch, "cah-test-model.json"), "w") as handle:
        json.dump(stamp, handle)
    try:
        os.rename(scratch, out_dir)
    except OSError:
        # Another process finished the same model first.
        shutil.rmtree(scratch, ignore_errors=True)
        if not os.path.exists(stamp_path):
            raise
    print(f"test model written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
