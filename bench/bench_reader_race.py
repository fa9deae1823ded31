"""How often a threaded cache fill stacks a case with too few channels: MONAI's ``NibabelReader`` against
`pipeline.data.reader.NiftiReader` (docs/recipe.md, "A case cached with one channel").

    python bench/bench_reader_race.py DATASET [--rounds 40] [--threads 2]

Each round fills a MONAI ``CacheDataset`` with the cases of ``DATASET`` (any layout the pipeline reads), loading
only (``LoadImaged`` as common.yaml builds it: image and label, channel first), with ``--threads`` threads, once
per reader; a round counts as bad when any cached image has fewer channels than the description's. Prints the
machine and, per reader, the bad rounds and images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from monai.data import CacheDataset
    from monai.transforms import Compose, LoadImaged

    from pipeline.data.datalist import build_datalist
    from pipeline.data.reader import NiftiReader

    datalist = build_datalist(args.dataset, folds=2)
    items = [{k: it[k] for k in ("case", "image", "label")} for it in datalist["training"]]
    channels = len(items[0]["image"])
    print(machine("cpu"), flush=True)
    print(f"{len(items)} cases of {args.dataset}, {channels} files each, {args.threads} caching threads, "
          f"{args.rounds} rounds per reader", flush=True)
    for name, make in (("MONAI NibabelReader", lambda: None), ("NiftiReader", NiftiReader)):
        bad_rounds, bad_images, start = 0, 0, time.perf_counter()
        for _ in range(args.rounds):
            load = LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True, reader=make())
            dataset = CacheDataset(items, Compose([load]), num_workers=args.threads, progress=False)
            bad = sum(int(item["image"].shape[0]) != channels for item in dataset._cache)  # noqa: SLF001
            bad_rounds, bad_images = bad_rounds + (bad > 0), bad_images + bad
        print(f"{name}: {bad_rounds} of {args.rounds} fills with a short image ({bad_images} of "
              f"{args.rounds * len(items)} images), {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
