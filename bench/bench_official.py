"""Seconds per case of both evaluation protocols on BraTS-size synthetic cases (legacy vs official).

Usage::

    python bench/bench_official.py [--cases 2] [--shape 240 240 155] [--jobs 1] [--tiny] [--work DIR]

Writes ``--cases`` synthetic cases (:func:`pipeline.data.synthetic.write_dataset`, BraTS 2021 layout, ET 4) and a
prediction per case (the reference label shifted by 2 voxels along each axis, its first oedema slab removed), then
times, on the same folders, ``pipeline.evaluation.regions.evaluate_folders`` (legacy: MONAI HD95, ET/TC/WT) and
``pipeline.evaluation.official.evaluate_official`` (the BraTS package brats-evaluation, challenge gli: six regions,
lesion-wise). Reading the files is included in both; importing the packages (once per process) is not. Prints
the machine (:func:`bench.timing.machine`), the seconds per case of each protocol and the two tables.
``--tiny`` (48 x 48 x 32, 2 cases) runs in seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import machine  # noqa: E402
from pipeline.data.layouts import discover_cases  # noqa: E402
from pipeline.data.synthetic import write_dataset  # noqa: E402
from pipeline.evaluation.official import evaluate_official, format_official_table, official_evaluator  # noqa: E402
from pipeline.evaluation.regions import evaluate_folders, format_table  # noqa: E402


def write_predictions(data: Path, pred_dir: Path) -> int:
    """A prediction per case of ``data``: its label shifted by 2 voxels per axis, the first ED slab removed."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for case in discover_cases(data):
        image = nib.load(case.label)
        label = np.roll(np.asarray(image.dataobj), (2, 2, 2), axis=(0, 1, 2))
        rows = np.nonzero((label == 2).any(axis=(1, 2)))[0]
        if rows.size:
            label[rows[0]: rows[0] + 3][label[rows[0]: rows[0] + 3] == 2] = 0
        nib.save(nib.Nifti1Image(label, image.affine, image.header), str(pred_dir / f"{case.case_id}.nii.gz"))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), metavar=("X", "Y", "Z"))
    ap.add_argument("--jobs", type=int, default=1, help="worker processes of the official protocol")
    ap.add_argument("--tiny", action="store_true", help="48 x 48 x 32 voxels, 2 cases: a smoke run in seconds")
    ap.add_argument("--work", default=None, help="folder for the data and the outputs (default: a temporary one)")
    args = ap.parse_args(argv)
    shape = (48, 48, 32) if args.tiny else tuple(args.shape)
    cases = 2 if args.tiny else args.cases
    warnings.filterwarnings("ignore", message="The threshold is set to 0.5")  # the package's global NSD

    print(machine("cpu"))
    with tempfile.TemporaryDirectory(prefix="bench-official-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        data, preds = work / "BraTS2021", work / "pred"
        t0 = time.perf_counter()
        write_dataset(data, cases=cases, shape=shape, seed=0)
        write_predictions(data, preds)
        print(f"{cases} synthetic case(s) of {shape} voxels written in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        official_evaluator("gli")  # import brats-evaluation and panoptica, load the config: once per process
        print(f"import of brats-evaluation + panoptica and config load: {time.perf_counter() - t0:.1f} s (not timed "
              "below)")
        t0 = time.perf_counter()
        legacy = evaluate_folders(preds, data, work / "legacy", scheme="brats")
        t_legacy = (time.perf_counter() - t0) / cases
        t0 = time.perf_counter()
        official = evaluate_official(preds, data, work / "official", scheme="brats", jobs=args.jobs)
        t_official = (time.perf_counter() - t0) / cases

        print(format_table(legacy))
        print(format_official_table(official))
        print(f"legacy   (evaluate_folders, ET/TC/WT, MONAI HD95):        {t_legacy:7.2f} s per case")
        print(f"official (brats-evaluation gli, 6 regions, jobs {args.jobs}):        {t_official:7.2f} s per case")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
