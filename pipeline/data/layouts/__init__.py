"""The dataset layouts, one module each (`brats`, `msd`, `nnunet`), and the registry that detects and scans."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.guard import GRADE_FOLDERS, OutputGuard
from pipeline.core.guard import export_refusal as guard_export_refusal
from pipeline.core.nifti import NIFTI_EXTENSIONS, broken_links, is_nifti, nifti_stem
from pipeline.data.layouts import brats, msd, nnunet
from pipeline.data.layouts.base import (
    Case,
    DatasetError,
    DatasetScan,
    LayoutInfo,
    LayoutSpec,
    Problem,
    channel_permutation,
    existing_root,
    in_channel_order,
    order_by_name,
    output_key,
    refuse_case_clashes,
    with_case_ids,
)

logger = logging.getLogger(__name__)

__all__ = ["LAYOUTS", "Case", "DatasetError", "DatasetScan", "LayoutInfo", "LayoutSpec", "Problem", "detect_layout",
           "dataset_around", "output_guard", "refuse_dataset_inside_dataset", "refuse_inside_dataset",
           "channel_permutation", "discover_cases", "in_channel_order", "in_scheme_order", "no_case_message",
           "order_by_name", "output_key", "resolve_scheme", "scan_dataset", "usable_cases", "with_case_ids"]


#: Every layout by name, in the order they are detected (nnU-Net's dataset.json before MSD's folders).
LAYOUTS: dict[str, LayoutSpec] = {**brats.SPECS, "msd": msd.MSD, "nnunet": nnunet.NNUNET}


def no_case_message(root: Path) -> str:
    """Why ``root`` holds no case of any layout, and what the layouts look like."""
    single = brats.single_case_message(root)
    if single:
        return single
    layouts = "; ".join(f"{spec.title}: {spec.example}" for spec in LAYOUTS.values())
    return (f"no BraTS case found in {root}: expected one of these layouts: {layouts}. "
            "Generate a synthetic one with: python -m pipeline synth DIR [--layout brats2021|brats2023|msd|nnunet]")


def detect_layout(root: str | os.PathLike) -> LayoutInfo:
    """Which layout the folder ``root`` has, and why.

    A ``dataset.json`` with ``channel_names`` (nnU-Net v2) makes it ``nnunet``; else ``imagesTr/`` or
    ``imagesTs/`` makes it ``msd``; otherwise the case folders' file names decide between ``brats2021`` and
    ``brats2023``.

    Raises:
        DatasetError: ``root`` is missing, holds no case of any layout, or holds case folders of both BraTS layouts.
    """
    path = existing_root(root)
    for detect in (nnunet.detect, msd.detect, brats.detect):
        info = detect(path)
        if info is not None:
            return info
    raise DatasetError(no_case_message(path))


def scan_dataset(root: str | os.PathLike, layout: str | None = None) -> DatasetScan:
    """Find every case under ``root`` and every problem of discovery, without raising for one bad case.

    Args:
        root: the dataset folder.
        layout: ``brats2021``, ``brats2023``, ``msd`` or ``nnunet``; None detects it (`detect_layout`).

    Returns:
        The layout, the complete cases and the problems (a missing file, one case id twice, a file as both
        ``.nii`` and ``.nii.gz``, ...); a refused case is not among the cases.

    Raises:
        DatasetError: ``root`` is missing, the layout is unknown or cannot be detected; an nnU-Net dataset whose
            ``dataset.json`` cannot be used.
    """
    path = existing_root(root)
    if layout is None or layout == "auto":
        info = detect_layout(path)
    elif layout in LAYOUTS:
        scheme = nnunet.nnunet_label_scheme(path) if layout == "nnunet" else LAYOUTS[layout].label_scheme
        info = LayoutInfo(layout, scheme, "given", LAYOUTS[layout].title)
    else:
        raise DatasetError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)} (or auto)")
    scan = DatasetScan(path, info)
    if info.layout == "msd":
        msd.scan_msd(path, scan)
    elif info.layout == "nnunet":
        nnunet.scan_nnunet(path, scan)
    else:
        brats.scan_brats(path, LAYOUTS[info.layout], scan)
        ids = [*(c.case_id for c in scan.cases), *(p.case for p in scan.problems if p.case)]
        scan.layout = with_case_ids(info, ids)  # what the case ids tell of the numbering (BraTS-PED: nothing)
    report_broken_links(scan)
    refuse_case_clashes(scan)
    return scan


#: Where a layout reads cases or files below its root (and the root itself): BraTS 2018's grade folders, the
#: Decathlon's and nnU-Net's image and label folders.
CASE_PLACES = (".", "HGG", "LGG", "imagesTr", "labelsTr", "imagesTs")


def _linked_case(root: Path, link: Path, layout: str) -> tuple[str, bool]:
    """The case a link leading nowhere stands for, and whether it is a file the layout reads (else a stray link,
    such as a note's): a case folder (its name: the root's and the grade folders' entries are read), a BraTS case's
    contrast or label (its folder's name), an image ``imagesTr/<case>_<XXXX>`` (nnU-Net; the Decathlon's
    ``<case>``), ``imagesTs/...`` or a label ``labelsTr/<case>``."""
    parent, name = link.parent, link.name
    if parent == root and layout not in brats.SPECS:  # the Decathlon's and nnU-Net's root: their folders alone
        return "", name in CASE_PLACES
    if parent == root or (parent.name in GRADE_FOLDERS and parent.parent == root):
        return name, "." not in name  # a case folder (a file's name, notes.txt, is none)
    stem = nifti_stem(name) if is_nifti(name) else name.split(".nii")[0]
    if parent.name in ("imagesTr", "imagesTs", "labelsTr") and parent.parent == root:
        numbered = re.fullmatch(r"(.+)_\d{4}", stem) if layout == "nnunet" and parent.name != "labelsTr" else None
        return (numbered.group(1) if numbered else stem), ".nii" in name
    spec = LAYOUTS.get(layout)
    reads = spec is not None and layout in brats.SPECS and any(
        stem == f"{parent.name}{spec.separator}{s}" for s in (*spec.suffixes, "seg"))
    return parent.name, reads


def report_broken_links(scan: DatasetScan) -> None:
    """An error for each link that leads nowhere where the layout reads (`CASE_PLACES`, and each BraTS case's
    folder): a case folder or file on a drive or share not mounted was passed by without a word. The error names
    the case and the link; it replaces what the layout said of the file it did not see (a contrast "missing", an
    image "without label"), and the case is left out."""
    root = Path(scan.root)
    places = [root / p for p in CASE_PLACES if (root / p).is_dir()]
    if scan.layout.layout in brats.SPECS:  # every case folder, the incomplete ones too
        places += [f for f in brats.case_folders(root) if f not in places]
    places += sorted({Path(f).parent for c in scan.cases for f in c.images} - set(places))
    linked: set[str] = set()
    for link in (link for place in places for link in broken_links(place)):
        case, reads = _linked_case(root, link, scan.layout.layout)
        if not reads:  # a link the layout never reads (a note's, a file of another name): said, not refused
            scan.problems.append(Problem(case if link.parent != root else "", str(link), "warning", (
                f"{link} is a link to {os.readlink(link)}, which does not exist; no case reads it (remove it if it "
                "should be one)")))
            continue
        if link.parent == root and link.name == "imagesTs":  # the test images alone: training never reads them
            scan.problems.append(Problem("", str(link), "warning", (
                f"dataset {root}: {link} is a link to {os.readlink(link)}, which does not exist (a drive or share not "
                "mounted?), so its test cases are not read; mount it, or remove the link"), unlabelled_only=True))
            continue
        stem = link.name.split(".nii")[0]
        label = link.parent.name == "labelsTr" or stem.endswith(("_seg", "-seg"))
        if not label:  # a label's link leaves the case to a reader of images alone (inference), unlabelled
            linked.add(case)
        scan.problems[:] = [p for p in scan.problems  # what the layout said of the file it could not see
                            if not (Path(p.file).parent == link.parent and Path(p.file).name.split(".nii")[0] == stem)]
        scan.problems.append(Problem(case, str(link), "error", (
            f"{'case ' + case if case else 'dataset ' + str(root)}: {link} is a link to {os.readlink(link)}, which "
            "does not exist (a drive or share not mounted?); mount it, or remove the link to leave it out"),
            labels_only=label))
    scan.cases[:] = [c for c in scan.cases if c.case_id not in linked]


#: The names of a BraTS case's files after its folder's name (``<case>_t1.nii.gz``, ``<case>-seg.nii``, ...).
_CASE_FILES = tuple(f"{spec.separator}{s}{ext}" for spec in brats.SPECS.values() for s in (*spec.suffixes, "seg")
                    for ext in NIFTI_EXTENSIONS)


def _is_case_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a file named as a BraTS case's after the folder (``X/X_t1.nii.gz``)."""
    name = os.path.basename(folder)
    return any(os.path.lexists(os.path.join(folder, name + n)) for n in _CASE_FILES)  # a link to nowhere too


def _holds_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a dataset's root, by its marks alone (cheap, whatever else it holds, a mixed or
    broken dataset too): the Decathlon's and nnU-Net's ``imagesTr/``/``imagesTs/``, or two BraTS case folders (also
    below ``HGG``/``LGG``). One case folder beside a project's ``runs/`` does not make the project a dataset."""
    if any((folder / d).is_dir() for d in ("imagesTr", "imagesTs")):
        return True
    cases = 0
    for place in (folder, *(folder / g for g in GRADE_FOLDERS)):
        try:
            entries = [e.path for e in os.scandir(place) if not e.name.startswith(".") and e.is_dir()]
        except OSError:
            continue
        cases += sum(1 for e in entries if _is_case_folder(e))
        if cases >= 2:
            return True
    return False


def dataset_around(path: str | os.PathLike) -> Path | None:
    """The dataset folder that ``path`` (a file or folder to write; links followed) is or lies in, at any depth, or
    None: ``path`` or a folder above it is a dataset's root (`_holds_dataset`), a case's folder (a case read alone:
    ``X/X_t1.nii.gz``) or a Decathlon/nnU-Net ``imagesTr``/``labelsTr``/``imagesTs``."""
    here = Path(path).expanduser().resolve()
    return next((f for f in [here, *here.parents] if _is_dataset_place(f)), None)


def _is_dataset_place(folder: Path) -> bool:
    """Whether ``folder`` is a dataset's root, a case's folder or a Decathlon/nnU-Net case folder (`dataset_around`)."""
    if not folder.is_dir() or folder == Path(folder.anchor):
        return False
    return _is_case_folder(folder) or _holds_dataset(folder) or (
        folder.name in ("imagesTr", "labelsTr", "imagesTs") and _holds_dataset(folder.parent))


def refuse_inside_dataset(path: str | os.PathLike, what: str, option: str, *, beside: str = "runs") -> None:
    """Refuse to write ``what`` at ``path`` inside a dataset folder (`dataset_around`), an input of this command
    or not: nothing is written among a dataset's files.

    Raises:
        UserError: naming the path, the dataset folder and the option to change.
    """
    root = dataset_around(path)
    if root is not None:
        top = next((f for f in list(root.parents)[::-1] if _is_dataset_place(f)), root)  # the whole dataset's
        free = top.parent / beside / Path(path).name  # the advice: a results folder beside the whole dataset
        raise UserError(f"{option} {Path(path).expanduser()} lies inside the dataset folder {root}: {what} must never "
                        f"be written among a dataset's files; pass {option} a path outside it (e.g. {free})")


def refuse_dataset_inside_dataset(path: str | os.PathLike, what: str, option: str) -> None:
    """`refuse_inside_dataset` for a writer of a dataset (synthetic cases): its own folder is a dataset, so only the
    folders above it count (a dataset inside another's folder, or in one of its cases, mixes its files with
    theirs)."""
    if dataset_around(Path(path).expanduser().resolve().parent) is not None:
        refuse_inside_dataset(path, what, option, beside="")  # a dataset's place: beside the other


def output_guard(files: Iterable[str | os.PathLike] = (), roots: Iterable[str | os.PathLike] = (),
                 protect: Iterable[str | os.PathLike] = ()) -> OutputGuard:
    """The output guard of a command reading ``files`` in ``roots`` (`pipeline.core.guard.OutputGuard`), which also
    refuses any place inside a dataset (`refuse_inside_dataset`): the one way a writer gets its guard, so that no
    writer checks one rule and forgets the other."""
    return OutputGuard(files, roots, protect, datasets=refuse_inside_dataset)


def export_refusal(argv: list[str]) -> UserError | None:
    """The refusal of a MONAI export (``ckpt_export``, ``onnx_export``, ``trt_export``: the one writer MONAI's CLI
    runs without a verb of ours) that would write over a checkpoint, a run's file or an input
    (`pipeline.core.guard.export_refusal`) or inside a dataset (`refuse_inside_dataset`); None otherwise."""
    return guard_export_refusal(argv, datasets=refuse_inside_dataset)


def usable_cases(scan: DatasetScan) -> list[Case]:
    """The cases of a scan; its warnings logged; an error listing every discovery error, or no case found."""
    for p in scan.problems:
        if p.severity != "error":
            logger.warning("%s", p.message)
    if scan.errors:
        raise DatasetError("\n".join(p.message for p in scan.errors))
    if not scan.cases:
        raise DatasetError(no_case_message(scan.root))
    return scan.cases


def resolve_scheme(layout: LayoutInfo, scheme: str | None, option: str = "--label_scheme", *,
                   labels: bool = True) -> str:
    """The label scheme to read data of ``layout`` with: the layout's own for None or ``auto``; else ``scheme``'s name
    (`pipeline.data.labels.scheme_name`) when its numbering agrees, label value by label value, with what the data
    says of its own: the numbering its file naming implies (`NAMING_NUMBERING`: BraTS 2021 names ET = 4) and the
    roles of its own scheme (a datalist's, an nnU-Net dataset.json's label names). The one place a scheme is chosen
    for the data and a given one checked against it: the dataset check, the datalist writers,
    `pipeline.data.source.DataSource` (training, inference) and the evaluation's reference (both protocols) read it.

    Case ids whose names do not tell their numbering (``layout.untold``, `pipeline.data.labels.UNTOLD_NUMBERING`:
    BraTS-PED 2023 was numbered as GLI, 2024+ natively, under the same names) are never guessed: ``auto`` is refused
    naming the case and both readings (``brats2023`` and ``ped``) unless the data records its scheme (a datalist's
    ``label_scheme``), also for inference; a given scheme must agree with one of the readings (and, beside other
    cases, with their naming too).

    BraTS 2021-named files relabelled 4 -> 3 read as ``brats2023`` (1 and 2 mean the same); ``msd`` on BraTS-named
    files (1 = oedema there, necrosis here) is refused, as is a built-in scheme on an nnU-Net dataset whose labels'
    names do not state their roles, and another dataset.json than its own that describes it otherwise. ``option``:
    the flag that set the scheme, named in the refusal (``--scheme`` for the evaluation). ``labels=False`` (inference,
    which reads no label and writes the scheme's numbering: a model of another dataset on these images) checks
    nothing but the name. The naming's numbering counts where the naming was seen (``layout.named``: a datalist
    without a ``layout`` key shows none), its own scheme's where it was recorded (``layout.described``). nnU-Net's
    ``ignore`` label is a meaning like a role (`pipeline.data.labels.meanings`): a dataset with one is read only by a
    scheme with the same ignore value (brats2024 would train and score its unannotated voxels as resection cavity),
    and a scheme's ignore value may be no class of the data.

    Raises:
        UserError: ``auto`` on data whose names do not tell its numbering; an unknown scheme, or one whose numbering
            contradicts the data's (the values named).
    """
    from pipeline.data.labels import (
        NNUNET_PREFIX,
        NUMBERING,
        describe,
        meanings,
        naming_numberings,
        role_conflicts,
        roles_by_value,
        scheme_name,
        untold_prefix,
    )

    own_name = layout.label_scheme
    readings = naming_numberings(layout.layout, layout.untold) if layout.untold else {}
    if scheme in (None, "", "auto"):
        if readings and not layout.described:  # the names allow several numberings and nothing records one
            where = f"{layout.layout} data ({layout.reason})" if layout.reason else f"{layout.layout} data"
            choices = " or ".join(f"{option} {s} ({text})" for s, text in readings.items())
            raise UserError(f"{where}: case {layout.untold}: the names of {untold_prefix(layout.untold)}... cases do "
                            f"not tell their label numbering, so {option} auto cannot choose one: pass {choices}")
        return own_name
    name = scheme_name(scheme)
    if name == own_name or not labels:
        return name
    own, given = describe(own_name), describe(name)
    where = f"{layout.layout} data ({layout.reason})" if layout.reason else f"{layout.layout} data"
    own_way = (" or ".join(f"{option} {s}" for s in readings) if readings and not layout.described
               else f"its own scheme ({option} auto)")  # (auto is refused where the names do not tell)
    fix = (f"read it with {own_way}, or relabel the files to the scheme's numbering"
           + ("" if layout.reason.startswith("datalist") else " and rename them to its layout"))
    if own.ignore is not None and given.ignore != own.ignore:  # read as a class, unannotated voxels would be scored
        meant = meanings(given).get(own.ignore)
        raise UserError(f"label scheme {name} contradicts {where}: label {own.ignore} is ignore in the data "
                        "(unannotated voxels, neither trained on nor scored), "
                        + (f"{meant} in scheme {name}" if meant else f"no label of scheme {name}")
                        + f"; read it with its own scheme ({option} auto) or one whose ignore label is {own.ignore}")
    if layout.layout == "nnunet" and own_name.startswith(NNUNET_PREFIX):
        same = (own.channels, dict(own.labels), dict(own.regions), own.regions_class_order, own.ignore) == (
            given.channels, dict(given.labels), dict(given.regions), given.regions_class_order, given.ignore)
        mine, theirs = roles_by_value(own), meanings(given)  # its ignore value, too, must be no class of the data
        if same or (mine and set(mine) == set(own.labels.values()) and not role_conflicts(mine, theirs)
                    and set(theirs) >= set(mine)):
            return name
        raise UserError(f"label scheme {name} does not describe {where}: its dataset.json "
                        f"({own_name[len(NNUNET_PREFIX):]}) describes its own labels and regions "
                        f"({', '.join(own.regions)}), whose roles the scheme's numbering does not match by name; {fix}")
    told = naming_numberings(layout.layout) if layout.named and layout.told else {}  # the other cases' naming
    implied = {v: r for naming in told for r, v in NUMBERING[naming].items()}
    mine = {**implied, **(meanings(own) if layout.described else {})}
    conflicts = role_conflicts(mine, meanings(given), ("the data", f"scheme {name}"))
    if conflicts:
        raise UserError(f"label scheme {name} contradicts {where}: label {'; '.join(conflicts)}; {fix}")
    def disagreements(reading: str) -> list[str]:  # a value either reads otherwise, or one the reading has not
        numbered = {v: r for r, v in NUMBERING[reading].items()}
        extra = [f"{v} is {r} in scheme {name}, no label of {reading}" for v, r in sorted(meanings(given).items())
                 if v not in numbered]
        return role_conflicts(numbered, meanings(given), (reading, f"scheme {name}")) + extra

    untold = {s: disagreements(s) for s in readings}
    if untold and all(untold.values()):  # it agrees with neither reading of the untold names
        read = "; ".join(f"{s} ({readings[s]}): {'; '.join(c)}" for s, c in untold.items())
        raise UserError(f"label scheme {name} contradicts {where}: the names of {untold_prefix(layout.untold)}... "
                        f"cases (e.g. {layout.untold}) mean {' or '.join(readings)}, and it agrees with neither "
                        f"({read}); pass {' or '.join(f'{option} {s}' for s in readings)}")
    return name


def in_scheme_order(scan: DatasetScan, scheme: str | None, *, labels: bool = True) -> DatasetScan:
    """``scan`` with each case's channels in the order of ``scheme``'s description, matched by contrast name
    (`channel_permutation`), when a scheme other than the layout's own is given (None or ``auto``: as scanned). The
    one place a scheme override orders channels, for every source: a scanned folder or case
    (`pipeline.data.source.DataSource`, the datalist writers) and a datalist's items
    (`pipeline.data.datalist.datalist_in_scheme_order`, ``scan.kind`` ``datalist``).

    Raises:
        UserError: a scheme `resolve_scheme` refuses.
        DatasetError: channel names that cannot be matched (no contrast the pipeline knows, other contrasts than
            the files'), or files numbered ``_0000`` ... (nnU-Net) in another order than the scheme's: every
            datalist reader puts numbered files in number order, so a reordering would not survive a datalist
            written and read back; refused rather than fed by position.
    """
    from pipeline.data.labels import describe, scheme_name

    if scheme in (None, "", "auto") or resolve_scheme(scan.layout, scheme, labels=labels) == scan.layout.label_scheme:
        return scan
    own, wanted = describe(scan.layout.label_scheme), describe(scheme)
    numbered = LAYOUTS[scan.layout.layout].numbered_channels
    order = channel_permutation(own, wanted, f"{scan.kind} {scan.root}")
    if order is None:
        return scan
    if numbered:
        raise DatasetError(f"{scan.kind} {scan.root} numbers its channels {', '.join(own.channels)} (<case>_0000 ..., "
                           f"as its dataset.json lists them); the label scheme {scheme_name(scheme)} reads "
                           f"{', '.join(wanted.channels)}: read it with its own scheme (--label_scheme auto: its "
                           "dataset.json describes its labels too)")
    scan.cases = [in_channel_order(c, order) for c in scan.cases]
    return scan


def discover_cases(root: str | os.PathLike, layout: str | None = None) -> list[Case]:
    """Every case under ``root`` (layout detected, or given); warnings logged.

    Raises:
        DatasetError: ``root`` is missing, holds no case, or a case lacks a file (all such cases listed).
    """
    return usable_cases(scan_dataset(root, layout))
