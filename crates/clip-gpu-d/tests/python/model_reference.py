"""Hugging Face `CLIPModel` reference embeddings (fp32, CPU) for the parity tests.

Usage:
  python model_reference.py --model DIR --pixels P.npy --tokens T.npy --out PREFIX
      inputs prepared by the Rust side: P float32 [n, side*side*3] holding u8 RGB values
      (HWC order), T float32 [n, 77] holding token ids
  python model_reference.py --model DIR --images F... --texts-file F --out PREFIX
      end to end with OpenAI's own `_transform` and `clip.tokenize(truncate=True)`
--device cuda runs the reference on the GPU (fp32; TF32 stays off, PyTorch's default).
Writes PREFIX.img_emb.npy, PREFIX.text_emb.npy (L2-normalised) and PREFIX.similarity.npy.
"""

import argparse

import numpy as np
import torch
from transformers import CLIPModel

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--pixels")
    parser.add_argument("--tokens")
    parser.add_argument("--images", nargs="*")
    parser.add_argument("--texts-file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    model = CLIPModel.from_pretrained(args.model, torch_dtype=torch.float32).eval().to(device)
    side = model.config.vision_config.image_size
    if args.images:
        import clip
        from PIL import Image

        transform = clip.clip._transform(side)
        pixels = torch.stack([transform(Image.open(path)) for path in args.images])
        with open(args.texts_file, encoding="utf-8") as handle:
            texts = handle.read().splitlines()
        tokens = clip.tokenize(texts, truncate=True)
    else:
        raw = torch.from_numpy(np.load(args.pixels)).view(-1, side, side, 3)
        pixels = ((raw.permute(0, 3, 1, 2) / 255.0) - MEAN) / STD
        tokens = torch.from_numpy(np.load(args.tokens)).to(torch.int64)
    pixels, tokens = pixels.to(device), tokens.to(device)
    image_features = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).float().cpu()
    text_features = model.text_projection(model.text_model(input_ids=tokens).pooler_output).float().cpu()
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    np.save(args.out + ".img_emb.npy", image_features.numpy().astype(np.float32))
    np.save(args.out + ".text_emb.npy", text_features.numpy().astype(np.float32))
    np.save(args.out + ".similarity.npy", (image_features @ text_features.T).numpy().astype(np.float32))


if __name__ == "__main__":
    main()
