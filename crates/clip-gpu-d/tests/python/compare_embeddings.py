"""Compares two sets of clip-gpu-d/`model_reference.py` outputs (PREFIX.{img_emb,text_emb,similarity}.npy).

Usage: python compare_embeddings.py OURS_PREFIX REFERENCE_PREFIX LABEL MAX_ABS MIN_COSINE
Prints one JSON line and exits 1 if max abs error > MAX_ABS or the smallest row cosine < MIN_COSINE.
"""

import json
import sys

import numpy as np


def main():
    ours_prefix, reference_prefix, label = sys.argv[1:4]
    max_abs_limit, min_cosine_limit = float(sys.argv[4]), float(sys.argv[5])
    report = {"check": label}
    ok = True
    for suffix in ("img_emb", "text_emb", "similarity"):
        ours = np.load(f"{ours_prefix}.{suffix}.npy").astype(np.float64)
        reference = np.load(f"{reference_prefix}.{suffix}.npy").astype(np.float64)
        error = float(np.abs(ours - reference).max())
        report[f"{suffix}_max_abs_error"] = error
        if suffix != "similarity":
            cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
            report[f"{suffix}_min_cosine"] = float(cosine.min())
            ok &= float(cosine.min()) >= min_cosine_limit
        ok &= error <= max_abs_limit
    report["ok"] = bool(ok)
    print(json.dumps(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
