"""The BraTS layouts: ``<root>/<case>/<case>_{t1,t1ce,t2,flair,seg}`` (2018-2021) and
``<root>/<case>/<case>-{t1n,t1c,t2w,t2f,seg}`` (2023+); their specs, scanner, file names and writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.core.guard import GRADE_FOLDERS
from pipeline.core.nifti import NIFTI_EXTENSIONS, is_nifti, nifti_names, pick_nifti, save_nifti
from pipeline.data.labels import CHANNELS
from pipeline.data.layouts.base import (
    Case,
    DatasetError,
    DatasetScan,
    LayoutInfo,
    LayoutSpec,
    Problem,
    both_extensions,
    with_case_ids,
)

#: BraTS 2018-2021 file suffix of each channel, in `CHANNELS` order.
BRATS2021_SUFFIXES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")


#: BraTS 2023+ file suffix of each channel, in `CHANNELS` order.
BRATS2023_SUFFIXES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")


BRATS2021 = LayoutSpec("brats2021", "BraTS 2018-2021", "brats", BRATS2021_SUFFIXES, "_",
                      "<root>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz", "<case>/<case>_seg.nii.gz")
BRATS2023 = LayoutSpec("brats2023", "BraTS 2023 and later", "brats2023", BRATS2023_SUFFIXES, "-",
                      "<root>/<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz", "<case>/<case>-seg.nii.gz")
#: The BraTS layouts by name.
SPECS: dict[str, LayoutSpec] = {"brats2021": BRATS2021, "brats2023": BRATS2023}


def case_folders(root: Path) -> list[Path]:
    """Case folders directly under ``root`` and under 2018's ``HGG``/``LGG`` subfolders, sorted by name."""
    folders = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        if d.name in GRADE_FOLDERS:
            folders.extend(sorted(x for x in d.iterdir() if x.is_dir()))
        else:
            folders.append(d)
    return folders


def holds_case(folder: Path, names: set[str], spec: LayoutSpec) -> bool:
    """Whether ``folder`` (whose file names are ``names``) holds a file of a case named as in ``spec``."""
    stems = [f"{folder.name}{spec.separator}{s}" for s in (*spec.suffixes, "seg")]
    return any(pick_nifti(names, s) for s in stems)


def single_case_message(root: Path) -> str | None:
    """The refusal of a dataset folder that is itself one BraTS case folder (``<root>/<root.name>_t1.nii.gz``...)."""
    names = nifti_names(root)
    for spec in SPECS.values():
        found = [n for s in (*spec.suffixes, "seg") if (n := pick_nifti(names, f"{root.name}{spec.separator}{s}"))]
        if found:
            return (f"{root} is a single case folder (it holds {', '.join(found)}); pass its parent folder as "
                    f"--dataset_dir: --dataset_dir {root.parent}")
    return None


def detect(root: Path) -> LayoutInfo | None:
    """The BraTS layout of ``root`` from its case folders' file names, or None when none is named so.

    Raises:
        DatasetError: case folders of both BraTS layouts.
    """
    matches: dict[str, list[str]] = {"brats2021": [], "brats2023": []}
    for folder in case_folders(root):
        names = nifti_names(folder)
        for name in matches:
            if holds_case(folder, names, SPECS[name]):
                matches[name].append(folder.name)
    if matches["brats2021"] and matches["brats2023"]:
        a, b = matches["brats2021"], matches["brats2023"]
        raise DatasetError(
            f"{root} mixes two layouts: {len(a)} case folder(s) in the BraTS 2018-2021 layout (e.g. {a[0]}) and "
            f"{len(b)} in the BraTS 2023 layout (e.g. {b[0]}); keep one layout per dataset folder "
            "(their label numbering differs: ET is 4 in one and 3 in the other)"
        )
    for name, folders in matches.items():
        if folders:
            spec = SPECS[name]
            first = folders[0]
            files = ",".join(spec.suffixes)
            return with_case_ids(LayoutInfo(
                name, spec.label_scheme,
                f"{len(folders)} case folder(s) like {first}/{first}{spec.separator}{{{files}}}.nii.gz", spec.title),
                folders)
    return None


def scan_brats(root: Path, spec: LayoutSpec, scan: DatasetScan) -> None:
    """Cases of a BraTS layout. Refused (an error problem, the case left out): a contrast missing, a file present
    as both ``.nii`` and ``.nii.gz``, and one case id in two folders (2018's ``HGG/X`` and ``LGG/X``)."""
    found_in: dict[str, list[Path]] = {}
    cases: list[Case] = []
    for folder in case_folders(root):
        cid, names = folder.name, nifti_names(folder)
        found = [pick_nifti(names, f"{cid}{spec.separator}{s}") for s in spec.suffixes]
        seg = pick_nifti(names, f"{cid}{spec.separator}seg")
        if not any(found) and seg is None:
            stray = sorted(n for n in names if is_nifti(n))
            if stray:
                scan.problems.append(Problem(cid, str(folder), "warning", (
                    f"case {cid}: folder {folder} holds {len(stray)} NIfTI file(s) (e.g. {stray[0]}) but none named "
                    f"{cid}{spec.separator}{{{','.join(spec.suffixes)},seg}}.nii.gz, so it is not used as a case; "
                    "name the files after their folder, as in the rest of the dataset")))
            nested = [d for d in sorted(folder.iterdir()) if d.is_dir() and holds_case(d, nifti_names(d), spec)]
            if nested:  # case folders one level down: not read, and said (the case count would be short)
                scan.problems.append(Problem("", str(folder), "warning", (
                    f"folder {folder} holds {len(nested)} case folder(s) (e.g. {nested[0].name}) that are not read: "
                    f"cases lie directly in the dataset folder {root} (or in HGG/LGG); move them up, or pass {folder} "
                    "as a dataset of its own")))
            continue
        found_in.setdefault(cid, []).append(folder)
        doubles = [d for s in (*spec.suffixes, "seg") if (d := both_extensions(names, f"{cid}{spec.separator}{s}"))]
        for nii, gz in doubles:
            scan.problems.append(Problem(cid, str(folder / nii), "error", (
                f"case {cid}: {folder} holds both {nii} and {gz}; keep one of the two (delete or move the other out "
                "of the dataset folder)")))
        missing = [f"{cid}{spec.separator}{s}.nii.gz" for s, p in zip(spec.suffixes, found, strict=True) if p is None]
        for name in missing:
            scan.problems.append(Problem(cid, str(folder / name), "error", (
                f"case {cid}: missing {name} in {folder}; every case needs all four contrasts "
                f"({', '.join(spec.suffixes)}): restore the file or move the case out of the dataset folder")))
        if missing or doubles:
            continue
        cases.append(Case(cid, tuple(str(folder / p) for p in found), str(folder / seg) if seg else None))
    for cid, folders in found_in.items():
        if len(folders) > 1:
            scan.problems.append(Problem(cid, str(folders[1]), "error", (
                f"case {cid}: {len(folders)} case folders have the same case id: "
                f"{' and '.join(str(f) for f in folders)}; "
                "outputs are named after the case, so keep one of them (rename or move the other)")))
    scan.cases.extend(c for c in cases if len(found_in[c.case_id]) == 1)
    if not scan.cases and not scan.problems:
        single = single_case_message(root)
        if single:
            scan.problems.append(Problem("", str(root), "error", single))


#: ``(separator, suffix)`` just before ``.nii``/``.nii.gz`` -> ``(channel of CHANNELS or "seg", layout)``.
_NAMED: dict[tuple[str, str], tuple[str, str]] = {
    **{("_", s): (c, "brats2021") for s, c in zip(BRATS2021_SUFFIXES, CHANNELS, strict=True)},
    ("_", "seg"): ("seg", "brats2021"),
    **{("-", s): (c, "brats2023") for s, c in zip(BRATS2023_SUFFIXES, CHANNELS, strict=True)},
    ("-", "seg"): ("seg", "brats2023"),
}


def named_split(path: str | os.PathLike) -> tuple[str, str, str] | None:
    """``(case part of the stem, channel or "seg", layout)`` of a BraTS file name, or None (see `named_as`)."""
    name = Path(path).name
    if not name.lower().endswith(NIFTI_EXTENSIONS):
        return None
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    for sep in ("_", "-"):
        head, found, tail = stem.rpartition(sep)
        if found and head and (sep, tail.lower()) in _NAMED:
            return (head, *_NAMED[(sep, tail.lower())])
    return None


def named_as(path: str | os.PathLike) -> tuple[str, str] | None:
    """What a file's BraTS name shows: ``(channel of CHANNELS or "seg", layout)``, or None when it shows nothing.

    The suffix must sit exactly between the last ``_`` (BraTS 2018-2021: t1, t1ce, t2, flair, seg) or ``-``
    (BraTS 2023: t1n, t1c, t2w, t2f, seg) and ``.nii``/``.nii.gz``: ``X_t1ce.nii.gz`` is T1ce (not T1),
    ``X-t2f.nii.gz`` FLAIR; ``t1.nii.gz``, ``X_t1_reg.nii.gz`` and ``X_t1.mha`` show nothing.
    """
    found = named_split(path)
    return found[1:] if found else None


def single_case(root: str | os.PathLike) -> tuple[Case, LayoutInfo] | None:
    """One BraTS case whose files lie directly in ``root`` (nnU-Net's ``-i`` habit), or None.

    ``root`` is a case folder (``<root>/<root.name>_t1.nii.gz`` ...) or any flat folder holding exactly one case's
    four contrasts named ``<case>_{t1,t1ce,t2,flair}`` (BraTS 2018-2021) or ``<case>-{t1n,t1c,t2w,t2f}`` (BraTS 2023),
    and optionally its ``seg``; no other NIfTI file. Used by inference only: training needs a dataset.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    names = sorted(n for n in nifti_names(root) if is_nifti(n))
    split = [named_split(root / n) for n in names]
    if not names or not all(split):
        return None
    prefixes = {sp[0] for sp in split}
    layouts = {sp[2] for sp in split}
    if len(prefixes) != 1 or len(layouts) != 1:
        return None
    (cid,), (layout,) = prefixes, layouts
    by_channel = {sp[1]: str(root / n) for n, sp in zip(names, split, strict=True)}
    if len(by_channel) != len(names) or not set(CHANNELS) <= set(by_channel):
        return None
    case = Case(cid, tuple(by_channel[c] for c in CHANNELS), by_channel.get("seg"))
    spec = SPECS[layout]
    return case, with_case_ids(LayoutInfo(layout, spec.label_scheme, f"{root} holds the files of one case, {cid}",
                                          spec.title), [cid])


def write_case(out: Path, case_id: str, images: dict[str, np.ndarray], seg: np.ndarray, affine: np.ndarray,
               spec: LayoutSpec) -> Path:
    """``<out>/<case>/<case><sep>{suffixes,seg}.nii.gz``: ``images`` by channel name (`CHANNELS`), ``seg`` already
    in the dataset's numbering; returns the case folder."""
    folder = out / case_id
    folder.mkdir(parents=True, exist_ok=True)
    for channel, suffix in zip(CHANNELS, spec.suffixes, strict=True):
        save_nifti(images[channel], affine, folder / f"{case_id}{spec.separator}{suffix}.nii.gz")
    save_nifti(seg, affine, folder / f"{case_id}{spec.separator}seg.nii.gz")
    return folder
