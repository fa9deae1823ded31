"""How bright each case's oedema is against the rest of its brain, per contrast (z-scored inside the brain):

    python bench/oedema_contrast.py data/real

For every case folder of a BraTS 2018-2021 dataset (``<case>_{flair,t2,t1ce,t1,seg}``) prints the mean z-score of
the oedema (label 2) and the 99th percentile of the non-tumour brain, per contrast, and the whole tumour's size.
A case whose FLAIR oedema is no brighter than the brightest normal tissue is one the budget recipe under-segments
(bench/RESULTS.md, "Intensity augmentation drawn per contrast").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

CONTRASTS = ("flair", "t2", "t1ce", "t1")


def case_row(folder: Path) -> list:
    """``[case, (oedema mean, normal 99th percentile) per contrast ..., WT voxels, WT fraction of the brain]``."""
    def load(suffix: str) -> np.ndarray:
        return np.asarray(nib.load(next(folder.glob(f"*_{suffix}.nii*"))).dataobj)

    seg = load("seg")
    row: list = [folder.name]
    brain = None
    for contrast in CONTRASTS:
        x = load(contrast).astype(np.float32)
        brain = x > 0 if brain is None else brain
        inside = x[x > 0]
        z = (x - inside.mean()) / inside.std()
        row += [float(z[seg == 2].mean()) if (seg == 2).any() else float("nan"),
                float(np.percentile(z[(seg == 0) & (x > 0)], 99))]
    wt = int((seg > 0).sum())
    return [*row, wt, wt / int(brain.sum())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a folder of BraTS 2018-2021 case folders")
    args = parser.parse_args(argv)
    header = " ".join(f"{c}_oedema {c}_normal99" for c in CONTRASTS)
    print(f"case {header} wt_voxels wt_fraction")
    for folder in sorted(p for p in Path(args.dataset).iterdir() if p.is_dir()):
        row = case_row(folder)
        print(row[0], " ".join(f"{v:.2f}" for v in row[1:9]), row[9], f"{row[10]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
