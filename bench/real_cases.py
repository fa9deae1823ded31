"""The 30 real BraTS cases of issue #21 and the fixed splits the accuracy benchmark ran on, rebuilt from git clones.

    git clone https://github.com/koriavinash1/BioExp; git clone https://github.com/qwertyhgb/U-Net_3D_BraTS2021
    git clone https://github.com/IAmSuyogJadhav/Brainy
    python bench/real_cases.py BioExp U-Net_3D_BraTS2021 Brainy --out data/real --splits data/splits

Each clone (bare or not) is recognised by the case files it holds; every case is written to
``OUT/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (the BraTS 2018-2021 layout, labels 0/1/2/4), copied byte for
byte from the clone's ``HEAD``. ``--splits DIR`` links ``DIR/<split>/{train,test}/<case>`` to those folders for
each split in `SPLITS`. Nothing is written over: a case folder or split that exists is left as it is and named.
The data never enter the repository (BraTS data terms, size): write them under a git-ignored folder (``data/``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SUFFIXES = ("flair", "t1", "t1ce", "t2", "seg")

# repository -> (folder of the case folders at HEAD, cases)
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "koriavinash1/BioExp": ("sample_vol/brats", tuple(f"Brats18_CBICA_{c}_1" for c in (
        "AMH", "AOP", "AOZ", "APR", "APY", "APZ", "AQO", "AQP", "AQQ", "AQR", "AQT", "ARW", "ARZ", "ASA", "ASE",
        "ASG", "ASV", "ASW", "ASY", "ATB", "ATD", "AVG"))),
    "qwertyhgb/U-Net_3D_BraTS2021": ("data/BraTS2021_Training_Data", tuple(
        f"BraTS2021_{n:05d}" for n in (0, 2, 3, 5, 6, 8))),
    "IAmSuyogJadhav/Brainy": ("samples", ("Brats18_2013_2_1", "Brats18_TCIA05_396_1")),
}
CASES = tuple(c for _, cases in SOURCES.values() for c in cases)

# split -> its 6 test cases (the other 24 train). B is the split of bench/RESULTS.md's split-B rows (2026-12-05).
# Split A's test cases (CBICA_AOP_1, CBICA_ARZ_1 and four others) were not recorded before the machine holding them
# was replaced, so split A's rows cannot be rebuilt exactly; C is a third split, recorded before its first run.
SPLITS: dict[str, tuple[str, ...]] = {
    "B": ("BraTS2021_00006", "Brats18_CBICA_AOP_1", "Brats18_CBICA_APR_1", "Brats18_CBICA_AQQ_1",
          "Brats18_CBICA_AQR_1", "Brats18_CBICA_ASE_1"),
    "C": ("BraTS2021_00002", "Brats18_2013_2_1", "Brats18_CBICA_AMH_1", "Brats18_CBICA_ARZ_1",
          "Brats18_CBICA_ASV_1", "Brats18_CBICA_ATD_1"),
    # D, E and F (2026-12-06, recorded before any of them ran): the 18 cases outside B and C, shuffled with
    # random.Random(21), so that B-F test every one of the 30 cases once (a 5-fold cross-validation of the recipe)
    "D": ("BraTS2021_00000", "BraTS2021_00003", "Brats18_CBICA_AQT_1", "Brats18_CBICA_ASY_1", "Brats18_CBICA_ATB_1",
          "Brats18_TCIA05_396_1"),
    "E": ("BraTS2021_00005", "BraTS2021_00008", "Brats18_CBICA_APZ_1", "Brats18_CBICA_AQP_1", "Brats18_CBICA_ASA_1",
          "Brats18_CBICA_ASG_1"),
    "F": ("Brats18_CBICA_AOZ_1", "Brats18_CBICA_APY_1", "Brats18_CBICA_AQO_1", "Brats18_CBICA_ARW_1",
          "Brats18_CBICA_ASW_1", "Brats18_CBICA_AVG_1"),
}


def _git_show(clone: Path, path: str) -> bytes | None:
    done = subprocess.run(["git", "-C", str(clone), "show", f"HEAD:{path}"], capture_output=True, check=False)
    return done.stdout if done.returncode == 0 else None


def _source_of(clone: Path) -> str | None:
    """The repository of `SOURCES` whose first case folder this clone holds at HEAD, or None."""
    for repo, (folder, cases) in SOURCES.items():
        done = subprocess.run(["git", "-C", str(clone), "cat-file", "-e", f"HEAD:{folder}/{cases[0]}"],
                              capture_output=True, check=False)
        if done.returncode == 0:
            return repo
    return None


def extract(clones: list[Path], out: Path) -> list[str]:
    """Write every case the clones hold to ``out/<case>/``; returns the cases written (existing ones are kept)."""
    written = []
    for clone in clones:
        repo = _source_of(clone)
        if repo is None:
            raise SystemExit(f"real_cases: {clone} holds none of {', '.join(SOURCES)} at HEAD: pass a clone of one")
        folder, cases = SOURCES[repo]
        for case in cases:
            dest = out / case
            if dest.exists():
                print(f"kept {dest} (exists)")
                continue
            files = {}
            for suffix in SUFFIXES:
                data = _git_show(clone, f"{folder}/{case}/{case}_{suffix}.nii.gz")
                if data is None:
                    raise SystemExit(f"real_cases: {clone} has no {folder}/{case}/{case}_{suffix}.nii.gz at HEAD")
                if not data.startswith(b"\x1f\x8b"):  # a Git LFS pointer or a damaged clone, not a gzip file
                    raise SystemExit(f"real_cases: {clone}: {folder}/{case}/{case}_{suffix}.nii.gz is not a gzip "
                                     "file (a Git LFS pointer?); fetch the real files (git lfs pull) and run again")
                files[suffix] = data
            partial = out / f".{case}.partial"
            partial.mkdir(parents=True, exist_ok=True)
            for suffix, data in files.items():
                (partial / f"{case}_{suffix}.nii.gz").write_bytes(data)
            partial.rename(dest)  # a case folder is whole or absent
            written.append(case)
    return written


def link_splits(out: Path, splits_dir: Path) -> None:
    """``splits_dir/<split>/{train,test}/<case>`` -> ``out/<case>`` for each split of `SPLITS` (kept if present)."""
    missing = [c for c in CASES if not (out / c).is_dir()]
    if missing:
        raise SystemExit(f"real_cases: {len(missing)} cases are not in {out} (first: {missing[0]}): pass every clone")
    for split, test in SPLITS.items():
        root = splits_dir / split
        if root.exists():
            print(f"kept {root} (exists)")
            continue
        partial = splits_dir / f".{split}.partial"  # a split folder is whole or absent
        for case in CASES:
            part = partial / ("test" if case in test else "train")
            part.mkdir(parents=True, exist_ok=True)
            if not (part / case).is_symlink():
                (part / case).symlink_to((out / case).resolve(), target_is_directory=True)
        partial.rename(root)
        print(f"split {split}: {len(CASES) - len(test)} training, {len(test)} test cases in {root}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clones", nargs="+", type=Path, help="git clones of the repositories in SOURCES")
    p.add_argument("--out", type=Path, required=True, help="the case folders (git-ignored, e.g. data/real)")
    p.add_argument("--splits", type=Path, help="where the split folders of links go (e.g. data/splits)")
    args = p.parse_args(argv)
    written = extract(args.clones, args.out)
    print(f"{len(written)} cases written to {args.out}")
    if args.splits is not None:
        link_splits(args.out, args.splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
