"""Dataset discovery and MONAI datalists for the four supported dataset layouts.

Layouts, detected by :func:`detect_layout` (or named with ``layout=``), each with its own label scheme
(:mod:`pipeline.labels`):

``brats2021``, BraTS 2018-2021, label scheme ``brats`` (1 NCR, 2 ED, 4 ET)::

    <root>/<case>/<case>_{t1,t1ce,t2,flair}.nii[.gz]   four 3D contrasts, co-registered
    <root>/<case>/<case>_seg.nii[.gz]                  labels (absent in validation sets)

  2018's ``HGG/`` and ``LGG/`` subfolders are searched too.

``brats2023``, BraTS 2023 and later (GLI; MEN, MET, PED, SSA use the same names), label scheme ``brats2023``
(1 NCR, 2 ED, 3 ET)::

    <root>/<case>/<case>-{t1n,t1c,t2w,t2f}.nii[.gz]    T1, T1ce, T2, FLAIR
    <root>/<case>/<case>-seg.nii[.gz]

``msd``, Medical Segmentation Decathlon Task01_BrainTumour, label scheme ``msd`` (1 ED, 2 NET, 3 ET)::

    <root>/imagesTr/BRATS_001.nii.gz    one 4D file (X, Y, Z, 4), channels FLAIR, T1w, T1gd, T2w
    <root>/labelsTr/BRATS_001.nii.gz    3D labels
    <root>/imagesTs/BRATS_485.nii.gz    unlabelled cases

  When ``dataset.json`` has a ``modality`` table, the channel order is read from it. macOS ``._*`` files
  (present in the Decathlon archive) are ignored.

``nnunet``, nnU-Net v2's raw format (``nnUNet_raw/DatasetXXX_Name``), label scheme ``nnunet:<root>/dataset.json``
(the dataset's own description, :func:`pipeline.labels.from_dataset_json`)::

    <root>/dataset.json                          "channel_names" ({"0": "T1", ...}), "labels", "file_ending"
    <root>/imagesTr/<case>_0000.nii.gz           one 3D file per channel: _0000, _0001, ... in channel_names order
    <root>/labelsTr/<case>.nii.gz                labels in the dataset.json's numbering
    <root>/imagesTs/<case>_0000.nii.gz           unlabelled cases (optional)

  Detected by a ``dataset.json`` with ``channel_names`` (an MSD ``dataset.json`` has ``modality`` instead), before
  MSD. Any number of channels (1 included); ``file_ending`` (default ``.nii.gz``) must be ``.nii.gz`` or ``.nii``.

Whatever the layout, a case reaches the network as the channels of its label scheme's description
(:func:`pipeline.labels.describe`, ``.channels``), in that order. For the BraTS and MSD layouts these are the 4
channels of :data:`pipeline.labels.CHANNELS` (T1, T1ce, T2, FLAIR): a BraTS case lists its 4 files in that order;
an MSD case lists its one 4D file and ``channel_index``, the position in that file of each channel of
``CHANNELS`` (``(1, 2, 3, 0)`` for MSD's FLAIR, T1w, T1gd, T2w), which :class:`pipeline.transforms.SelectChannelsd`
applies right after loading. An nnU-Net case lists its N channel files in ``channel_names`` order (no
``channel_index``).

A datalist is MONAI's decathlon-style JSON::

    {"name": ..., "layout": "brats2021", "label_scheme": "brats", "channels": ["T1", "T1ce", "T2", "FLAIR"],
     "regions": ["TC", "WT", "ET"], "folds": 5, "seed": 0,
     "training": [{"case": "BraTS2021_00000", "image": [t1, t1ce, t2, flair], "label": seg, "fold": 3}, ...],
     "test": [{"case": ..., "image": [...]}, ...]}      # cases without a label

An MSD item is ``{"case": "BRATS_001", "image": [4D file], "channel_index": [1, 2, 3, 0], "label": ...}``.
An nnU-Net dataset's datalist records its own description: ``"layout": "nnunet"``, ``"label_scheme":
"nnunet:/abs/path/dataset.json"``, ``"channels"`` its ``channel_names`` in order (e.g. ``["T1ce"]``), ``"regions"``
its label or region names; an item is ``{"case": "BraTS2021_00000", "image": [<case>_0000.nii.gz, ...], "label":
...}`` with one file per channel. ``"channels"`` and ``"regions"`` are always those of the label scheme's
description (:func:`pipeline.labels.describe`).
Paths in a written datalist are absolute, so it can be used from any working directory.

A datalist JSON is validated when loaded (:func:`read_datalist`): case ids unique and safe as file names
(outputs are ``<output_dir>/<case>.nii.gz``), one image file per channel of the datalist's label scheme (4 for the
BraTS schemes: reordered into ``CHANNELS`` order when their BraTS names show the contrasts in another order, refused
when the names show anything else) or one 4D file with ``channel_index``, every file present; relative paths are
read from the JSON's own folder; the loaded items hold absolute paths. A MONAI model-zoo datalist
(``training``/``validation``/``testing``, items without case or fold) is read with its own split: its
``validation`` cases are fold 0, its ``training`` cases fold 1 (``--fold 0`` only), its ``testing`` cases ``test``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.labels import CHANNELS, LABEL_SCHEMES, NNUNET_PREFIX, REGIONS, Description, describe

logger = logging.getLogger(__name__)

#: BraTS 2018-2021 file suffix of each channel, in :data:`CHANNELS` order.
BRATS2021_SUFFIXES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: BraTS 2023+ file suffix of each channel, in :data:`CHANNELS` order.
BRATS2023_SUFFIXES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")

#: Channel order inside an MSD Task01 4D image (its ``dataset.json`` ``modality`` table).
MSD_CHANNELS: tuple[str, ...] = ("FLAIR", "T1w", "T1gd", "T2w")
#: MSD modality names (lower case) -> the project's channel names.
_MSD_NAMES: dict[str, str] = {"flair": "FLAIR", "t2f": "FLAIR", "t1": "T1", "t1w": "T1", "t1n": "T1",
                              "t1gd": "T1ce", "t1ce": "T1ce", "t1c": "T1ce", "t2": "T2", "t2w": "T2"}


@dataclass(frozen=True)
class LayoutSpec:
    """A dataset layout: its title, default label scheme and, for the BraTS layouts, the file naming."""

    name: str
    title: str
    label_scheme: str
    suffixes: tuple[str, ...] = ()   # file suffix of each CHANNELS entry (BraTS layouts)
    separator: str = "_"             # between the case id and the suffix
    example: str = ""                # one line for messages


LAYOUTS: dict[str, LayoutSpec] = {
    "brats2021": LayoutSpec("brats2021", "BraTS 2018-2021", "brats", BRATS2021_SUFFIXES, "_",
                            "<root>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz"),
    "brats2023": LayoutSpec("brats2023", "BraTS 2023 and later", "brats2023", BRATS2023_SUFFIXES, "-",
                            "<root>/<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz"),
    "msd": LayoutSpec("msd", "Medical Segmentation Decathlon Task01_BrainTumour", "msd", (), "",
                      "<root>/imagesTr/BRATS_001.nii.gz (4D) and <root>/labelsTr/BRATS_001.nii.gz"),
    # its label scheme is the dataset's own dataset.json (nnunet_label_scheme(root)); this is the template
    "nnunet": LayoutSpec("nnunet", "nnU-Net raw dataset (v2)", f"{NNUNET_PREFIX}<root>/dataset.json", (), "_",
                         "<root>/dataset.json with channel_names, <root>/imagesTr/<case>_0000.nii.gz (one file per "
                         "channel) and <root>/labelsTr/<case>.nii.gz"),
}

#: The stem of an nnU-Net image file: ``<case>_<XXXX>``, XXXX the channel number (0000, 0001, ...).
_NNUNET_IMAGE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def nnunet_label_scheme(root: str | os.PathLike) -> str:
    """The label scheme of the nnU-Net raw dataset ``root``: ``nnunet:`` + the absolute path of its dataset.json."""
    return f"{NNUNET_PREFIX}{Path(root).expanduser().resolve() / 'dataset.json'}"


@dataclass(frozen=True)
class Case:
    """One case.

    ``images``: the 4 contrast files in :data:`CHANNELS` order, or (MSD) one 4D file whose channel
    ``channel_index[i]`` is ``CHANNELS[i]``, or (nnU-Net) one 3D file per channel of its ``dataset.json``, in
    ``channel_names`` order; ``label``: the segmentation or None.
    """

    case_id: str
    images: tuple[str, ...]
    label: str | None = None
    channel_index: tuple[int, ...] | None = None

    def to_item(self) -> dict:
        """The MONAI data dictionary: ``{"case", "image": [paths], "channel_index"?: [...], "label"?: path}``."""
        item: dict = {"case": self.case_id, "image": list(self.images)}
        if self.channel_index is not None:
            item["channel_index"] = list(self.channel_index)
        if self.label is not None:
            item["label"] = self.label
        return item

    @classmethod
    def from_item(cls, item: dict) -> Case:
        """The case of a datalist item (see :meth:`to_item`)."""
        image = item["image"]
        images = (str(image),) if isinstance(image, (str, os.PathLike)) else tuple(str(p) for p in image)
        index = item.get("channel_index")
        return cls(str(item["case"]), images, str(item["label"]) if item.get("label") else None,
                   tuple(int(i) for i in index) if index is not None else None)

    def channel_file(self, channel: str, channels: Sequence[str] = CHANNELS) -> tuple[str, int | None]:
        """``(file, index)`` of one channel of ``channels`` (the description's channels, :data:`CHANNELS` by
        default): index is None for a 3D file, else the 4D position."""
        i = tuple(channels).index(channel)
        if self.channel_index is None:
            return self.images[i], None
        return self.images[0], self.channel_index[i]


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset: the case, the file (full path, or the folder), ``error`` or ``warning``, and
    ``message``, one line that names the case and the file, says what is wrong and what to do."""

    case: str
    file: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.message}"


@dataclass(frozen=True)
class LayoutInfo:
    """What :func:`detect_layout` found: the layout, its default label scheme and why it was chosen."""

    layout: str
    label_scheme: str
    reason: str

    def __str__(self) -> str:
        return f"layout {self.layout} ({LAYOUTS[self.layout].title}), label scheme {self.label_scheme}: {self.reason}"


@dataclass
class DatasetScan:
    """What :func:`scan_dataset` found: the layout, the complete cases and the problems of discovery."""

    root: Path
    layout: LayoutInfo
    cases: list[Case] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class DatasetError(UserError):
    """A dataset folder that cannot be used as it is; the message names the folder or case and the fix."""


def _nifti_names(folder: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")}
    except OSError:
        return set()


def _pick(names: set[str], stem: str) -> str | None:
    for ext in NIFTI_EXTENSIONS:
        if f"{stem}{ext}" in names:
            return f"{stem}{ext}"
    return None


def _is_nifti(name: str) -> bool:
    return name.endswith(NIFTI_EXTENSIONS) and not name.startswith(".")


def _stem(name: str) -> str:
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _case_folders(root: Path) -> list[Path]:
    """Case folders directly under ``root`` and under 2018's ``HGG``/``LGG`` subfolders, sorted by name."""
    folders = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        if d.name in ("HGG", "LGG"):
            folders.extend(sorted(x for x in d.iterdir() if x.is_dir()))
        else:
            folders.append(d)
    return folders


def _existing_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist; pass --dataset_dir pointing at a BraTS download")
    return path


def _brats_matches(folder: Path, names: set[str], spec: LayoutSpec) -> bool:
    stems = [f"{folder.name}{spec.separator}{s}" for s in (*spec.suffixes, "seg")]
    return any(_pick(names, s) for s in stems)


def _single_case_message(root: Path) -> str | None:
    """The refusal of a dataset folder that is itself one BraTS case folder (``<root>/<root.name>_t1.nii.gz``...)."""
    names = _nifti_names(root)
    for spec in LAYOUTS.values():
        if not spec.suffixes:
            continue
        found = [n for s in (*spec.suffixes, "seg") if (n := _pick(names, f"{root.name}{spec.separator}{s}"))]
        if found:
            return (f"{root} is a single case folder (it holds {', '.join(found)}); pass its parent folder as "
                    f"--dataset_dir: --dataset_dir {root.parent}")
    return None


def _no_case_message(root: Path) -> str:
    single = _single_case_message(root)
    if single:
        return single
    layouts = "; ".join(f"{spec.title}: {spec.example}" for spec in LAYOUTS.values())
    return (f"no BraTS case found in {root}: expected one of these layouts: {layouts}. "
            "Generate a synthetic one with: python -m pipeline synth DIR [--layout brats2021|brats2023|msd|nnunet]")


def detect_layout(root: str | os.PathLike) -> LayoutInfo:
    """Which layout the folder ``root`` has, and why (see the module docstring).

    A ``dataset.json`` with ``channel_names`` (nnU-Net v2) makes it ``nnunet``, its label scheme
    ``nnunet:<root>/dataset.json``; else ``imagesTr/`` or ``imagesTs/`` makes it ``msd``; otherwise the case
    folders' file names decide between ``brats2021`` (``<case>_t1.nii.gz``) and ``brats2023`` (``<case>-t1n.nii.gz``).

    Raises:
        DatasetError: ``root`` is missing, holds no case of any layout, or holds case folders of both BraTS layouts.
    """
    root = _existing_root(root)
    meta = _nnunet_meta(root)
    if meta is not None:
        table = meta["channel_names"]
        names = ", ".join(str(v) for v in table.values()) if isinstance(table, dict) else repr(table)
        counts = {d: len(_nifti_names(root / d)) for d in ("imagesTr", "labelsTr", "imagesTs") if (root / d).is_dir()}
        found = ", ".join(f"{d}/ ({n} file(s))" for d, n in counts.items()) or "no imagesTr/ yet"
        return LayoutInfo("nnunet", nnunet_label_scheme(root),
                          f"{root / 'dataset.json'} has channel_names ({names}): one file per channel; {found}")
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        counts = {d: len([n for n in _nifti_names(root / d) if _is_nifti(n)]) for d in ("imagesTr", "labelsTr",
                                                                                    "imagesTs")}
        found = ", ".join(f"{d}/ ({n} file(s))" for d, n in counts.items() if (root / d).is_dir())
        return LayoutInfo("msd", "msd", f"{root} holds {found}: one 4D image per case")
    matches: dict[str, list[str]] = {"brats2021": [], "brats2023": []}
    for folder in _case_folders(root):
        names = _nifti_names(folder)
        for name in matches:
            if _brats_matches(folder, names, LAYOUTS[name]):
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
            spec = LAYOUTS[name]
            first = folders[0]
            files = ",".join(spec.suffixes)
            return LayoutInfo(name, spec.label_scheme,
                              f"{len(folders)} case folder(s) like {first}/{first}{spec.separator}{{{files}}}.nii.gz")
    raise DatasetError(_no_case_message(root))


def _nnunet_meta(root: Path) -> dict | None:
    """``root/dataset.json`` parsed when it is nnU-Net v2's (it has ``channel_names``), else None (MSD's has
    ``modality``; an unreadable file is left to the MSD reading, which names it)."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "channel_names" in meta else None


def _both_extensions(names: set[str], stem: str) -> tuple[str, str] | None:
    """``(stem.nii, stem.nii.gz)`` when a folder holds both (which one is meant cannot be told), else None."""
    pair = (f"{stem}.nii", f"{stem}.nii.gz")
    return pair if all(n in names for n in pair) else None


def _scan_brats(root: Path, spec: LayoutSpec, scan: DatasetScan) -> None:
    """Cases of a BraTS layout. Refused (an error problem, the case left out): a contrast missing, a file present
    as both ``.nii`` and ``.nii.gz``, and one case id in two folders (2018's ``HGG/X`` and ``LGG/X``)."""
    found_in: dict[str, list[Path]] = {}
    cases: list[Case] = []
    for folder in _case_folders(root):
        cid, names = folder.name, _nifti_names(folder)
        found = [_pick(names, f"{cid}{spec.separator}{s}") for s in spec.suffixes]
        seg = _pick(names, f"{cid}{spec.separator}seg")
        if not any(found) and seg is None:
            stray = sorted(n for n in names if _is_nifti(n))
            if stray:
                scan.problems.append(Problem(cid, str(folder), "warning", (
                    f"case {cid}: folder {folder} holds {len(stray)} NIfTI file(s) (e.g. {stray[0]}) but none named "
                    f"{cid}{spec.separator}{{{','.join(spec.suffixes)},seg}}.nii.gz, so it is not used as a case; "
                    "name the files after their folder, as in the rest of the dataset")))
            continue
        found_in.setdefault(cid, []).append(folder)
        doubles = [d for s in (*spec.suffixes, "seg") if (d := _both_extensions(names, f"{cid}{spec.separator}{s}"))]
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
        single = _single_case_message(root)
        if single:
            scan.problems.append(Problem("", str(root), "error", single))


def msd_channel_index(modalities: Sequence[str]) -> tuple[int, ...]:
    """Position in a 4D MSD image of each channel of :data:`CHANNELS`, from its modality names in file order.

    ``("FLAIR", "T1w", "T1gd", "T2w")`` (Task01) gives ``(1, 2, 3, 0)``.

    Raises:
        DatasetError: a name is unknown, or the names do not cover the four contrasts exactly once.
    """
    mapped = [_MSD_NAMES.get(str(m).strip().lower()) for m in modalities]
    if None in mapped or sorted(mapped) != sorted(CHANNELS):
        raise DatasetError(
            f"modalities {list(modalities)} do not name the four contrasts T1, T1ce (T1gd), T2 and FLAIR once each; "
            f"known names: {sorted(_MSD_NAMES)}"
        )
    return tuple(mapped.index(c) for c in CHANNELS)


def _msd_modalities(root: Path, scan: DatasetScan) -> tuple[int, ...]:
    """The channel index from ``dataset.json``'s ``modality`` table, or MSD Task01's order without one."""
    meta = root / "dataset.json"
    default = msd_channel_index(MSD_CHANNELS)
    if not meta.is_file():
        return default
    try:
        table = json.loads(meta.read_text()).get("modality")
        if table is None:
            return default
        names = [table[k] for k in sorted(table, key=int)]
        return msd_channel_index(names)
    except (ValueError, KeyError, AttributeError, TypeError, DatasetError) as e:
        scan.problems.append(Problem("", str(meta), "error", (
            f"dataset {root}: dataset.json's modality table cannot be read ({e}); expected e.g. "
            '{"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}: fix it or remove the modality entry')))
        return default


def _scan_msd(root: Path, scan: DatasetScan) -> None:
    index = _msd_modalities(root, scan)
    doubled: set[str] = set()  # case ids with a file present as both .nii and .nii.gz: refused

    def files(sub: str) -> dict[str, str]:
        out: dict[str, str] = {}
        names = _nifti_names(root / sub)
        for n in sorted(names):
            if not _is_nifti(n):
                continue
            cid = _stem(n)
            pair = _both_extensions(names, cid)
            if pair:
                if n == pair[0]:
                    scan.problems.append(Problem(cid, str(root / sub / n), "error", (
                        f"case {cid}: {root / sub} holds both {pair[0]} and {pair[1]}; keep one of the two (delete "
                        "or move the other out of the dataset folder)")))
                doubled.add(cid)
                continue
            out[cid] = str(root / sub / n)
        return out

    images_tr, labels, images_ts = files("imagesTr"), files("labelsTr"), files("imagesTs")
    for cid in sorted(set(labels) - set(images_tr) - doubled):
        scan.problems.append(Problem(cid, str(root / "imagesTr" / f"{cid}.nii.gz"), "error", (
            f"case {cid}: missing imagesTr/{cid}.nii.gz for the label labelsTr/{Path(labels[cid]).name}; "
            "restore the image or move the label out of the dataset folder")))
    for cid in doubled:  # one of its files is doubled: the case is refused (its error is listed above)
        images_tr.pop(cid, None)
        images_ts.pop(cid, None)
    for cid, image in images_tr.items():
        label = labels.get(cid)
        if label is None:
            scan.problems.append(Problem(cid, image, "warning", (
                f"case {cid}: imagesTr/{Path(image).name} has no label labelsTr/{cid}.nii.gz; it is used as an "
                "unlabelled case (inference only): restore the label to train on it")))
        scan.cases.append(Case(cid, (image,), label, index))
    for cid, image in images_ts.items():
        if cid in images_tr:
            scan.problems.append(Problem(cid, image, "error", (
                f"case {cid}: imagesTs/{Path(image).name} has the same case id as imagesTr/{Path(images_tr[cid]).name};"
                " rename one of them")))
            continue
        scan.cases.append(Case(cid, (image,), None, index))


def nnunet_description(root: str | os.PathLike, scheme: str | None = None) -> Description:
    """The description of the nnU-Net raw dataset ``root`` (its ``dataset.json``; ``scheme`` another one).

    Raises:
        DatasetError: no readable nnU-Net v2 ``dataset.json`` (``channel_names``, ``labels``), or a ``file_ending``
            other than ``.nii.gz``/``.nii`` (the pipeline reads NIfTI).
    """
    scheme = scheme or nnunet_label_scheme(root)
    try:
        desc = describe(scheme)
    except UserError as e:
        raise DatasetError(f"nnU-Net dataset {root}: {e}") from None
    if desc.file_ending not in NIFTI_EXTENSIONS:
        raise DatasetError(f"nnU-Net dataset {root}: file_ending {desc.file_ending!r} in its dataset.json; this "
                           "pipeline reads NIfTI only: convert the images and labels to .nii.gz (e.g. with "
                           "SimpleITK.WriteImage) and set \"file_ending\": \".nii.gz\"")
    return desc


def _nnunet_files(root: Path, sub: str, ending: str, scan: DatasetScan, images: bool) -> dict:
    """``imagesTr``/``imagesTs``: ``{case: {channel number: path}}``; ``labelsTr``: ``{case: path}``. NIfTI files
    named otherwise get one warning per folder (they are not used)."""
    out: dict = {}
    stray = []
    for name in sorted(_nifti_names(root / sub)):
        stem = name[: -len(ending)] if name.endswith(ending) else None
        match = _NNUNET_IMAGE.match(stem) if stem and images else None
        if stem and not images:
            out[stem] = str(root / sub / name)
        elif match:
            out.setdefault(match["case"], {})[int(match["channel"])] = str(root / sub / name)
        elif _is_nifti(name) or name.endswith(ending):
            stray.append(name)
    if stray:
        pattern = "<case>_<XXXX>" if images else "<case>"
        scan.problems.append(Problem("", str(root / sub / stray[0]), "warning", (
            f"dataset {root}: {len(stray)} file(s) in {sub}/ (e.g. {stray[0]}) are not named {pattern}{ending} "
            f"(nnU-Net raw format{', XXXX the channel number 0000, 0001, ...' if images else ''}; file_ending "
            f"{ending} from dataset.json), so they are not used: rename them or move them out of {sub}/")))
    return out


def _nnunet_cases(root: Path, sub: str, files: dict[str, dict[int, str]], desc: Description,
                  scan: DatasetScan) -> dict[str, tuple[str, ...]]:
    """The cases of ``imagesTr``/``imagesTs`` with one file per channel; the others are errors naming each file."""
    n, ending = len(desc.channels), desc.file_ending
    table = ", ".join(f"{i:04d} {c}" for i, c in enumerate(desc.channels))
    complete: dict[str, tuple[str, ...]] = {}
    for cid, chans in sorted(files.items()):
        extra = sorted(c for c in chans if c >= n)
        for c in extra:
            scan.problems.append(Problem(cid, chans[c], "error", (
                f"case {cid}: {sub}/{Path(chans[c]).name} is channel {c}, but dataset.json's channel_names has "
                f"{n} channel(s) ({table}): add the channel to channel_names or move the file out of {sub}/")))
        missing = [c for c in range(n) if c not in chans]
        for c in missing:
            name = f"{cid}_{c:04d}{ending}"
            scan.problems.append(Problem(cid, str(root / sub / name), "error", (
                f"case {cid}: missing {sub}/{name} (channel {c}, {desc.channels[c]}); every case needs one file per "
                f"channel of dataset.json's channel_names ({table}): restore the file or move the case's files out "
                "of the dataset folder")))
        if not extra and not missing:
            complete[cid] = tuple(chans[c] for c in range(n))
    return complete


def _scan_nnunet(root: Path, scan: DatasetScan) -> None:
    """Cases of an nnU-Net raw dataset: ``imagesTr`` (labelled from ``labelsTr``) and ``imagesTs``. Refused (an
    error, the case left out): a channel file missing, a channel number beyond ``channel_names``, a label without
    images, a case id in both ``imagesTr`` and ``imagesTs``. An ``imagesTr`` case without label is a warning (it
    is used unlabelled), as in MSD."""
    desc = nnunet_description(root, scan.layout.label_scheme)
    ending = desc.file_ending
    tr_files = _nnunet_files(root, "imagesTr", ending, scan, True)
    labels = _nnunet_files(root, "labelsTr", ending, scan, False)
    ts_files = _nnunet_files(root, "imagesTs", ending, scan, True)
    images_tr = _nnunet_cases(root, "imagesTr", tr_files, desc, scan)
    images_ts = _nnunet_cases(root, "imagesTs", ts_files, desc, scan)
    for cid in sorted(set(labels) - set(tr_files)):
        scan.problems.append(Problem(cid, str(root / "imagesTr" / f"{cid}_0000{ending}"), "error", (
            f"case {cid}: no imagesTr/{cid}_0000{ending} (nor any channel file of it) for the label "
            f"labelsTr/{Path(labels[cid]).name}; restore the images or move the label out of the dataset folder")))
    for cid, images in images_tr.items():
        label = labels.get(cid)
        if label is None:
            scan.problems.append(Problem(cid, images[0], "warning", (
                f"case {cid}: imagesTr/{Path(images[0]).name} has no label labelsTr/{cid}{ending}; it is used as an "
                "unlabelled case (inference only): restore the label to train on it")))
        scan.cases.append(Case(cid, images, label))
    for cid, images in images_ts.items():
        if cid in tr_files:
            scan.problems.append(Problem(cid, images[0], "error", (
                f"case {cid}: imagesTs/{Path(images[0]).name} has the same case id as imagesTr/{cid}_0000{ending}; "
                "rename one of them")))
            continue
        scan.cases.append(Case(cid, images, None))
    _check_num_training(root, len([c for c in scan.cases if c.label is not None]), scan)


def _check_num_training(root: Path, labelled: int, scan: DatasetScan) -> None:
    """A warning when dataset.json's ``numTraining`` differs from the labelled cases found (nnU-Net refuses it)."""
    number = (_nnunet_meta(root) or {}).get("numTraining")
    if isinstance(number, int) and not isinstance(number, bool) and number != labelled:
        scan.problems.append(Problem("", str(root / "dataset.json"), "warning", (
            f"dataset {root}: dataset.json says numTraining {number} but imagesTr/ and labelsTr/ hold {labelled} "
            "complete labelled case(s); nnU-Net's own tools refuse such a dataset: set numTraining to "
            f"{labelled}")))


def scan_dataset(root: str | os.PathLike, layout: str | None = None) -> DatasetScan:
    """Find every case under ``root`` and every problem of discovery, without raising for one bad case.

    Args:
        root: the dataset folder.
        layout: ``brats2021``, ``brats2023``, ``msd`` or ``nnunet``; None detects it (:func:`detect_layout`).

    Returns:
        The layout, the complete cases (sorted by case id within each subfolder) and the problems: a missing
        contrast, MSD image or nnU-Net channel file is an error naming the case and the file, and so are one case
        id in two folders
        (2018's ``HGG/X`` and ``LGG/X``), a file present as both ``.nii`` and ``.nii.gz``, and (no case found)
        a ``root`` that is itself one case folder; a case without a label is not a problem (validation sets
        have none) except in ``imagesTr/`` (MSD, nnU-Net: a warning). A refused case is not among the cases.

    Raises:
        DatasetError: ``root`` is missing, the layout is unknown or cannot be detected; an nnU-Net dataset whose
            ``dataset.json`` cannot be used (:func:`nnunet_description`).
    """
    path = _existing_root(root)
    if layout is None or layout == "auto":
        info = detect_layout(path)
    elif layout in LAYOUTS:
        info = LayoutInfo(layout, nnunet_label_scheme(path) if layout == "nnunet" else LAYOUTS[layout].label_scheme,
                          "given")
    else:
        raise DatasetError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)} (or auto)")
    scan = DatasetScan(path, info)
    if info.layout == "msd":
        _scan_msd(path, scan)
    elif info.layout == "nnunet":
        _scan_nnunet(path, scan)
    else:
        _scan_brats(path, LAYOUTS[info.layout], scan)
    return scan


def discover_cases(root: str | os.PathLike, layout: str | None = None) -> list[Case]:
    """Find every case under ``root`` (layout detected, or given as ``layout``).

    A case with a contrast missing is an error naming the case and the missing file (one bad case must not be
    dropped without a word); a case without a label is returned with ``label=None``. Warnings of discovery
    are logged.

    Raises:
        DatasetError: ``root`` is missing, holds no case, or a case lacks a contrast (all such cases listed).
    """
    return _usable_cases(scan_dataset(root, layout))


def _usable_cases(scan: DatasetScan) -> list[Case]:
    """The cases of a scan; its warnings logged; an error listing every discovery error, or no case found."""
    for p in scan.problems:
        if p.severity != "error":
            logger.warning("%s", p.message)
    if scan.errors:
        raise DatasetError("\n".join(p.message for p in scan.errors))
    if not scan.cases:
        raise DatasetError(_no_case_message(scan.root))
    return scan.cases


def resolve_label_scheme(label_scheme: str | None, datalist: str | os.PathLike | None = None,
                         dataset_dir: str | os.PathLike | None = None) -> str:
    """The label scheme to use: ``label_scheme`` itself, or for ``auto``/None the datalist's or the layout's.

    An ``nnunet:<dataset.json>`` scheme is checked (the file read, :func:`pipeline.labels.describe`) and returned
    with the absolute path; an nnU-Net dataset's ``auto`` scheme is ``nnunet:<root>/dataset.json``.

    Raises:
        ValueError: an unknown scheme (:class:`~pipeline.errors.UserError` for an unusable dataset.json).
        DatasetError: ``auto`` with neither a datalist nor a dataset folder whose layout can be detected.
    """
    if label_scheme and label_scheme != "auto":
        if str(label_scheme).startswith(NNUNET_PREFIX):
            return describe(str(label_scheme)).name
        if label_scheme not in LABEL_SCHEMES:
            raise ValueError(f"unknown label_scheme {label_scheme!r}; expected auto or one of {sorted(LABEL_SCHEMES)} "
                             f"(brats2024: BraTS 2024+ post-treatment glioma, 4 = resection cavity) or "
                             f"{NNUNET_PREFIX}<path to an nnU-Net dataset.json>")
        return str(label_scheme)
    if datalist:
        dl = load_datalist(datalist, dataset_dir)
        scheme = dl.get("label_scheme") or LAYOUTS.get(dl.get("layout", "brats2021"), LAYOUTS["brats2021"]).label_scheme
        return str(scheme)
    if not dataset_dir:
        raise DatasetError("label_scheme auto needs a dataset_dir or a datalist to detect the layout from")
    one = single_case(dataset_dir)
    return one[1].label_scheme if one else detect_layout(dataset_dir).label_scheme


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


def _check_channel_count(cases: Sequence[Case], desc: Description) -> None:
    """Refuse cases whose image files do not give the description's channels (one file each, or a 4D file whose
    ``channel_index`` names each)."""
    n = len(desc.channels)
    for c in cases:
        got = len(c.channel_index) if c.channel_index is not None else len(c.images)
        if got != n:
            raise DatasetError(
                f"label scheme {desc.name} names {n} channel(s) ({', '.join(desc.channels)}) but case {c.case_id} "
                f"has {got} ({Path(c.images[0]).name}{', ...' if len(c.images) > 1 else ''}); use the dataset's own "
                "label scheme (--label_scheme auto) or one whose channels are the dataset's")


def datalist_from_cases(cases: Sequence[Case], name: str, layout: str, label_scheme: str, folds: int = 5,
                        seed: int = 0) -> dict:
    """A datalist (see the module docstring) of ``cases``, folds assigned over the labelled ones.

    ``channels`` and ``regions`` are those of ``label_scheme``'s description (:func:`pipeline.labels.describe`).

    Raises:
        DatasetError: a case whose number of images is not the description's number of channels.
    """
    desc = describe(label_scheme)
    _check_channel_count(cases, desc)
    labelled = [c for c in cases if c.label is not None]
    fold_of = assign_folds([c.case_id for c in labelled], folds, seed) if labelled else {}
    return {
        "name": name,
        "layout": layout,
        "label_scheme": label_scheme,
        "channels": list(desc.channels),
        "regions": list(desc.regions),
        "folds": folds,
        "seed": seed,
        "training": [{**c.to_item(), "fold": fold_of[c.case_id]} for c in labelled],
        "test": [c.to_item() for c in cases if c.label is None],
    }


def build_datalist(root: str | os.PathLike, folds: int = 5, seed: int = 0, *, layout: str | None = None,
                   label_scheme: str | None = None) -> dict:
    """Discover the cases under ``root`` and return a datalist (see the module docstring) with folds assigned.

    The layout is detected unless given; the label scheme is the layout's unless given (``auto``/None).
    """
    scan = scan_dataset(root, layout)
    cases = _usable_cases(scan)
    scheme = resolve_label_scheme(label_scheme) if label_scheme not in (None, "auto") else scan.layout.label_scheme
    return datalist_from_cases(cases, scan.root.name, scan.layout.layout, scheme, folds, seed)


def write_datalist(root: str | os.PathLike, out: str | os.PathLike, folds: int = 5, seed: int = 0, *,
                   layout: str | None = None, label_scheme: str | None = None, force: bool = False) -> dict:
    """:func:`build_datalist` and write it to ``out`` as JSON (atomically: never a half-written file).

    A datalist is an input of the runs trained on it: an existing ``out`` with other content (other folds, say)
    is refused unless ``force``; the same content is left as it is.

    Raises:
        DatasetError: ``out`` exists with other content and not ``force``.
    """
    from pipeline.files import atomic_write_text

    datalist = build_datalist(root, folds, seed, layout=layout, label_scheme=label_scheme)
    out = Path(out)
    text = json.dumps(datalist, indent=2)
    if out.exists() and not force:
        if out.read_text() == text:
            return datalist
        raise DatasetError(f"{out} already exists with other content (another split or dataset; runs may have been "
                           "trained on it): write the new datalist elsewhere (--out), or pass --force to replace it")
    atomic_write_text(out, text)
    return datalist


# ----------------------------------------------------------------------------------------------------------------
# Datalists: one schema, validated when loaded
# ----------------------------------------------------------------------------------------------------------------

#: Top-level keys of a MONAI model-zoo datalist (e.g. ``brats_mri_segmentation``), which carries its own split.
MODEL_ZOO_KEYS: tuple[str, ...] = ("training", "validation", "testing")
#: Fold given to a model-zoo datalist's ``validation`` items (its one split) and to its ``training`` items.
MODEL_ZOO_FOLDS: dict[str, int] = {"validation": 0, "training": 1}

#: ``(separator, suffix)`` just before ``.nii``/``.nii.gz`` -> ``(channel of CHANNELS or "seg", layout)``.
_NAMED: dict[tuple[str, str], tuple[str, str]] = {
    **{("_", s): (c, "brats2021") for s, c in zip(BRATS2021_SUFFIXES, CHANNELS, strict=True)},
    ("_", "seg"): ("seg", "brats2021"),
    **{("-", s): (c, "brats2023") for s, c in zip(BRATS2023_SUFFIXES, CHANNELS, strict=True)},
    ("-", "seg"): ("seg", "brats2023"),
}


def _named_split(path: str | os.PathLike) -> tuple[str, str, str] | None:
    """``(case part of the stem, channel or "seg", layout)`` of a BraTS file name, or None (see :func:`named_as`)."""
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
    found = _named_split(path)
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
    names = sorted(n for n in _nifti_names(root) if _is_nifti(n))
    split = [_named_split(root / n) for n in names]
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
    spec = LAYOUTS[layout]
    return case, LayoutInfo(layout, spec.label_scheme, f"{root} holds the files of one case, {cid}")


def check_case_id(case_id: object, where: str) -> str:
    """``case_id`` when it is safe as a file name, else :class:`DatasetError` (``where`` starts the message).

    Outputs are written as ``<output_dir>/<case>.nii.gz``, so an id must be a plain, non-empty name: no ``/`` or
    ``\\``, not ``.`` or ``..``, not absolute: nothing may ever be written outside ``output_dir``.
    """
    if case_id is None:
        raise DatasetError(f"{where}: the item has no \"case\" id; give each item a plain case name such as "
                           "BraTS2021_00000 (outputs are written as <output_dir>/<case>.nii.gz)")
    if not isinstance(case_id, str) or not case_id.strip():
        reason = "is empty" if isinstance(case_id, str) else f"is a {type(case_id).__name__}"
    elif "/" in case_id or "\\" in case_id or os.path.isabs(case_id):
        reason = "holds a path separator"
    elif case_id in (".", ".."):
        reason = f"is {case_id!r}"
    elif "\0" in case_id:
        reason = "holds a NUL character"
    else:
        return case_id
    raise DatasetError(
        f"{where}: case id {case_id!r} {reason}, so it cannot name a file (outputs are written as "
        "<output_dir>/<case>.nii.gz, never outside it); rename the case to a plain name such as BraTS2021_00000"
    )


def _ordered_images(images: list[str], where: str) -> list[str]:
    """The 4 image files in :data:`CHANNELS` order, checked against what their names show (:func:`named_as`).

    Names that show nothing keep the given order; names that show the four contrasts once each in another order
    are reordered (one INFO line: the names say it, it is not a guess); names that show anything else (a
    contrast twice, a segmentation, a named file in another contrast's place) are refused.
    """
    chans = [s[0] if (s := named_as(p)) else None for p in images]
    if not any(chans):
        return images
    if all(chans) and sorted(c for c in chans if c) == sorted(CHANNELS):
        if chans != list(CHANNELS):
            logger.info("%s: image files listed as %s (their names say so); reordered to %s", where,
                        ", ".join(c for c in chans if c), ", ".join(CHANNELS))
            return [images[chans.index(c)] for c in CHANNELS]
        return images
    known = [c for c in chans if c]
    if "seg" in chans or len(set(known)) != len(known) or all(chans):
        why = f"not the four contrasts {', '.join(CHANNELS)} once each"
    elif any(c and c != CHANNELS[i] for i, c in enumerate(chans)):
        why = "a named file is in another contrast's place and the other names do not show theirs"
    else:
        return images  # each named file is in its own place
    names = ", ".join(f"{Path(p).name} ({c or 'name shows nothing'})" for p, c in zip(images, chans, strict=True))
    raise DatasetError(f"{where}: image files {names}: {why}; list one file of each contrast, in the order "
                       f"{', '.join(CHANNELS)} (a segmentation belongs in \"label\")")


def _checked_channel_index(index: object, images: list, where: str,
                           channels: Sequence[str] = CHANNELS) -> list[int]:
    """An MSD item's ``channel_index`` (the position in its one 4D file of each channel of ``channels``)."""
    n, names = len(channels), ", ".join(channels)
    if len(images) != 1:
        raise DatasetError(f"{where}: \"channel_index\" goes with one 4D image file, but \"image\" lists "
                           f"{len(images)}; give one 4D file, or {n} files without \"channel_index\"")
    if index is None:
        raise DatasetError(
            f"{where}: one image file {Path(str(images[0])).name} and no \"channel_index\"; a 4D image needs the "
            f"position in it of {names}: add e.g. \"channel_index\": [1, 2, 3, 0] for MSD's FLAIR, "
            "T1w, T1gd, T2w ([0, 1, 2, 3] if the file holds them in that order)")
    ok = isinstance(index, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in index)
    if not ok or sorted(index) != list(range(n)):  # type: ignore[arg-type]
        raise DatasetError(f"{where}: \"channel_index\" is {index!r}; expected the position in the 4D image of "
                           f"{names}, a permutation of 0..{n - 1} such as {list(range(n))[::-1]}")
    return list(index)  # type: ignore[arg-type]


def _model_zoo_case_id(item: dict) -> object:
    """The case id of a model-zoo item (it has none): the label's stem without ``_seg``/``-seg``; else, for BraTS
    names, the first image's stem without its contrast suffix (its case folder's name in a BraTS download);
    else the first image's stem."""
    label = item.get("label")
    named = _named_split(label) if isinstance(label, (str, os.PathLike)) else None
    if named and named[1] == "seg":
        return named[0]
    image = item.get("image")
    first = image[0] if isinstance(image, list) and image else image
    if not isinstance(first, (str, os.PathLike)):
        return None
    named = _named_split(first)
    return named[0] if named else _stem(Path(first).name)


@dataclass
class _DatalistReader:
    """Reads the items of one datalist JSON into the schema: case id, absolute existing paths, channel order."""

    path: Path
    model_zoo: bool
    data_root: Path | None = None  # model-zoo lists: the data root their relative paths may start from
    missing: list[str] = field(default_factory=list)  # one refusal line per missing file; the first is raised
    channels: tuple[str, ...] = CHANNELS  # the channels of the datalist's label scheme, one image file each

    def __post_init__(self) -> None:
        self.base = Path(os.path.abspath(self.path.parent))

    def file(self, value: object, what: str, where: str) -> str:
        """``value`` as an absolute path (relative: from the datalist's folder); a missing file is noted."""
        if not isinstance(value, str) or not value.strip():
            raise DatasetError(f"{where}: {what} {value!r} is not a file path; give the path of a .nii.gz file")
        given = os.path.expanduser(value)
        found = os.path.abspath(os.path.join(self.base, given))
        if os.path.isfile(found):
            return found
        if self.model_zoo and self.data_root is not None and not os.path.isabs(given):
            in_root = os.path.abspath(os.path.join(self.data_root, given))
            if os.path.isfile(in_root):
                return in_root
        if os.path.isabs(given):
            self.missing.append(f"{where}: {what} {value} does not exist; fix the path or remove the case")
        elif self.model_zoo:
            root = f" nor in --dataset_dir {self.data_root}" if self.data_root is not None else ""
            self.missing.append(
                f"{where}: {what} {value} is not found in the datalist's folder {self.base}{root}; pass "
                "--dataset_dir as the data root the datalist's paths are relative to, or make the paths absolute")
        else:
            self.missing.append(
                f"{where}: {what} {value} is not found in the datalist's folder {self.base} (relative paths are "
                "read from there); fix the path, or rewrite the datalist with: python -m pipeline datalist "
                f"DATASET_DIR --out {self.path}")
        return found

    def item(self, raw: object, section: str, pos: int) -> dict:
        """One item as ``{"case", "image": [a path per channel] | [4D path], "channel_index"?, "label"?, "fold"?}``."""
        where = f"datalist {self.path}: {section} item {pos}"
        if not isinstance(raw, dict):
            raise DatasetError(f"{where} is {type(raw).__name__}, not an object like "
                               '{"case": ..., "image": [...], "label": ..., "fold": ...}')
        item = dict(raw)
        case = item.get("case", _model_zoo_case_id(item) if self.model_zoo else None)
        item["case"] = check_case_id(case, where)
        where = f"datalist {self.path}: case {item['case']}"
        image = item.get("image")
        images = [image] if isinstance(image, str) else image
        n, names = len(self.channels), ", ".join(self.channels)
        if not isinstance(images, list) or not images:
            raise DatasetError(f"{where}: \"image\" is {image!r}; expected a list of {n} file(s) "
                               f"({names}) or one 4D file with \"channel_index\"")
        index = item.get("channel_index")
        if index is not None or (len(images) == 1 and n != 1):
            item["channel_index"] = _checked_channel_index(index, images, where, self.channels)
        elif len(images) != n:
            raise DatasetError(f"{where}: \"image\" lists {len(images)} file(s); expected {n} ({names}, the "
                               "channels of the datalist's label scheme) or one 4D file with \"channel_index\"")
        item["image"] = [self.file(p, "image file", where) for p in images]
        if "channel_index" not in item and self.channels == CHANNELS:
            item["image"] = _ordered_images(item["image"], where)
        elif any((named_as(p) or ("",))[0] == "seg" for p in item["image"]):
            seg = next(p for p in item["image"] if (named_as(p) or ("",))[0] == "seg")
            what = "4D image" if "channel_index" in item else "image"
            raise DatasetError(f"{where}: the {what} {Path(seg).name} is named as a segmentation; give the "
                               f"segmentation as \"label\" and the {what} as \"image\"")
        if item.get("label") is not None:
            item["label"] = self.file(item["label"], "label file", where)
            shown = named_as(item["label"])
            if shown and shown[0] != "seg":
                raise DatasetError(f"{where}: the label file {Path(item['label']).name} is named as the {shown[0]} "
                                   "contrast; give the segmentation file as \"label\"")
        elif section in ("training", "validation"):
            raise DatasetError(f"{where}: a {section} item needs a \"label\" (its segmentation); add it, or move the "
                               f"case to \"{'testing' if self.model_zoo else 'test'}\" (cases to segment only)")
        else:
            item.pop("label", None)
        if self.model_zoo:
            if section in MODEL_ZOO_FOLDS:
                item["fold"] = MODEL_ZOO_FOLDS[section]
        elif section == "training":
            fold = item.get("fold")
            if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
                raise DatasetError(f"{where}: \"fold\" is {fold!r}; every training item needs a fold number >= 0: "
                                   "rewrite the datalist with: python -m pipeline datalist DATASET_DIR --out "
                                   f"{self.path}")
        return item


def _is_model_zoo(raw: dict) -> bool:
    """Whether a datalist is MONAI model-zoo style: ``validation``/``testing`` keys, or items without case/fold."""
    if "validation" in raw or "testing" in raw:
        return True
    items = raw.get("training")
    return bool(items) and isinstance(items, list) and all(
        isinstance(it, dict) and "case" not in it and "fold" not in it for it in items)


def read_datalist(path: str | os.PathLike, dataset_dir: str | os.PathLike | None = None) -> dict:
    """A datalist JSON, validated, with absolute paths and the images in :data:`CHANNELS` order.

    Two formats are read:

    * ours (:func:`write_datalist`, see the module docstring): ``training`` (labelled, each with ``fold``) and
      ``test``; relative paths are read from the JSON file's own folder (not the current directory).
    * MONAI model-zoo (e.g. ``brats_mri_segmentation``): ``training``, ``validation`` and ``testing`` lists of
      ``{"image": [...], "label": ...}`` without case or fold. It is read with its OWN split: its ``validation``
      items become fold 0 and its ``training`` items fold 1 (so ``--fold 0`` validates on its validation cases,
      none dropped), ``testing`` becomes ``test``, and ``"split": "model-zoo"`` is recorded. Case ids come from
      the file names (:func:`_model_zoo_case_id`). A relative path not found from the JSON's folder is looked
      for under ``dataset_dir`` (model-zoo lists are relative to their data root). The layout and label scheme
      are recorded when the names show them.

    Every item is checked: a case id unique and safe as a file name (:func:`check_case_id`); ``image`` one file
    per channel of the datalist's label scheme (:func:`pipeline.labels.describe`; ``brats`` when it names neither
    scheme nor layout): for the 4 BraTS channels reordered into CHANNELS order when their BraTS names show the
    four contrasts in another order, refused when the names show anything but the four contrasts once each; or
    one 4D file with ``channel_index`` (a permutation of 0..N-1); training and validation items labelled; every
    file present. An nnU-Net datalist (``"label_scheme": "nnunet:<dataset.json>"``) needs that dataset.json.

    Raises:
        DatasetError: the first problem, as one line naming the datalist, the case, the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"datalist {path} does not exist; write one with: python -m pipeline datalist DATASET_DIR --out {path}")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"datalist {path} is not valid JSON ({e}); fix it, or rewrite it with: "
                           f"python -m pipeline datalist DATASET_DIR --out {path}") from None
    sections = ("training", "test", *MODEL_ZOO_KEYS[1:])
    if not isinstance(raw, dict) or not any(k in raw for k in sections):
        raise DatasetError(f"datalist {path} has none of the keys training, test (ours) or training, validation, "
                           f"testing (MONAI model-zoo); write one with: python -m pipeline datalist DATASET_DIR "
                           f"--out {path}")
    for key in sections:
        if not isinstance(raw.get(key, []), list):
            raise DatasetError(f"datalist {path}: \"{key}\" is {type(raw[key]).__name__}, not a list of items")
    zoo = _is_model_zoo(raw)
    if zoo and "test" in raw:
        raise DatasetError(f"datalist {path} mixes our \"test\" key with MONAI model-zoo keys (validation, testing); "
                           "keep one format")
    if isinstance(raw.get("label_scheme"), str) and raw["label_scheme"].startswith(NNUNET_PREFIX):
        # a relative dataset.json is read from the datalist's folder, as its relative image paths are
        given = raw["label_scheme"][len(NNUNET_PREFIX):]
        raw = {**raw, "label_scheme": NNUNET_PREFIX + os.path.abspath(os.path.join(path.parent, given))}
    channels = _datalist_channels(path, raw)
    reader = _DatalistReader(path, zoo, Path(dataset_dir).expanduser() if dataset_dir else None, channels=channels)
    parts = {key: [reader.item(it, key, i) for i, it in enumerate(raw.get(key, []))]
             for key in ((*MODEL_ZOO_KEYS,) if zoo else ("training", "test"))}
    _refuse_duplicate_ids(path, parts, zoo)
    if reader.missing:
        more = f" ({len(reader.missing) - 1} more file(s) missing)" if len(reader.missing) > 1 else ""
        raise DatasetError(reader.missing[0] + more)
    if not zoo:
        return {**raw, "training": parts["training"], "test": parts["test"]}
    return _model_zoo_datalist(path, raw, parts)


def _datalist_channels(path: Path, raw: dict) -> tuple[str, ...]:
    """The channels a datalist's items must give: those of its label scheme's description (the layout's scheme when
    it names none, ``brats`` without a layout); its ``channels``, when given, must be as many.

    Raises:
        DatasetError: an unknown layout or scheme, an nnU-Net scheme whose dataset.json cannot be used, a layout
            ``nnunet`` without a scheme, ``channels`` of another length.
    """
    layout, scheme = raw.get("layout"), raw.get("label_scheme")
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"datalist {path}: layout {layout!r} is unknown; expected one of {', '.join(LAYOUTS)}")
    if scheme is not None and not isinstance(scheme, str):
        raise DatasetError(f"datalist {path}: label_scheme {scheme!r} is not a string; expected one of "
                           f"{', '.join(LABEL_SCHEMES)} or {NNUNET_PREFIX}<path to dataset.json>")
    if scheme is None and layout == "nnunet":
        raise DatasetError(f"datalist {path}: layout nnunet and no label_scheme; add \"label_scheme\": "
                           f"\"{NNUNET_PREFIX}/path/to/dataset.json\" (the dataset's own), or rewrite the datalist "
                           f"with: python -m pipeline datalist DATASET_DIR --out {path}")
    if scheme is not None and scheme not in LABEL_SCHEMES and not scheme.startswith(NNUNET_PREFIX):
        raise DatasetError(f"datalist {path}: label_scheme {scheme!r} is unknown; expected one of "
                           f"{', '.join(LABEL_SCHEMES)} or {NNUNET_PREFIX}<path to dataset.json>")
    try:
        desc = describe(scheme or LAYOUTS[layout or "brats2021"].label_scheme)
    except UserError as e:
        raise DatasetError(f"datalist {path}: {e}") from None
    given = raw.get("channels")
    if given is not None and (not isinstance(given, list) or len(given) != len(desc.channels)):
        raise DatasetError(f"datalist {path}: \"channels\" is {given!r}, but its label scheme {desc.name} has "
                           f"{len(desc.channels)} channel(s) ({', '.join(desc.channels)}); fix \"channels\" or "
                           f"rewrite the datalist with: python -m pipeline datalist DATASET_DIR --out {path}")
    return tuple(desc.channels)


def _refuse_duplicate_ids(path: Path, parts: dict[str, list[dict]], zoo: bool) -> None:
    seen: dict[str, tuple[str, dict]] = {}
    for section, items in parts.items():
        for it in items:
            cid = it["case"]
            if cid not in seen:
                seen[cid] = (section, it)
                continue
            other, first = seen[cid]
            if zoo and {other, section} == {"training", "validation"}:
                raise DatasetError(
                    f"datalist {path}: case {cid} is both a validation case ({Path(first['image'][0]).name}) and a "
                    f"training case ({Path(it['image'][0]).name}) of this model-zoo datalist; a case must not "
                    "validate the model it trains: remove it from one of the two lists")
            raise DatasetError(
                f"datalist {path}: case id {cid} is used twice ({other}: {first['image'][0]}; {section}: "
                f"{it['image'][0]}); outputs are named <case>.nii.gz, so ids must be unique: remove the duplicate "
                "or rename one case")


def _model_zoo_datalist(path: Path, raw: dict, parts: dict[str, list[dict]]) -> dict:
    items = [it for key in MODEL_ZOO_KEYS for it in parts[key]]
    layouts = {s[1] for it in items for p in it["image"] if (s := named_as(p))}
    if any("channel_index" in it for it in items):
        layouts.add("msd")
    unnamed = [p for it in items if "channel_index" not in it for p in it["image"] if named_as(p) is None]
    if unnamed:
        logger.warning("datalist %s (MONAI model-zoo): image names such as %s do not show their contrast, so each "
                       "item's 4 files are taken as %s in the listed order (the model-zoo brats_mri_segmentation "
                       "bundle lists T1ce, T1, T2, FLAIR: reorder such lists)", path, Path(unnamed[0]).name,
                       ", ".join(CHANNELS))
    dl: dict = {"name": raw.get("name") or path.stem, "split": "model-zoo"}
    if len(layouts) == 1:
        layout = layouts.pop()
        dl.update(layout=layout, label_scheme=LAYOUTS[layout].label_scheme)
    logger.info("datalist %s (MONAI model-zoo): its %d validation case(s) are fold %d, its %d training case(s) fold "
                "%d, its %d testing case(s) test", path, len(parts["validation"]), MODEL_ZOO_FOLDS["validation"],
                len(parts["training"]), MODEL_ZOO_FOLDS["training"], len(parts["testing"]))
    return {**dl, "channels": list(CHANNELS), "regions": list(REGIONS),
            "training": [*parts["validation"], *parts["training"]], "test": parts["testing"]}


def load_datalist(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                  folds: int = 5, seed: int = 0) -> dict:
    """The datalist from a JSON file when ``datalist`` is given (validated, :func:`read_datalist`; ``dataset_dir``
    is then only the data root of a model-zoo list's relative paths), else discovered in ``dataset_dir``."""
    if datalist:
        return read_datalist(datalist, dataset_dir)
    if not dataset_dir:
        raise DatasetError("neither a datalist nor a dataset_dir was given; pass --dataset_dir /path/to/BraTS")
    return build_datalist(dataset_dir, folds, seed)


def _folds_present(dl: dict) -> list[int]:
    return sorted({int(it["fold"]) for it in dl.get("training", [])})


def split_items(dl: dict, fold: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, validation)`` items of a datalist: fold ``fold`` of its labelled cases validates, the rest train.

    A model-zoo datalist (``"split": "model-zoo"``) has one split: ``fold`` 0, its validation cases.

    Raises:
        DatasetError: no labelled case, ``fold`` is not one of the datalist's folds, or not 0 for a model-zoo list.
    """
    items = dl.get("training", [])
    if dl.get("split") == "model-zoo":
        if fold != MODEL_ZOO_FOLDS["validation"]:
            raise DatasetError(f"fold {fold}: a model-zoo datalist has one split, its validation cases: use --fold 0")
        if not any(int(it["fold"]) == fold for it in items):
            raise DatasetError(f"the model-zoo datalist {dl.get('name', '')} has no validation case; add a "
                               "\"validation\" list to it, or write a datalist with folds: python -m pipeline "
                               "datalist DATASET_DIR --out datalist.json")
    if not items:
        raise DatasetError("the datalist has no labelled case (no segmentation file found): training needs labels")
    present = _folds_present(dl)
    if fold not in present:
        raise DatasetError(f"fold {fold} is not in the datalist (folds present: {present}); pass --fold one of those")
    train = [it for it in items if int(it["fold"]) != fold]
    val = [it for it in items if int(it["fold"]) == fold]
    return train, val


def training_split(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                   fold: int = 0, folds: int = 5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, validation)`` items: fold ``fold`` of the datalist's labelled cases validates, the rest train.

    Raises:
        DatasetError: no labelled case, or ``fold`` is not one of the datalist's folds.
    """
    return split_items(load_datalist(datalist, dataset_dir, folds, seed), fold)


def check_infer_fold(datalist: str | os.PathLike | None, fold: int | None) -> int | None:
    """``fold`` as an int (None for all cases: None or negative); refused when set without a datalist.

    Raises:
        DatasetError: a fold without a datalist (folds are defined by a datalist).
    """
    if fold is None or int(fold) < 0:
        return None
    if not datalist:
        raise DatasetError(
            f"--infer_fold {fold} needs --datalist: folds are defined by a datalist (python -m pipeline datalist "
            "DATASET_DIR --out datalist.json); without one every case of --dataset_dir is segmented, so drop "
            "--infer_fold")
    return int(fold)


def inference_items(datalist: str | os.PathLike | None, dataset_dir: str | os.PathLike | None,
                    fold: int | None = None) -> list[dict]:
    """The items to segment: every case of ``dataset_dir`` (labelled or not), or of a datalist.

    With a datalist and ``fold`` set (>= 0), only that fold's labelled cases (the validation cases of a
    training run); with a datalist and no fold, its ``training`` and ``test`` entries. ``dataset_dir`` with a
    datalist is only the data root of a model-zoo list's relative paths (:func:`read_datalist`). A folder holding
    one case's files (:func:`single_case`) gives that case.

    Raises:
        DatasetError: ``fold`` set without a datalist, or not one of the datalist's folds (those present listed).
    """
    fold = check_infer_fold(datalist, fold)
    if datalist:
        dl = load_datalist(datalist, dataset_dir)
        if fold is None:
            return [*dl.get("training", []), *dl.get("test", [])]
        present = _folds_present(dl)
        if fold not in present:
            raise DatasetError(f"fold {fold} is not in the datalist {datalist} (folds present: {present or 'none'}); "
                               "pass --infer_fold one of those, or drop it to segment every case")
        return [it for it in dl["training"] if int(it["fold"]) == fold]
    one = single_case(dataset_dir) if dataset_dir else None
    if one:
        return [one[0].to_item()]
    return [c.to_item() for c in discover_cases(dataset_dir)]


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing cache
# ----------------------------------------------------------------------------------------------------------------


def _describe(obj: object, depth: int = 0) -> object:
    """A JSON-able description of a transform's settings (class names and plain attribute values)."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return [_describe(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v, depth + 1) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, type):
        return obj.__qualname__
    if hasattr(obj, "tolist") and hasattr(obj, "dtype") and hasattr(obj, "shape"):  # NumPy/torch scalars and arrays
        n = int(np.prod(obj.shape)) if obj.shape else 1
        return obj.tolist() if n <= 64 else f"{type(obj).__name__}{tuple(obj.shape)}:{obj.dtype}"
    if isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)):
        return getattr(obj, "__qualname__", type(obj).__qualname__)
    if depth < 6 and hasattr(obj, "__dict__"):
        attrs = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        return {"class": type(obj).__qualname__, **{k: _describe(v, depth + 1) for k, v in sorted(attrs.items())}}
    return type(obj).__qualname__


def transform_hash(transforms: object) -> bytes:
    """Hash of the class and settings of each transform (a ``PersistentDataset`` ``hash_transform``).

    MONAI's own choices fall back to the class names only, so a changed ``roi_size`` would reuse a stale cache
    (a MONAI 1.6.1 workaround, :mod:`pipeline.monai_workarounds`).
    """
    text = json.dumps(_describe(transforms), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16].encode()


def item_hash(item: dict) -> bytes:
    """Cache key of a datalist item: the item plus the size and modification time of each of its files,
    so that a file replaced on disk (a re-downloaded case, say) is read and preprocessed again."""
    stats = []
    for key in sorted(item):
        values = item[key] if isinstance(item[key], (list, tuple)) else [item[key]]
        for v in values:
            if isinstance(v, str) and v.endswith(NIFTI_EXTENSIONS):
                try:
                    st = os.stat(v)
                    stats.append([v, st.st_size, st.st_mtime_ns])
                except OSError:
                    stats.append([v, None, None])
    text = json.dumps([item, stats], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest().encode()


def cached_dataset(data: Sequence[dict], transform: object, cache_dir: str | os.PathLike | None = None,
                   cache_rate: float = 1.0, num_workers: int | None = 1) -> object:
    """The training/validation dataset: MONAI ``CacheDataset`` (in memory), or ``PersistentDataset`` on disk.

    With ``cache_dir`` empty, a ``CacheDataset`` keeps ``cache_rate`` of the preprocessed cases in memory for
    this run. With ``cache_dir`` set, the deterministic preprocessing of each case (everything before the
    first random transform) is written once to ``cache_dir/<hash>.pt`` and read back by every later epoch and
    run, so gzip is decoded once per case. The key covers the item, its files' size and modification time
    (:func:`item_hash`) and the preprocessing settings (:func:`transform_hash`): change either and the case is
    preprocessed again. Delete the folder to reclaim the space.
    """
    from monai.data import CacheDataset, PersistentDataset

    if cache_dir:
        return PersistentDataset(data=data, transform=transform, cache_dir=str(cache_dir), hash_func=item_hash,
                                 hash_transform=transform_hash)
    return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers)
