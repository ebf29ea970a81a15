"""How long the up-front checks of a data set take: reading and validating every transitions file, and checking
every distinct image (the full decode of ``verify_images`` where this tree has it, and always the header read
``PIL.Image.open(path).size``, the least any image check can cost).

    python benchmarks/validation_time.py /data/phantom_150k --image_size 224

Prints one JSON line. Run it twice to see the cold (first) and warm (page cache) figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.data.records import read_records
from cardiac_dreamer.runtime.threads import usable_cpus


def header_size(path):
    with Image.open(path) as image:
        return image.size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--full_decode", action="store_true", help="also time verify_images (decodes every image)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    records = read_records(args.data_dir)
    result = {"pairs": len(records), "read_records_s": time.perf_counter() - started}
    paths = list(dict.fromkeys(path for record in records for path in (record.image_t1, record.image_t2)))
    threads = min(8, usable_cpus())
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sizes = set(pool.map(header_size, paths))
    result.update(images=len(paths), threads=threads, header_check_s=time.perf_counter() - started,
                  image_sizes=sorted(sizes))
    if args.full_decode:
        try:
            from cardiac_dreamer.data.image_check import verify_images
        except ImportError:
            result["verify_images_s"] = "not in this tree"
        else:
            started = time.perf_counter()
            verify_images(records, args.image_size)
            result["verify_images_s"] = time.perf_counter() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
