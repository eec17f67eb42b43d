"""cc2dataset's own WAT extraction, unmodified, as a benchmark peer of scraper-d (scripts/bench-wat.sh).

Runs `cc2dataset.main.process_wat(path, "image")` from the PyPI release (cc2dataset 1.5.0): the
per-WAT function its Spark job maps over the WAT list (the file read into memory, fastwarc,
simdjson, link dicts, urljoin, md5 uid). The module imports pyspark at the top for its driver
code; pyspark (a 300 MB sdist that needs Java to run) is replaced by empty stand-in modules
because `process_wat` never touches it. scripts/cc2dataset_wat.py is a leaner re-implementation
of the same method.

Usage: python3 cc2dataset_own.py FILE
Prints one JSON object: candidates, seconds.
"""

import json
import sys
import time
import types


def stub_pyspark():
    for name in ["pyspark", "pyspark.sql", "pyspark.sql.functions"]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules["pyspark"].SparkContext = None
    sys.modules["pyspark.sql"].SparkSession = None
    sys.modules["pyspark.sql.functions"].rand = None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[-3])
    started = time.perf_counter()
    stub_pyspark()
    from cc2dataset.main import process_wat  # noqa: E402 (after the stand-ins)

    candidates = sum(1 for _ in process_wat(sys.argv[1], "image"))
    seconds = time.perf_counter() - started
    json.dump({"candidates": candidates, "seconds": seconds}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
