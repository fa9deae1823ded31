"""How bright each case's oedema is against the rest of its brain, per contrast (z-scored inside the brain):

    python bench/oedema_contrast.py data/real [--normalisation zscore|iqr|percentile] [--statistic mean|median]

For every case folder of a BraTS 2018-2021 dataset (``<case>_{flair,t2,t1ce,t1,seg}``) prints the mean z-score of
the oedema (label 2) and the 99th percentile of the non-tumour brain, per contrast, and the whole tumour's size.
A case whose FLAIR oedema is no brighter than the brightest normal tissue is one the budget recipe under-segments
(bench/RESULTS.md, "Intensity augmentation drawn per contrast"). ``--normalisation``: the brain's mean and standard
deviation (the recipe's), its median and interquartile range, or its 5th-95th percentiles (what a large tumour moves
less; RESULTS.md, "not the normalisation").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

CONTRASTS = ("flair", "t2", "t1ce", "t1")


#: Brain intensities -> (offset, scale) of each normalisation.
NORMALISATIONS = {
    "zscore": lambda v: (v.mean(), v.std()),
    "iqr": lambda v: (np.median(v), np.subtract(*np.percentile(v, [75, 25]))),
    "percentile": lambda v: (np.percentile(v, 5), np.subtract(*np.percentile(v, [95, 5]))),
}


def case_row(folder: Path, normalisation: str = "zscore", statistic: str = "mean") -> list:
    """``[case, (oedema mean or median, normal 99th percentile) per contrast ..., WT voxels, WT fraction of the
    brain]``, intensities normalised over the brain (``x > 0``) by ``normalisation`` (`NORMALISATIONS`)."""
    def load(suffix: str) -> np.ndarray:
        return np.asarray(nib.load(next(folder.glob(f"*_{suffix}.nii*"))).dataobj)

    seg = load("seg")
    row: list = [folder.name]
    brain = None
    centre = np.mean if statistic == "mean" else np.median
    for contrast in CONTRASTS:
        x = load(contrast).astype(np.float32)
        brain = x > 0 if brain is None else brain
        offset, scale = NORMALISATIONS[normalisation](x[x > 0])
        z = (x - offset) / scale
        row += [float(centre(z[seg == 2])) if (seg == 2).any() else float("nan"),
                float(np.percentile(z[(seg == 0) & (x > 0)], 99))]
    wt = int((seg > 0).sum())
    return [*row, wt, wt / int(brain.sum())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a folder of BraTS 2018-2021 case folders")
    parser.add_argument("--normalisation", choices=list(NORMALISATIONS), default="zscore")
    parser.add_argument("--statistic", choices=["mean", "median"], default="mean", help="of the oedema's intensities")
    args = parser.parse_args(argv)
    header = " ".join(f"{c}_oedema {c}_normal99" for c in CONTRASTS)
    print(f"case {header} wt_voxels wt_fraction")
    for folder in sorted(p for p in Path(args.dataset).iterdir() if p.is_dir()):
        row = case_row(folder, args.normalisation, args.statistic)
        print(row[0], " ".join(f"{v:.2f}" for v in row[1:9]), row[9], f"{row[10]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
