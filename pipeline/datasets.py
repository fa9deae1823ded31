"""Dataset discovery and MONAI datalists for BraTS-style folders.

Layout handled here (BraTS 2018-2021)::

    <root>/<case>/<case>_{t1,t1ce,t2,flair}.nii[.gz]   four contrasts, 3D, co-registered
    <root>/<case>/<case>_seg.nii[.gz]                  labels 1 NCR, 2 ED, 4 ET (absent in validation sets)

2018's ``HGG/`` and ``LGG/`` subfolders are searched too. Every case's images are listed in the
project's channel order (:data:`pipeline.labels.CHANNELS`: T1, T1ce, T2, FLAIR).

A datalist is MONAI's decathlon-style JSON::

    {"name": ..., "layout": "brats2021", "label_scheme": "brats", "channels": ["T1", "T1ce", "T2", "FLAIR"],
     "regions": ["TC", "WT", "ET"], "folds": 5, "seed": 0,
     "training": [{"case": "BraTS2021_00000", "image": [t1, t1ce, t2, flair], "label": seg, "fold": 3}, ...],
     "test": [{"case": ..., "image": [...]}, ...]}      # cases without a label

Paths in a datalist are absolute, so it can be used from any working directory.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.labels import CHANNELS, REGIONS

#: BraTS 2018-2021 file suffix of each channel, in :data:`CHANNELS` order.
BRATS2021_SUFFIXES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Case:
    """One case: ``images``, the 4 contrast files in :data:`CHANNELS` order; ``label``, the segmentation or None."""

    case_id: str
    images: tuple[str, ...]
    label: str | None = None

    def to_item(self) -> dict:
        """The MONAI data dictionary: ``{"case", "image": [4 paths], "label"?: path}``."""
        item: dict = {"case": self.case_id, "image": list(self.images)}
        if self.label is not None:
            item["label"] = self.label
        return item


class DatasetError(ValueError):
    """A dataset folder that cannot be used as it is; the message names the folder or case and the fix."""


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for ext in NIFTI_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _case_folders(root: Path) -> list[Path]:
    """Case folders directly under ``root`` and under 2018's ``HGG``/``LGG`` subfolders, sorted by name."""
    folders = []
    for d in sorted(root.iterdir()):
        if not d.is_dir():
            continue
        if d.name in ("HGG", "LGG"):
            folders.extend(sorted(x for x in d.iterdir() if x.is_dir()))
        else:
            folders.append(d)
    return folders


def discover_cases(root: str | os.PathLike) -> list[Case]:
    """Find every BraTS 2018-2021 case under ``root``.

    A folder counts as a case when it holds at least one ``<folder>_<contrast>.nii[.gz]`` file. A case
    with a contrast missing is an error naming the case and the missing file (one bad case must not be
    dropped without a word); a case without ``_seg`` is returned with ``label=None``.

    Raises:
        DatasetError: ``root`` is missing, holds no case, or a case lacks a contrast.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass --dataset_dir pointing at a BraTS download")
    cases, problems = [], []
    for folder in _case_folders(root):
        cid = folder.name
        found = [_find_nifti(folder, f"{cid}_{s}") for s in BRATS2021_SUFFIXES]
        if not any(found):
            continue
        missing = [f"{cid}_{s}.nii.gz" for s, p in zip(BRATS2021_SUFFIXES, found, strict=True) if p is None]
        if missing:
            problems.append(
                f"case {cid}: missing {', '.join(missing)} in {folder}; every case needs all four contrasts "
                f"({', '.join(BRATS2021_SUFFIXES)}): restore the file(s) or move the case out of the dataset folder"
            )
            continue
        seg = _find_nifti(folder, f"{cid}_seg")
        cases.append(Case(cid, tuple(str(p) for p in found), str(seg) if seg else None))
    if problems:
        raise DatasetError("\n".join(problems))
    if not cases:
        raise DatasetError(
            f"no BraTS case found in {root}: expected <root>/<case>/<case>_{{t1,t1ce,t2,flair}}.nii.gz "
            "(BraTS 2018-2021 layout). Generate a synthetic one with: python -m pipeline synth DIR"
        )
    return cases


def assign_folds(case_ids: Sequence[str], folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Split cases into ``folds`` disjoint folds of near-equal size, shuffled by ``seed``.

    The split depends only on the sorted case ids and the seed, so it is the same on every machine.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2 to leave a validation fold, got {folds}")
    ids = sorted(case_ids)
    if len(ids) < folds:
        raise DatasetError(f"{len(ids)} labelled case(s) cannot be split into {folds} folds; pass --folds {len(ids)}")
    random.Random(seed).shuffle(ids)
    return {cid: i % folds for i, cid in enumerate(ids)}


def build_datalist(root: str | os.PathLike, folds: int = 5, seed: int = 0) -> dict:
    """Discover the cases under ``root`` and return a datalist (see the module docstring) with folds assigned."""
    cases = discover_cases(root)
    labelled = [c for c in cases if c.label is not None]
    fold_of = assign_folds([c.case_id for c in labelled], folds, seed) if labelled else {}
    return {
        "name": Path(root).resolve().name,
        "layout": "brats2021",
        "label_scheme": "brats",
        "channels": list(CHANNELS),
        "regions": list(REGIONS),
        "folds": folds,
        "seed": seed,
        "training": [{**c.to_item(), "fold": fold_of[c.case_id]} for c in labelled],
        "test": [c.to_item() for c in cases if c.label is None],
    }


def write_datalist(root: str | os.PathLike, out: str | os.PathLike, folds: int = 5, seed: int = 0) -> dict:
    """:func:`build_datalist` and write it to ``out`` as JSON (atomically: never a half-written file)."""
    datalist = build_datalist(root, folds, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(datalist, indent=2))
    os.replace(tmp, out)
    return datalist


def load_datalist(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                  folds: int = 5, seed: int = 0) -> dict:
    """The datalist from a JSON file when ``datalist`` is given, else discovered in ``dataset_dir``."""
    if datalist:
        path = Path(datalist)
        if not path.is_file():
            raise DatasetError(
                f"datalist {path} does not exist; write one with: python -m pipeline datalist DATASET_DIR --out {path}"
            )
        return json.loads(path.read_text())
    if not dataset_dir:
        raise DatasetError("neither a datalist nor a dataset_dir was given; pass --dataset_dir /path/to/BraTS")
    return build_datalist(dataset_dir, folds, seed)


def training_split(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                   fold: int = 0, folds: int = 5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, validation)`` items: fold ``fold`` of the datalist's labelled cases validates, the rest train.

    Raises:
        DatasetError: no labelled case, or ``fold`` is not one of the datalist's folds.
    """
    dl = load_datalist(datalist, dataset_dir, folds, seed)
    items = dl.get("training", [])
    if not items:
        raise DatasetError("the datalist has no labelled case (no *_seg file found): training needs labels")
    present = sorted({int(it["fold"]) for it in items})
    if fold not in present:
        raise DatasetError(f"fold {fold} is not in the datalist (folds present: {present}); pass --fold one of those")
    train = [it for it in items if int(it["fold"]) != fold]
    val = [it for it in items if int(it["fold"]) == fold]
    return train, val


def inference_items(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                    fold: int | None = None) -> list[dict]:
    """The items to segment: every case of ``dataset_dir`` (labelled or not), or of a datalist.

    With a datalist and ``fold`` set, only that fold's labelled cases (the validation cases of a
    training run); with a datalist and no fold, its ``training`` and ``test`` entries.
    """
    if datalist:
        dl = load_datalist(datalist, None)
        if fold is not None and int(fold) >= 0:
            return [it for it in dl.get("training", []) if int(it["fold"]) == int(fold)]
        return [*dl.get("training", []), *dl.get("test", [])]
    return [c.to_item() for c in discover_cases(dataset_dir)]
