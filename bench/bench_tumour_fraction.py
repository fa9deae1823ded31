"""The whole-tumour component threshold (``--min_tumour_fraction``) chosen on segmentations already written.

    python bench/bench_tumour_fraction.py runs/accA45/seg_final runs/accB45/seg_final \
        --reference data/real --out runs/tumour_fraction [--fractions 0 0.1 0.2 0.3 0.5 1]

nnU-Net chooses its post-processing on the out-of-fold predictions of its training cases; this does the same for
our tumour-component rule without running a network again: each ``<case>.nii.gz`` of each folder (labels in the
numbering of the reference dataset's layout, ``(H, W, D)``) is turned into its regions,
`pipeline.inference.postprocessing.KeepMainTumourd` drops the whole-tumour components under each fraction of the
largest (the transform inference runs), the labels are written to ``OUT/<fraction>/<folder>/`` and scored by
`pipeline.evaluation.regions.evaluate_folders` (legacy protocol) against ``--reference``, a dataset folder. A
fraction below the one the folders were written with gives the same as that one (a component already dropped stays
dropped). Prints the machine and a Markdown table: mean Dice and HD95 per region over every segmentation, and the
cases that change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import nibabel as nib
    import numpy as np
    import torch

    from pipeline.core.files import column_numbers, read_table
    from pipeline.data.labels import describe, labels_to_regions, regions_to_labels
    from pipeline.evaluation.reference import read_reference
    from pipeline.evaluation.regions import METRICS_TABLE, evaluate_folders
    from pipeline.inference.postprocessing import KeepMainTumourd
    from pipeline.inference.predict import write_label_like

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="segmentation folders (<case>.nii.gz, in the reference's numbering)")
    p.add_argument("--reference", required=True, help="the labelled cases: a dataset folder (any layout)")
    p.add_argument("--out", required=True, help="where the re-thresholded segmentations and their scores go")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 1.0])
    args = p.parse_args(argv)
    print(machine("cpu"), flush=True)

    out = Path(args.out).resolve()
    reference = read_reference(args.reference)  # its layout's scheme numbers the segmentations too
    if reference.layout is None:
        raise SystemExit(f"bench_tumour_fraction: --reference {args.reference} is not a dataset folder")
    scheme = reference.layout.label_scheme
    desc = describe(scheme)
    scores: dict[float, dict[tuple[str, str], dict[str, float]]] = {}  # fraction -> (folder/case, region) -> metrics
    for fraction in args.fractions:
        keep = KeepMainTumourd("pred", fraction=fraction, description=desc)
        for i, folder in enumerate(map(Path, args.folders)):
            name = f"{i}_{folder.name}"
            target, eval_dir = out / f"{fraction:g}" / name, out / f"{fraction:g}" / f"eval_{name}"
            target.mkdir(parents=True, exist_ok=True)
            cases = sorted(f.name[: -len(".nii.gz")] for f in folder.glob("*.nii.gz"))
            for case in cases:
                labels = np.asarray(nib.load(folder / f"{case}.nii.gz").dataobj).astype(np.uint8)
                regions = keep({"pred": torch.as_tensor(labels_to_regions(labels, scheme)), "case": case})["pred"]
                write_label_like(regions_to_labels(regions.numpy(), scheme), folder / f"{case}.nii.gz",
                                 target / f"{case}.nii.gz", case=case)
            evaluate_folders(target, args.reference, eval_dir, scheme, cases=cases)
            rows = read_table(eval_dir / "metrics.csv", ("case", "region", "dice", "hd95"), METRICS_TABLE)
            numbers = {k: column_numbers(rows, k, eval_dir / "metrics.csv") for k in ("dice", "hd95")}
            for i, r in enumerate(rows):
                scores.setdefault(fraction, {})[(f"{folder}/{r['case']}", r["region"])] = {
                    k: numbers[k][i] for k in numbers}

    def mean(fraction: float, region: str, metric: str) -> float:
        return float(np.mean([v[metric] for (_, r), v in scores[fraction].items() if r == region]))

    def case_mean(fraction: float, case: str) -> float:
        return float(np.mean([v["dice"] for (c, _), v in scores[fraction].items() if c == case]))

    cases = sorted({c for c, _ in scores[args.fractions[0]]})
    print(f"\n{len(cases)} segmentations")
    evaluated = list(desc.evaluated)
    print("| dropped under ... of the largest | " + " | ".join(f"Dice {r}" for r in evaluated)
          + f" | mean Dice | HD95 {' / '.join(evaluated)} (mm) |")
    print("| --- " * (len(evaluated) + 3) + "|")
    for fraction in args.fractions:
        dice = [mean(fraction, r, "dice") for r in evaluated]
        hd95 = [mean(fraction, r, "hd95") for r in evaluated]
        print(f"| {fraction:g} | " + " | ".join(f"{d:.4f}" for d in dice) + f" | {np.mean(dice):.4f} | "
              + " / ".join(f"{h:.1f}" for h in hd95) + " |")
    print("\ncases that change (mean Dice over the regions, per fraction):")
    for case in cases:
        values = [case_mean(f, case) for f in args.fractions]
        if max(values) - min(values) > 1e-9:
            print(f"  {case}: " + ", ".join(f"{f:g}: {v:.3f}" for f, v in zip(args.fractions, values, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
