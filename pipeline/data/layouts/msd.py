"""The Medical Segmentation Decathlon layout (Task01_BrainTumour): ``imagesTr/<case>.nii.gz`` one 4D
``(X, Y, Z, 4)`` image per case, ``labelsTr/``, ``imagesTs/``; its spec, scanner and writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.core.files import atomic_write_text, read_json
from pipeline.core.nifti import is_nifti, nifti_names, nifti_stem, save_nifti
from pipeline.data.labels import CHANNELS, NUMBERING, contrast_of, contrast_spellings, role_conflicts, role_of_name
from pipeline.data.layouts.base import Case, DatasetError, DatasetScan, LayoutInfo, LayoutSpec, Problem, both_extensions

MSD = LayoutSpec("msd", "Medical Segmentation Decathlon Task01_BrainTumour", "msd", (), "",
                "<root>/imagesTr/BRATS_001.nii.gz (4D) and <root>/labelsTr/BRATS_001.nii.gz", "labelsTr/<case>.nii.gz")


#: Task01's names of its classes, by role (its dataset.json's ``labels`` table).
_MSD_LABEL_NAMES: dict[str, str] = {"ED": "edema", "NCR": "non-enhancing tumor", "ET": "enhancing tumour"}


#: Channel order inside an MSD Task01 4D image (its ``dataset.json`` ``modality`` table).
MSD_CHANNELS: tuple[str, ...] = ("FLAIR", "T1w", "T1gd", "T2w")


def detect(root: Path) -> LayoutInfo | None:
    """The MSD layout when ``root`` has ``imagesTr/`` or ``imagesTs/``, else None."""
    if not ((root / "imagesTr").is_dir() or (root / "imagesTs").is_dir()):
        return None
    counts = {d: len([n for n in nifti_names(root / d) if is_nifti(n)]) for d in ("imagesTr", "labelsTr", "imagesTs")}
    found = ", ".join(f"{d}/ ({n} file(s))" for d, n in counts.items() if (root / d).is_dir())
    return LayoutInfo("msd", "msd", f"{root} holds {found}: one 4D image per case", MSD.title)


def msd_channel_index(modalities: Sequence[str]) -> tuple[int, ...]:
    """Position in a 4D MSD image of each channel of `CHANNELS`, from its modality names in file order.

    ``("FLAIR", "T1w", "T1gd", "T2w")`` (Task01) gives ``(1, 2, 3, 0)``.

    Raises:
        DatasetError: a name is unknown, or the names do not cover the four contrasts exactly once.
    """
    mapped = [contrast_of(m) for m in modalities]
    if None in mapped or sorted(mapped) != sorted(CHANNELS):
        raise DatasetError(
            f"modalities {list(modalities)} do not name the four contrasts T1, T1ce (T1gd), T2 and FLAIR once each; "
            f"known names: {contrast_spellings()}"
        )
    return tuple(mapped.index(c) for c in CHANNELS)


def _msd_modalities(root: Path, scan: DatasetScan) -> tuple[int, ...]:
    """The channel index from ``dataset.json``'s ``modality`` table, or MSD Task01's order without one (a warning
    says so: the order is then the Decathlon's by assumption, not read from the data)."""
    meta = root / "dataset.json"
    default = msd_channel_index(MSD_CHANNELS)

    def assumed(why: str) -> tuple[int, ...]:
        if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
            scan.problems.append(Problem("", str(meta), "warning", (
                f"dataset {root}: {why}, so the 4D images are read as the Decathlon's Task01 stores them "
                f"({', '.join(MSD_CHANNELS)}); if yours are stacked otherwise, add a dataset.json whose modality "
                'table names them in file order, e.g. {"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", '
                '"3": "T2w"}}')))
        return default

    if not meta.is_file():
        return assumed("no dataset.json")
    try:
        table = read_json(meta).get("modality")
        if table is None:
            return assumed("dataset.json has no modality table")
        names = [table[k] for k in sorted(table, key=int)]
        return msd_channel_index(names)
    except (ValueError, KeyError, AttributeError, TypeError, DatasetError) as e:
        scan.problems.append(Problem("", str(meta), "error", (
            f"dataset {root}: dataset.json's modality table cannot be read ({e}); expected e.g. "
            '{"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}: fix it or remove the modality entry')))
        return default


def _check_msd_labels(root: Path, scan: DatasetScan) -> None:
    """An error when ``dataset.json``'s ``labels`` table names its values otherwise than the Decathlon's numbering
    (`NUMBERING` ``msd``: 1 oedema, 2 non-enhancing, 3 enhancing), read by the roles its names state
    (`role_of_name`); names that state no role, or no table, say nothing."""
    meta = root / "dataset.json"
    try:
        table = read_json(meta).get("labels") if meta.is_file() else None
        named = {int(v): r for v, name in (table or {}).items() if (r := role_of_name(name)) is not None}
    except (ValueError, AttributeError, TypeError):
        return  # an unreadable table is the modality reading's to name, or holds no usable roles
    conflicts = role_conflicts(named, {v: r for r, v in NUMBERING["msd"].items()}, ("the table", "Task01"))
    if conflicts:
        scan.problems.append(Problem("", str(meta), "error", (
            f"dataset {root}: dataset.json's labels table numbers its classes otherwise than the Decathlon's Task01 "
            f"(1 oedema, 2 non-enhancing, 3 enhancing): label {'; '.join(conflicts)}; "
            "relabel the files to Task01's numbering, or describe the dataset as an nnU-Net raw dataset "
            "(dataset.json with channel_names and labels)"), labels_only=True))


def scan_msd(root: Path, scan: DatasetScan) -> None:
    _check_msd_labels(root, scan)
    index = _msd_modalities(root, scan)
    doubled: set[str] = set()  # case ids with a file present as both .nii and .nii.gz: refused

    def files(sub: str) -> dict[str, str]:
        out: dict[str, str] = {}
        names = nifti_names(root / sub)
        for n in sorted(names):
            if not is_nifti(n):
                continue
            cid = nifti_stem(n)
            pair = both_extensions(names, cid)
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
            scan.problems.append(Problem(cid, str(root / "labelsTr" / f"{cid}.nii.gz"), "warning", (
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


def write_case(out: Path, case_id: str, images: dict[str, np.ndarray], seg: np.ndarray,
               affine: np.ndarray) -> Path:
    """``imagesTr/<case>.nii.gz`` ``(X, Y, Z, 4)`` float32 in MSD channel order (FLAIR, T1w, T1gd, T2w) and
    ``labelsTr/<case>.nii.gz`` (``seg`` already in MSD's numbering); ``images`` by channel name."""
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    index = msd_channel_index(MSD_CHANNELS)
    order = [CHANNELS[index.index(i)] for i in range(len(CHANNELS))]
    image = np.stack([images[c] for c in order], axis=-1).astype(np.float32)
    path = out / "imagesTr" / f"{case_id}.nii.gz"
    save_nifti(image, affine, path)
    save_nifti(seg, affine, out / "labelsTr" / f"{case_id}.nii.gz")
    return path


def write_dataset_json(out: Path, names: Sequence[str]) -> None:
    """``dataset.json`` in the Decathlon's form: modalities, labels and the training list."""
    meta = {
        "name": "BRATS",
        "description": "Synthetic BraTS-like cases in the layout of Task01_BrainTumour (python -m pipeline synth)",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", **{str(v): _MSD_LABEL_NAMES[r] for r, v in NUMBERING["msd"].items()}},
        "numTraining": len(names),
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in names],
        "test": [],
    }
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=4))
