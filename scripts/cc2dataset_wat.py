"""cc2dataset's WAT image extraction, as the benchmark peer of scraper-d (scripts/bench-wat.sh).

This follows rom1504/cc2dataset `wat_utils.py` (HEAD 28f4883; reference peers-and-limits.md
section 2.2): fastwarc's ArchiveIterator over metadata records without HTTP parsing, the whole
file read into memory first (`BytesIO(f.read())`), simdjson (or orjson) for the JSON, links with
`path == "IMG@/src"` and a non-empty alt, uid = md5(alt + url). To do the same work as scraper-d
it also keeps only `response` records, resolves relative URLs with `urljoin` against
`Head.Base` (itself joined to the page URL) or the page URL, and keeps http(s) only, as
cc2dataset's `main.py` does.

Usage: python3 cc2dataset_wat.py FILE [--json simdjson|orjson] [--stream]
Prints one JSON object: records, candidates, seconds.
"""

import argparse
import hashlib
import json
import sys
import time
from io import BytesIO
from urllib.parse import urljoin

from fastwarc.warc import ArchiveIterator, WarcRecordType


def make_loader(kind):
    if kind == "orjson":
        import orjson

        return orjson.loads
    import simdjson

    # cc2dataset calls simdjson.load(record.reader): a full parse into Python objects.
    return simdjson.loads


def extract(stream, loads):
    n_records = 0
    candidates = []
    for record in ArchiveIterator(stream, record_types=WarcRecordType.metadata, parse_http=False):
        n_records += 1
        try:
            data = loads(record.reader.read())
        except Exception:  # cc2dataset: "A shard record failed"
            continue
        try:
            envelope = data["Envelope"]
            if envelope["WARC-Header-Metadata"]["WARC-Type"] != "response":
                continue
            payload = envelope["Payload-Metadata"]
            if "HTTP-Response-Metadata" not in payload:
                continue
            http_resp = payload["HTTP-Response-Metadata"]
            if "HTML-Metadata" not in http_resp:
                continue
            metadata = http_resp["HTML-Metadata"]
            if "Links" not in metadata:
                continue
            base = envelope["WARC-Header-Metadata"]["WARC-Target-URI"]
            page_url = base
            head = metadata.get("Head")
            if head is not None and "Base" in head:
                try:
                    base = urljoin(base, head["Base"])
                except ValueError:
                    pass
            for link in metadata["Links"]:
                if link.get("path", "") != "IMG@/src":
                    continue
                alt = link.get("alt", "")
                if len(alt) == 0:
                    continue
                url = link.get("url", "")
                if not url.startswith("http"):
                    try:
                        url = urljoin(base, url)
                    except ValueError:
                        continue
                if not url.startswith(("http://", "https://")):
                    continue
                uid = hashlib.md5((alt + url).encode()).hexdigest()
                candidates.append((uid, url, alt, page_url))
        except (KeyError, TypeError):
            continue
    return n_records, candidates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--json", choices=["simdjson", "orjson"], default="simdjson")
    parser.add_argument("--stream", action="store_true", help="stream the file instead of reading it into memory first")
    args = parser.parse_args()
    loads = make_loader(args.json)
    started = time.perf_counter()
    with open(args.file, "rb") as f:
        stream = f if args.stream else BytesIO(f.read())
        n_records, candidates = extract(stream, loads)
    seconds = time.perf_counter() - started
    json.dump({"records": n_records, "candidates": len(candidates), "seconds": seconds}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
