"""Reads clip-gpu-d's dataset output as its consumers do and prints a JSON summary.

webdataset reads the tars, pyarrow the parquet files, numpy the embeddings. Fails (non-zero
exit) when a shard is inconsistent: counts, keys, columns or shapes that do not line up.
Usage: check_dataset.py OUTPUT_DIR
"""

import glob
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds

COLUMNS = [
    "key", "sample_id", "hash", "job", "url", "caption", "page_url", "license", "language",
    "width", "height", "original_width", "original_height", "similarity", "NSFW", "sha256",
]


def main(out):
    stats_files = sorted(glob.glob(os.path.join(out, "*_stats.json")))
    shards = []
    all_keys, all_ids = [], []
    for stats_path in stats_files:
        shard = os.path.basename(stats_path)[: -len("_stats.json")]
        stats = json.load(open(stats_path))
        table = pq.read_table(os.path.join(out, shard + ".parquet"))
        assert table.column_names == COLUMNS, table.column_names
        rows = table.to_pylist()
        img = np.load(os.path.join(out, "img_emb", f"img_emb_{shard}.npy"))
        txt = np.load(os.path.join(out, "text_emb", f"text_emb_{shard}.npy"))
        assert img.shape == txt.shape and img.shape[0] == len(rows), (img.shape, txt.shape, len(rows))
        assert img.dtype == np.float32, img.dtype
        norms = np.linalg.norm(img, axis=1)
        assert np.allclose(norms, 1.0, atol=1e-3), norms
        sims = (img * txt).sum(axis=1)
        got = np.array([row["similarity"] for row in rows], dtype=np.float32)
        assert np.allclose(sims, got, atol=1e-4), (sims, got)
        dataset = wds.WebDataset(os.path.join(out, shard + ".tar"), shardshuffle=False, empty_check=False)
        samples = list(dataset)
        assert len(samples) == len(rows) == stats["count"], (len(samples), len(rows), stats["count"])
        for sample, row in zip(samples, rows):
            assert sample["__key__"] == row["key"], (sample["__key__"], row["key"])
            image_keys = [k for k in ("jpg", "png", "webp") if k in sample]
            assert len(image_keys) == 1, sample.keys()
            assert sample["txt"].decode() == row["caption"]
            meta = json.loads(sample["json"])
            assert meta["sample_id"] == row["sample_id"] and meta["url"] == row["url"], meta
            assert row["NSFW"] in ("UNLIKELY", "UNSURE", "NSFW", "UNTAGGED"), row["NSFW"]
        all_keys += [row["key"] for row in rows]
        all_ids += [row["sample_id"] for row in rows]
        shards.append({"shard": shard, "rows": len(rows), "dim": int(img.shape[1])})
    leftovers = [p for p in glob.glob(os.path.join(out, "**", "*.tmp"), recursive=True)]
    print(json.dumps({
        "shards": shards,
        "rows": len(all_keys),
        "unique_keys": len(set(all_keys)),
        "sample_ids": sorted(all_ids),
        "leftover_tmp": leftovers,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
