"""nnU-Net v2's raw format: ``dataset.json`` (``channel_names``, ``labels``), ``imagesTr/<case>_XXXX.nii.gz``
one 3D file per channel, ``labelsTr/<case>.nii.gz``, ``imagesTs/``; its spec, scanner and writer. Its label scheme
is the dataset's own ``dataset.json`` (``nnunet:<path>``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text, read_json
from pipeline.core.nifti import NIFTI_EXTENSIONS, broken_links, is_nifti, nifti_names, save_nifti
from pipeline.data.labels import NNUNET_PREFIX, Description, describe
from pipeline.data.layouts.base import Case, DatasetError, DatasetScan, LayoutInfo, LayoutSpec, Problem

NNUNET = LayoutSpec("nnunet", "nnU-Net raw dataset (v2)", f"{NNUNET_PREFIX}<root>/dataset.json", (), "_",
                   "<root>/dataset.json with channel_names, <root>/imagesTr/<case>_0000.nii.gz (one file per "
                   "channel) and <root>/labelsTr/<case>.nii.gz", "labelsTr/<case>.nii.gz", numbered_channels=True)


#: The stem of an nnU-Net image file: ``<case>_<XXXX>``, XXXX the channel number (0000, 0001, ...).
_NNUNET_IMAGE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def nnunet_label_scheme(root: str | os.PathLike) -> str:
    """The label scheme of the nnU-Net raw dataset ``root``: ``nnunet:`` + the absolute path of its dataset.json."""
    return f"{NNUNET_PREFIX}{Path(root).expanduser().resolve() / 'dataset.json'}"


def dataset_json(root: Path) -> dict | None:
    """``root/dataset.json`` parsed when it is nnU-Net v2's (it has ``channel_names``), else None (none, or MSD's,
    which has ``modality``).

    Raises:
        DatasetError: a dataset.json that is no JSON object (a broken nnU-Net description was read as MSD).
    """
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} cannot be read as JSON ({e}): the dataset's description (nnU-Net's or the "
                           "Decathlon's) decides its channels and labels; fix or restore it") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} holds a JSON {type(meta).__name__}, not an object: the dataset's description "
                           "(nnU-Net's or the Decathlon's) is a table of channels and labels; fix or restore it")
    return meta if "channel_names" in meta else None


def detect(root: Path) -> LayoutInfo | None:
    """The nnU-Net layout when ``root/dataset.json`` has ``channel_names``, else None."""
    meta = dataset_json(root)
    if meta is None:
        return None
    table = meta["channel_names"]
    names = ", ".join(str(v) for v in table.values()) if isinstance(table, dict) else repr(table)
    counts = {d: len(nifti_names(root / d)) for d in ("imagesTr", "labelsTr", "imagesTs") if (root / d).is_dir()}
    found = ", ".join(f"{d}/ ({n} file(s))" for d, n in counts.items()) or "no imagesTr/ yet"
    return LayoutInfo("nnunet", nnunet_label_scheme(root),
                      f"{root / 'dataset.json'} has channel_names ({names}): one file per channel; {found}",
                      NNUNET.title)


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
    for name in sorted(nifti_names(root / sub)):
        stem = name[: -len(ending)] if name.endswith(ending) else None
        match = _NNUNET_IMAGE.match(stem) if stem and images else None
        if stem and not images:
            out[stem] = str(root / sub / name)
        elif match:
            out.setdefault(match["case"], {})[int(match["channel"])] = str(root / sub / name)
        elif is_nifti(name) or name.endswith(ending):
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


def scan_nnunet(root: Path, scan: DatasetScan) -> None:
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
            scan.problems.append(Problem(cid, str(root / "labelsTr" / f"{cid}{ending}"), "warning", (
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
    if not any(broken_links(root / d) for d in ("imagesTr", "labelsTr")):  # files not mounted: their count unknown
        _check_num_training(root, len([c for c in scan.cases if c.label is not None]), scan)


def _check_num_training(root: Path, labelled: int, scan: DatasetScan) -> None:
    """A warning when dataset.json's ``numTraining`` differs from the labelled cases found (nnU-Net refuses it)."""
    number = (dataset_json(root) or {}).get("numTraining")
    if isinstance(number, int) and not isinstance(number, bool) and number != labelled:
        scan.problems.append(Problem("", str(root / "dataset.json"), "warning", (
            f"dataset {root}: dataset.json says numTraining {number} but imagesTr/ and labelsTr/ hold {labelled} "
            "complete labelled case(s); nnU-Net's own tools refuse such a dataset: set numTraining to "
            f"{labelled}")))


def write_dataset_json(out: Path, meta: dict) -> Path:
    """Write ``out/dataset.json`` (nnU-Net v2: ``channel_names``, ``labels``, ``regions_class_order``,
    ``file_ending``, ...), atomically."""
    return atomic_write_text(out / "dataset.json", json.dumps(meta, indent=4))


def write_case(out: Path, case_id: str, images: Sequence[np.ndarray], seg: np.ndarray,
               affine: np.ndarray) -> Path:
    """``imagesTr/<case>_<XXXX>.nii.gz``, one per channel in order, and ``labelsTr/<case>.nii.gz`` (``seg`` in the
    dataset's numbering); returns the ``_0000`` file."""
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    paths = [out / "imagesTr" / f"{case_id}_{k:04d}.nii.gz" for k in range(len(images))]
    for path, image in zip(paths, images, strict=True):
        save_nifti(image, affine, path)
    save_nifti(seg, affine, out / "labelsTr" / f"{case_id}.nii.gz")
    return paths[0]
