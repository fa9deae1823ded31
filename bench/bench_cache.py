"""Preprocessing cache and data check, per case: first load (gzip decoded) against second load (the cache).

    python bench/bench_cache.py [--cases 6] [--shape 240 240 155] [--layout brats2021] [--label-scheme auto]
                                 [--jobs 2] [--data DIR]

Writes ``--cases`` synthetic cases (BraTS size by default; not timed) unless ``--data`` names an existing
dataset, then times, per case, with the training preprocessing of the bundle (``train.yaml``'s
``preprocessing``: load, channels, regions, orientation, crop, pad, crop centres, normalisation):

- ``no cache``: MONAI ``Dataset``, what every epoch costs without a cache (decode every gzip, preprocess);
- ``first``: ``PersistentDataset`` with an empty ``cache_dir`` (decode, preprocess, write the ``.pt``);
- ``second``: a new ``PersistentDataset`` on the same folder, as a second run sees it (read the ``.pt``);
- ``check``: ``pipeline.data.check.check_case`` (headers, then every file's voxels once), and the whole dataset
  with ``--jobs`` processes, extrapolated to the 1,251 cases of BraTS 2021.

Prints the machine, the median and range of each, and the cache size per case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402
from pipeline.data.synthetic import SUPPORTED_LAYOUTS  # noqa: E402

BRATS2021_CASES = 1251


def _times(fn, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155])
    parser.add_argument("--layout", default="brats2021", choices=SUPPORTED_LAYOUTS,
                        help="the synthetic cases' layout (not with --data: that folder's own is detected)")
    parser.add_argument("--label-scheme", default="auto",
                        help="auto (the layout's); brats2024 for --layout brats2024's resection cavity")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", default=None, help="an existing dataset folder (default: synthetic, temporary)")
    args = parser.parse_args(argv)

    from monai.bundle import ConfigParser
    from monai.data import Dataset
    from monai.transforms import Compose

    from pipeline.bundle import config_files
    from pipeline.data.check import check_case, check_dataset
    from pipeline.data.labels import scheme_name
    from pipeline.data.layouts import scan_dataset
    from pipeline.data.synthetic import write_dataset
    from pipeline.training.cache import cached_dataset

    work = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        if args.data:
            root = Path(args.data)
        else:
            root = work / "data"
            t = time.perf_counter()
            write_dataset(root, cases=args.cases, shape=tuple(args.shape), seed=0, layout=args.layout)
            print(f"wrote {args.cases} synthetic {args.layout} case(s) of {tuple(args.shape)} in "
                  f"{time.perf_counter() - t:.0f} s (not timed below)")
        scan = scan_dataset(root)  # the layout and label scheme of the folder, as the data check reads them
        cases = scan.cases[: args.cases]
        scheme = scan.layout.label_scheme if args.label_scheme == "auto" else scheme_name(args.label_scheme)
        items = [c.to_item() for c in cases]
        n = len(items)

        cfg = ConfigParser()
        cfg.read_config(config_files("training"))  # the bundle's own order (pipeline.bundle)
        cfg.update({"dataset_dir": str(root), "label_scheme": scheme, "device": "cpu", "num_workers": 0})
        transform = Compose(cfg.get_parsed_content("preprocessing"))

        plain = Dataset(items, transform)
        no_cache = _times(lambda i: plain[i], n)
        cache = work / "cache"
        first_ds = cached_dataset(items, transform, cache)
        first = _times(lambda i: first_ds[i], n)
        second_ds = cached_dataset(items, transform, cache)
        second = _times(lambda i: second_ds[i], n)
        size = sum(p.stat().st_size for p in cache.glob("*.pt")) / n / 2**20
        check = _times(lambda i: check_case(cases[i], scheme, layout=scan.layout.layout), n)
        t = time.perf_counter()
        report = check_dataset(root, label_scheme=scheme, jobs=args.jobs)
        whole = time.perf_counter() - t

        print(f"machine: {machine()}")
        print(f"dataset: {root} ({n} case(s), layout {scan.layout.layout})")
        print(f"no cache (Dataset, every epoch): {_fmt(no_cache)} per case")
        print(f"first load (PersistentDataset, gzip decoded, .pt written): {_fmt(first)} per case")
        print(f"second load (PersistentDataset, .pt read): {_fmt(second)} per case; "
              f"{statistics.median(first) / statistics.median(second):.1f}x faster; cache {size:.0f} MiB per case")
        print(f"data check, one process: {_fmt(check)} per case")
        print(f"data check of the dataset, --jobs {args.jobs}: {whole:.1f} s for {len(report.cases)} case(s), "
              f"{len(report.problems)} problem(s); about {whole / len(report.cases) * BRATS2021_CASES / 60:.1f} min "
              f"for the {BRATS2021_CASES} cases of BraTS 2021 at this size")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
