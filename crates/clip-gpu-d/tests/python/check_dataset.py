"""Reads clip-gpu-d's dataset output as its consumers do and prints a JSON summary.

webdataset reads the tars, pyarrow the parquet files, numpy the embeddings, and the `tfrecord`
package the optional NNNNN.tfrecord files. Fails (non-zero exit) when a shard is inconsistent:
counts, keys, columns or shapes that do not line up, embeddings whose dtype is not the one
`_stats.json` names (float32 or float16), that are not unit vectors or whose cosines are not the
parquet's similarity (within 1e-4 for float32, 2e-3 for float16, whose rounding moves a unit
vector's cosines by up to about 1e-3), or a TFRecord frame whose length or masked CRC32C is wrong. How the TFRecord records compare with the parquet, the npy and the tar is
reported (tfrecord_keys, tfrecord_max_embedding_diff, tfrecord_mismatches) for the caller to judge.
Usage: check_dataset.py OUTPUT_DIR
"""

import glob
import json
import os
import struct
import sys

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds

COLUMNS = [
    "key", "sample_id", "hash", "job", "url", "caption", "page_url", "license", "language",
    "width", "height", "original_width", "original_height", "similarity", "NSFW", "sha256",
]


def masked_crc(data):
    import crc32c  # A dependency of tfrecord; only needed for datasets with TFRecord files.

    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def check_framing(path):
    """Counts the records of a TFRecord file, checking each length and masked CRC32C.

    The `tfrecord` package's reader skips the checksums, so they are checked here.
    """
    data = open(path, "rb").read()
    offset = count = 0
    while offset < len(data):
        length_bytes = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        assert length_crc == masked_crc(length_bytes), (path, count, "length crc")
        record = data[offset + 12 : offset + 12 + length]
        assert len(record) == length, (path, count, "short record")
        (data_crc,) = struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])
        assert data_crc == masked_crc(record), (path, count, "data crc")
        offset += 16 + length
        count += 1
    return count


def compare_tfrecord(path, rows, samples, img, txt):
    """Reads every record with `tfrecord` and compares it with the shard's other files."""
    from tfrecord.reader import tfrecord_loader

    records = list(tfrecord_loader(path, None))
    assert len(records) == check_framing(path), path
    mismatches = []
    max_diff = 0.0
    for index, (record, row, sample) in enumerate(zip(records, rows, samples)):
        image_format = record["image_format"].decode()
        expected = {
            "key": row["key"].encode(),
            "caption": row["caption"].encode(),
            "url": row["url"].encode(),
            "nsfw": row["NSFW"].encode(),
            "image": sample.get(image_format),
        }
        for name, value in expected.items():
            if bytes(record[name]) != value:
                mismatches.append(f"{row['key']}: {name}")
        for name in ("sample_id", "width", "height"):
            if record[name].tolist() != [row[name]]:
                mismatches.append(f"{row['key']}: {name}")
        if record["similarity"].tolist() != [np.float32(row["similarity"])]:
            mismatches.append(f"{row['key']}: similarity")
        for name, matrix in (("image_embedding", img), ("text_embedding", txt)):
            values = record[name]
            if values.shape != matrix[index].shape:
                mismatches.append(f"{row['key']}: {name} shape")
            else:
                max_diff = max(max_diff, float(np.abs(values - matrix[index]).max()))
    return [record["key"].decode() for record in records], max_diff, mismatches


def main(out):
    stats_files = sorted(glob.glob(os.path.join(out, "*_stats.json")))
    shards = []
    all_keys, all_ids, all_urls = [], [], []
    tfrecord_shards, tfrecord_keys, tfrecord_mismatches = 0, [], []
    tfrecord_max_diff = 0.0
    for stats_path in stats_files:
        shard = os.path.basename(stats_path)[: -len("_stats.json")]
        stats = json.load(open(stats_path))
        table = pq.read_table(os.path.join(out, shard + ".parquet"))
        assert table.column_names == COLUMNS, table.column_names
        rows = table.to_pylist()
        img = np.load(os.path.join(out, "img_emb", f"img_emb_{shard}.npy"))
        txt = np.load(os.path.join(out, "text_emb", f"text_emb_{shard}.npy"))
        assert img.shape == txt.shape and img.shape[0] == len(rows), (img.shape, txt.shape, len(rows))
        dtype = stats["embedding_dtype"]
        assert dtype in ("float32", "float16"), dtype
        assert img.dtype == np.dtype(dtype) and txt.dtype == np.dtype(dtype), (img.dtype, txt.dtype, dtype)
        norm_tolerance, similarity_tolerance = (2e-3, 2e-3) if dtype == "float16" else (1e-3, 1e-4)
        img32, txt32 = img.astype(np.float32), txt.astype(np.float32)
        norms = np.linalg.norm(img32, axis=1)
        assert np.allclose(norms, 1.0, atol=norm_tolerance), norms
        sims = (img32 * txt32).sum(axis=1)
        got = np.array([row["similarity"] for row in rows], dtype=np.float32)
        assert np.allclose(sims, got, atol=similarity_tolerance), (sims, got)
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
        tfrecord_path = os.path.join(out, shard + ".tfrecord")
        if os.path.exists(tfrecord_path):
            keys, max_diff, mismatches = compare_tfrecord(tfrecord_path, rows, samples, img32, txt32)
            tfrecord_shards += 1
            tfrecord_keys += keys
            tfrecord_max_diff = max(tfrecord_max_diff, max_diff)
            tfrecord_mismatches += mismatches
        all_keys += [row["key"] for row in rows]
        all_ids += [row["sample_id"] for row in rows]
        all_urls += [row["url"] for row in rows]
        shards.append({"shard": shard, "rows": len(rows), "dim": int(img.shape[1]), "dtype": dtype})
    leftovers = [p for p in glob.glob(os.path.join(out, "**", "*.tmp"), recursive=True)]
    print(json.dumps({
        "shards": shards,
        "rows": len(all_keys),
        "keys": all_keys,
        "unique_keys": len(set(all_keys)),
        "sample_ids": sorted(all_ids),
        "urls": sorted(all_urls),
        "leftover_tmp": leftovers,
        "tfrecord_shards": tfrecord_shards,
        "tfrecord_keys": tfrecord_keys,
        "tfrecord_max_embedding_diff": tfrecord_max_diff,
        "tfrecord_mismatches": tfrecord_mismatches,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
