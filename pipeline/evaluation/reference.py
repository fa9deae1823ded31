"""What an evaluation scores against: the reference labels read through their layout, each paired with its
prediction file, with the folder rules that keep predictions, references and outputs apart."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation

from pipeline.core.config import as_bool, as_path
from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, hold_folder, read_json
from pipeline.core.guard import OutputGuard, dataset_root, is_within
from pipeline.core.kinds import refuse_other_kinds
from pipeline.core.nifti import (
    AFFINE_TOLERANCE,
    HEADER_ROUNDING,
    grid_distance,
    load_labels,
    nifti_files,
    nifti_names,
    reorientation,
)
from pipeline.core.provenance import CHANGED, MOVED, OTHER, PROVENANCE, InputRef, Provenance, id_only_note, ref_path
from pipeline.data.labels import (
    LABEL_SCHEMES,
    NNUNET_PREFIX,
    Description,
    allowed_labels,
    describe,
    role_conflicts,
    roles_by_value,
    scheme_choices,
)
from pipeline.data.layouts import (
    LAYOUTS,
    Case,
    DatasetError,
    LayoutInfo,
    detect_layout,
    discover_cases,
    output_guard,
    resolve_scheme,
)
from pipeline.data.layouts.brats import case_folders, holds_case, single_case
from pipeline.data.source import DataSource

logger = logging.getLogger(__name__)


#: Label schemes accepted by `evaluate_case`.
SCHEMES: tuple[str, ...] = (*LABEL_SCHEMES, "labels")


#: Label schemes accepted by `evaluate_folders` and the ``evaluate`` command: ``auto`` is the reference
#: dataset's layout's (`pipeline.data.layouts.LAYOUTS`).
FOLDER_SCHEMES: tuple[str, ...] = ("auto", *SCHEMES)


@dataclass(frozen=True)
class Reference:
    """The reference labels: ``files`` ``{case id: label file}`` read from ``root`` through ``layout``
    (None: ``root`` is a folder of ``<case>.nii.gz`` labels, not a dataset)."""

    root: Path
    files: dict[str, Path]
    layout: LayoutInfo | None = None
    scheme: str | None = None  # the data's own scheme when it was resolved with it (a DataSource), else the layout's
    cases: dict[str, Case] = field(default_factory=dict)  # the cases with their images, when read from a dataset
    fold: int | None = None  # the datalist fold the cases are (--infer_fold): scored as held out
    from_datalist: bool = False  # root is then only the common ancestor of the label files' folders

    @functools.cached_property
    def folders(self) -> list[Path]:
        """The folders the reference's files belong to, which no prediction or output may be, lie in or hold:
        ``root``; for a datalist the dataset folder of each label file (`pipeline.core.guard.dataset_root`), since
        its ``root``, their common ancestor, is ``/`` for labels on two disks."""
        if not self.from_datalist:
            return [self.root]
        files = [*self.files.values(), *(f for c in self.cases.values() for f in c.files)]  # images' folders too
        return sorted({dataset_root(Path(f).expanduser().resolve()) for f in files})

    def guard(self, predictions: Sequence[Path] = (), pred_roots: Sequence[Path] = ()) -> OutputGuard:
        """The output guard of an evaluation, a comparison or its pictures: every file of every reference case
        (labels and images) and ``predictions``, the reference's `folders` and ``pred_roots``; the one guard of
        those three writers."""
        files = [*self.files.values(), *(f for c in self.cases.values() for f in c.files), *predictions]
        return output_guard(files, roots=[*self.folders, *pred_roots])

    def inputs(self, case: str) -> list[InputRef]:
        """The inputs of a dataset's ``case``, each named by its channel where the data's description is known
        (`pipeline.core.provenance.input_refs`), as inference records them."""
        own = self.own_scheme
        return self.cases[case].inputs(describe(own).channels if own else None)

    @property
    def own_scheme(self) -> str | None:
        """The data's own numbering where it is known: the scheme it was resolved with (a DataSource's), else its
        layout's, unless the names do not tell it (BraTS-PED cases: ``layout.untold``, no scheme recorded); None
        for a folder of labels."""
        if self.scheme:
            return self.scheme
        layout = self.layout
        return None if layout is None or (layout.untold and not layout.described) else layout.label_scheme

    @property
    def ignore(self) -> int | None:
        """The value of the data's own ``ignore`` label (nnU-Net's unannotated voxels), or None: read from the
        data's description, so that a scoring in another scheme (``labels``) leaves those voxels out too."""
        own = self.own_scheme
        return describe(own).ignore if own else None


def _holds_cases(root: Path) -> bool:
    """Whether ``root`` has case folders named as in a BraTS layout (as `detect_layout` sees them)."""
    specs = [spec for spec in LAYOUTS.values() if spec.suffixes]
    return any(holds_case(folder, nifti_names(folder), spec) for folder in case_folders(root) for spec in specs)


def _refuse_model_output(root: Path, labels: Mapping[str, Path]) -> None:
    """Refuse a labels folder whose files are still segmentations as inference wrote them (its ``provenance.json``
    identifies each, `Provenance.entry`): the predictions and the reference swapped, which scores the same Dice
    with sensitivity and specificity the other way round. Files corrected by hand since are labels like any.

    Raises:
        UserError: naming the folder, a file and the way out.
    """
    if not (root / PROVENANCE).is_file():
        return
    try:
        provenance = Provenance(root)
    except UserError:  # not a record inference could read either: the folder is not taken for a model's output
        return
    written = [labels[c] for c in sorted(labels) if provenance.entry(c).get("model")]
    if written:
        raise UserError(f"the reference {root} holds segmentations as inference wrote them ({written[0].name} and "
                        f"{len(written) - 1} more, {PROVENANCE}): a model's output is no reference (sensitivity and "
                        "specificity would be the other way round); pass the dataset, a datalist or its labels' "
                        "folder as the reference and this folder as the predictions (labels corrected by hand since "
                        "are read as labels; to score against a model on purpose, copy its files to a folder of "
                        "their own)")


def read_reference(ref_dir: str | os.PathLike) -> Reference:
    """The reference labels of ``ref_dir``, read through its layout when it is a dataset.

    A dataset folder (one `pipeline.data.layouts.detect_layout` recognises: BraTS case folders, or MSD's
    ``imagesTr``/``imagesTs``) gives its labelled cases' label files only; NIfTI files lying at its root (predictions
    written there by mistake, say) are never taken as labels, and a warning names them. Only a folder that
    is not a dataset is read as a folder of ``<case>.nii[.gz]`` labels (case id = file name without extension).
    A datalist JSON (what ``python -m pipeline infer -i`` takes) gives its labelled cases (`reference_of`).

    Raises:
        UserError: the folder is missing or holds no reference label; `pipeline.data.layouts.DatasetError`
            for a dataset that cannot be read (two layouts mixed, a case missing a contrast).
    """
    root = Path(ref_dir).expanduser()
    if root.is_file() and root.suffix == ".json":
        return reference_of(DataSource(None, str(root)))
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"reference folder {root} {state}; pass a dataset folder, a datalist or a folder "
                        "of <case>.nii.gz labels")
    one = single_case(root)
    if one is not None:  # one case's folder, as inference takes it
        case, info = one
        if not case.label:
            raise UserError(f"the case folder {root} holds no label file of case {case.case_id}; pass a labelled "
                            "case or dataset")
        return Reference(root, {case.case_id: Path(case.label)}, info, cases={case.case_id: case})
    try:
        layout = detect_layout(root)
    except DatasetError:
        if _holds_cases(root):  # a dataset, but a broken one (e.g. two layouts mixed): say why
            raise
        layout = None
    flat = nifti_files(root)
    if layout is None:
        if not flat:
            raise UserError(
                f"no reference label in {root}: it is neither a dataset (BraTS case folders, or MSD imagesTr/ and "
                "labelsTr/) nor a folder of <case>.nii.gz label files; pass the dataset folder or the labels' folder")
        _refuse_model_output(root, flat)
        return Reference(root, flat, None)
    cases = {c.case_id: c for c in discover_cases(root, layout.layout) if c.label is not None}
    labelled = {cid: Path(c.label) for cid, c in cases.items()}
    if not labelled:
        raise UserError(f"no reference label in the dataset {root} ({LAYOUTS[layout.layout].title} layout): none of "
                        f"its cases has a label file {LAYOUTS[layout.layout].label_files}; pass a labelled dataset")
    if flat:
        names = sorted(f.name for f in flat.values())
        logger.warning(
            "reference dataset %s (%s layout): ignoring %d NIfTI file(s) at its root (%s): the reference labels are "
            "its cases' %s files only; move files that are not part of the dataset out of it",
            root, LAYOUTS[layout.layout].title, len(names), ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""),
            LAYOUTS[layout.layout].label_files)
    return Reference(root, labelled, layout, cases=cases)


def reference_of(data: DataSource, fold: object = None) -> Reference:
    """The reference labels of a stage's data: the labelled cases of ``data.inference_items(fold)`` (every case, or
    one fold of a datalist), with the data's scheme; the root is the dataset folder, or the folder that holds every
    label file of a datalist.

    Raises:
        UserError: no labelled case among them.
    """
    fold = data.infer_fold(fold)
    items = [it for it in data.inference_items(fold) if it.get("label")]
    files = {str(it["case"]): Path(it["label"]) for it in items}
    if not files:
        raise UserError(f"no reference label among the cases of {data.where}: evaluation needs labelled cases (a "
                        "segmentation per case); pass a labelled dataset or datalist")
    if data.datalist_path:
        root = Path(os.path.commonpath([str(p.parent) for p in files.values()]))
    else:
        root = data.scan.root if not data.single else Path(data.dataset_dir).expanduser().resolve()
    untold = data.label_scheme in (None, "", "auto") and data.layout.untold and not data.layout.described
    scheme = None if untold else data.scheme  # (BraTS-PED ids, no scheme recorded: the evaluation's --scheme decides)
    return Reference(root, files, data.layout, scheme, {str(it["case"]): Case.from_item(it) for it in items},
                     fold, from_datalist=bool(data.datalist_path))


def reference_files(ref_dir: str | os.PathLike) -> dict[str, Path]:
    """``{case id: label file}`` of ``ref_dir``: a dataset's labelled cases, or a folder's ``<case>.nii.gz`` labels.

    See `read_reference`: a dataset is read through its layout only, never through NIfTI files at its root.
    """
    return read_reference(ref_dir).files


def resolve_evaluation_scheme(scheme: str, reference: Reference) -> str:
    """The label scheme to score with: ``scheme`` itself, or for ``auto`` the reference dataset's layout's.

    An explicit scheme other than the layout's is used where its numbering agrees with the reference's
    (`pipeline.data.layouts.resolve_scheme`: BraTS 2021-named labels relabelled 4 -> 3 as brats2023), refused where
    it contradicts it (msd on BraTS-named labels); ``auto`` goes through it too (BraTS-PED cases refused).

    Raises:
        UserError: an unknown scheme, ``auto`` on BraTS-PED cases (their names do not tell brats2023 from ped), or
            ``auto`` with a folder of labels (no layout tells the numbering); the message lists the values of its
            first file and the schemes they fit.
    """
    if scheme not in FOLDER_SCHEMES and not str(scheme).startswith(NNUNET_PREFIX):
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(FOLDER_SCHEMES)} or "
                        f"{NNUNET_PREFIX}<dataset.json>")
    layout = reference.layout
    if scheme == "auto" and reference.scheme:
        return reference.scheme
    if scheme != "auto":
        if layout is not None and scheme != "labels":
            return resolve_scheme(layout, scheme, "--scheme")  # refused where it contradicts the reference's
        return scheme
    if layout is not None:
        return resolve_scheme(layout, "auto", "--scheme")  # the layout's, unless the names do not tell it
    first = next(iter(sorted(reference.files.items())))[1]
    values = sorted(int(v) for v in np.unique(load_labels(first)[0]) if v != 0)
    fits = [s for s in LABEL_SCHEMES if set(values) <= allowed_labels(s)]
    raise UserError(
        f"--scheme auto cannot tell the label numbering of {reference.root}: it is a folder of <case>.nii.gz labels, "
        f"not a dataset with a layout ({first.name} holds {values}, which fit {', '.join(fits) or 'no BraTS scheme'}); "
        f"pass --scheme with one of: {scheme_choices()}; or labels (each value scored as it is)")


#: The order roles are named in messages (`pipeline.data.labels.NUMBERING`'s roles).
_ROLE_ORDER = ("NCR", "ED", "ET", "RC", "CC")


def _numbering(desc: Description) -> str:
    return ", ".join(f"{v} {name}" for name, v in sorted(desc.labels.items(), key=lambda kv: kv[1]))


def numbering_differences(written: str, scored: str) -> list[str]:
    """How scheme ``written`` numbers the tumour classes otherwise than scheme ``scored`` (empty: compatible), by
    what each value means (`pipeline.data.labels.roles_by_value`: NCR, ED, ET, RC, CC), not by name: two schemes that
    give every role both have the same value agree (brats2023 and brats2024, which adds 4 = RC); first the roles
    numbered otherwise (``ED is 1 in scheme msd, 2 in scheme brats2024``), else the values that mean another role.
    Descriptions that state no roles (an nnU-Net dataset's own labels) agree when their labels and regions do.

    Raises:
        UserError: a scheme that cannot be described (an nnU-Net dataset.json no longer there).
    """
    if written == scored:
        return []
    a, b = describe(written), describe(scored)
    mine, theirs = roles_by_value(a), roles_by_value(b)
    if not mine or not theirs:
        same = (dict(a.labels), dict(a.regions), a.regions_class_order, a.ignore) == (
            dict(b.labels), dict(b.regions), b.regions_class_order, b.ignore)
        return [] if same else [f"scheme {a.name} numbers {_numbering(a)}, scheme {b.name} {_numbering(b)}"]

    def values(roles: Mapping[int, str]) -> dict[str, list[int]]:
        return {r: sorted(v for v, role in roles.items() if role == r) for r in set(roles.values())}

    va, vb = values(mine), values(theirs)
    order = sorted(set(va) & set(vb), key=lambda r: (_ROLE_ORDER.index(r) if r in _ROLE_ORDER else 9, r))
    moved = [f"{r} is {'/'.join(map(str, va[r]))} in scheme {a.name}, {'/'.join(map(str, vb[r]))} in scheme "
             f"{b.name}" for r in order if va[r] != vb[r]]
    return moved or role_conflicts(mine, theirs, (f"scheme {a.name}", f"scheme {b.name}"))


def check_written_scheme(pred_root: Path, cases: Sequence[str], scheme: str, reference: Reference) -> None:
    """Refuse predictions numbered in another label scheme than the one they are scored in: each case's scheme as
    inference recorded it (provenance.json, `pipeline.core.provenance.Provenance.schemes`) against ``scheme`` (under
    ``labels``, which scores value by value, the reference's own numbering), compared by the meaning of each value
    (`numbering_differences`). Predictions with no recorded scheme (older folders, foreign segmentations) are scored
    as before, their values checked against the scheme only.

    Raises:
        UserError: one line naming the folder, a case, the written and the scored scheme, how they differ, and the
            way out (``--scheme`` the written one where it fits the reference, or inference again without the
            ``label_scheme`` override).
    """
    own = reference.own_scheme  # None where the names do not tell it (BraTS-PED): labels then compares nothing
    scored = own if scheme == "labels" else scheme
    if not scored or not cases:
        return
    for written, which in Provenance(pred_root).schemes(cases).items():
        try:
            differences = numbering_differences(written, scored)
        except UserError as err:  # a dataset.json gone since: nothing to compare with
            logger.warning("%s: %d segmentation(s) were written in label scheme %s, which cannot be compared with "
                           "scheme %s (%s): scored as they are", pred_root, len(which), written, scored, err)
            continue
        if not differences:
            continue
        how = (f"this evaluation scores them in scheme {scored}" if scheme != "labels" else
               f"--scheme labels scores each value against the reference's numbering, scheme {scored}")
        rerun = (f"segment the reference's own images (without --set label_scheme {written}, if it was given): "
                 "inference writes the numbering of the data it segments")
        if reference.layout is None:
            fix = f"evaluate with --scheme {written} if the reference labels are numbered so too, else {rerun}"
        elif _fits(written, reference):
            fix = f"evaluate with --scheme {written}, or {rerun}"
        else:
            fix = f"--scheme {written} does not fit the reference dataset's labels, so {rerun}"
        raise UserError(
            f"{pred_root}: {len(which)} of the {len(cases)} scored segmentation(s) (e.g. case {which[0]}; "
            f"provenance.json) were written in label scheme {written}, but {how}, which numbers the classes "
            f"otherwise ({'; '.join(differences)}): their regions would be scored against other classes; {fix}")


def _fits(scheme: str, reference: Reference) -> bool:
    """Whether ``--scheme scheme`` may score against ``reference`` (`resolve_evaluation_scheme` accepts it)."""
    try:
        resolve_evaluation_scheme(scheme, reference)
    except UserError:
        return False
    return True


def scoring_scheme(scheme: str, reference: Reference, pred_root: Path, cases: Sequence[str]) -> str:
    """The label scheme the predictions ``cases`` of ``pred_root`` are scored in: ``scheme`` resolved against the
    reference (`resolve_evaluation_scheme`), once each prediction's recorded numbering agrees with it
    (`check_written_scheme`). The one way every scorer gets its scheme: the legacy and official protocols, the
    pictures, and through them ``compare``, the cross-validation table and the bundle's evaluate.yaml.

    Raises:
        UserError: the refusals of `resolve_evaluation_scheme` and `check_written_scheme`.
    """
    resolved = resolve_evaluation_scheme(scheme, reference)
    check_written_scheme(pred_root, cases, resolved, reference)
    return resolved


def check_evaluation_folders(pred_dir: str | os.PathLike, reference: Reference) -> Path:
    """Refuse a prediction folder that is, lies inside, or contains the reference folder.

    Predictions written into a dataset could be taken for its files (and the reference for predictions).

    Returns:
        ``pred_dir``, as given (user-expanded).

    Raises:
        UserError: the prediction folder is missing, overlaps the reference folder, or inference still writes it.
    """
    pred_root = Path(pred_dir).expanduser()
    if not pred_root.is_dir():
        state = "is a file, not a folder" if pred_root.exists() else "does not exist"
        raise UserError(f"prediction folder {pred_root} {state}; pass the inference output folder of "
                        "<case>.nii.gz files (the folder that holds them)")
    pred = pred_root.resolve()
    kind = "reference dataset folder" if reference.layout is not None else "reference folder"
    fix = "keep predictions in a folder of their own, outside the reference (e.g. runs/<name>/seg), and pass that"
    for ref in (folder.resolve() for folder in reference.folders):
        if pred == ref:
            raise UserError(f"the prediction folder {pred} is the {kind}: predictions would be scored against "
                            f"themselves or mixed with the labels; {fix}")
        if is_within(pred, ref):
            raise UserError(f"the prediction folder {pred} lies inside the {kind} {ref}: predictions must never be "
                            f"written among the reference files; {fix}")
        if is_within(ref, pred):
            raise UserError(f"the {kind} {ref} lies inside the prediction folder {pred}; {fix}")
    holder = FolderLock(pred_root, what="inference").holder()
    if holder is not None and holder.endswith(", inference"):  # its missing cases would be scored as empty
        raise UserError(f"{pred_root} is still being written ({holder}): the cases not written yet would be scored "
                        "as empty predictions; wait for inference to finish (if none runs there any more, delete "
                        f"{pred_root / FolderLock.NAME})")
    return pred_root


def on_reference_grid(cid: str, pred: np.ndarray, pred_affine: np.ndarray, pred_path: Path, ref: np.ndarray,
                       ref_affine: np.ndarray, ref_path: Path) -> np.ndarray:
    """``pred`` on the reference's voxel grid: as it is, or reordered when it holds the same grid in another voxel
    orientation (LPS vs RAS, say); any other difference is refused with advice that keeps the image intact."""
    if pred.shape == ref.shape and np.allclose(pred_affine, ref_affine, rtol=0.0, atol=AFFINE_TOLERANCE):
        return pred
    transform = reorientation(pred.shape, pred_affine, ref.shape, ref_affine)
    if transform is not None:
        logger.info("case %s: prediction %s is stored in another voxel orientation than the reference: reordered "
                    "onto the reference's grid", cid, pred_path)
        return np.ascontiguousarray(apply_orientation(pred, transform))
    if pred.shape != ref.shape:
        raise UserError(f"case {cid}: prediction {pred_path} has shape {pred.shape} but reference {ref_path} has "
                        f"shape {ref.shape}; predictions must be written on the reference grid (resample onto it or "
                        "re-run inference)")
    if grid_distance(pred.shape, pred_affine, ref_affine) <= HEADER_ROUNDING:
        fix = "the headers differ by rounding only: copy the reference's affine (sform and qform) into the prediction"
    else:
        fix = "resample the prediction onto the reference's grid (nearest neighbour) or re-run inference on it"
    raise UserError(f"case {cid}: prediction {pred_path} and reference {ref_path} are on different grids (largest "
                    f"affine difference {np.abs(pred_affine - ref_affine).max():.4g}); {fix}")


@dataclass(frozen=True)
class CasePairs:
    """What `pair_cases` found: the reference cases to score and the prediction files.

    ``refs`` ``{case id: reference label file}`` (the requested cases, or every labelled reference case);
    ``preds`` ``{case id: prediction file}``, every ``<case>.nii[.gz]`` directly in ``pred_root``, including those
    with no reference (`unmatched`).
    """

    reference: Reference
    pred_root: Path
    refs: dict[str, Path]
    preds: dict[str, Path]
    models: dict[str, list[str]] = field(default_factory=dict)  # the scored predictions by the model that wrote them

    @property
    def unmatched(self) -> list[str]:
        """The predictions' case ids that have no reference case (not scored), sorted."""
        return sorted(set(self.preds) - set(self.reference.files))

    @property
    def scored(self) -> list[str]:
        """The reference cases that have a prediction, sorted."""
        return sorted(c for c in self.refs if c in self.preds)

    def inputs_state(self) -> str:
        """The scored files as they are now, in 16 hex digits (each prediction's and reference's name, size and
        modification time): each protocol's summary records it, so a table scored from files since rewritten is
        known (`pipeline.evaluation.evaluate.stale_tables`)."""
        digest = hashlib.sha256()
        for cid in self.scored:
            for path in (self.preds[cid], self.refs[cid]):
                st = Path(path).stat()
                digest.update(f"{cid}\0{Path(path).name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def scoring_scheme(self, scheme: str) -> str:
        """The label scheme these predictions are scored in (`scoring_scheme`: ``scheme`` resolved, and the
        numbering each was written in checked against it)."""
        return scoring_scheme(scheme, self.reference, self.pred_root, self.scored)


def guard_evaluation(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike | Reference, out_dir: str | os.PathLike,
                     out_option: str = "--eval_dir") -> tuple[Reference, Path, dict[str, Path]]:
    """``(reference, prediction folder, {case: prediction file})`` once the prediction folder keeps apart from the
    reference (`check_evaluation_folders`) and the output folder from both (what every evaluation checks before it
    holds or writes its output folder). Reads the folders' listings only.

    Raises:
        UserError: a folder is missing or overlaps another (the folder and the option to change named).
    """
    reference = ref_dir if isinstance(ref_dir, Reference) else read_reference(ref_dir)
    pred_root = check_evaluation_folders(as_path(pred_dir, "output_dir"), reference)
    preds = nifti_files(pred_root)
    reference.guard(list(preds.values()), [pred_root]).folder(out_dir, what="evaluation tables", option=out_option)
    return reference, pred_root, preds


def pair_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike | Reference, out_dir: str | os.PathLike,
               cases: Sequence[str] | None = None, *, out_option: str = "--eval_dir",
               allow_mixed: bool | str = False) -> CasePairs:
    """Pair each reference case with its prediction ``PRED_DIR/<case>.nii.gz``, refusing what cannot be scored.

    Nothing is read but the folders' listings (and a dataset's layout): the reference through its layout
    (`read_reference`), the prediction folder apart from it (`check_evaluation_folders`), the output
    folder apart from both (`pipeline.core.files.check_output_location`).

    Raises:
        UserError: a folder is missing or overlaps another, a requested case has no reference, or no reference
            case has a prediction (the folder and an expected file named). `pipeline.data.layouts.DatasetError`
            for a dataset that cannot be read.
    """
    reference, pred_root, preds = guard_evaluation(pred_dir, ref_dir, out_dir, out_option)
    all_refs = reference.files
    refs = all_refs
    if cases is not None:
        unknown = [c for c in cases if c not in all_refs]
        if unknown:
            raise UserError(f"case(s) {unknown} have no reference label in {reference.root}; check the case ids or the "
                            "folder")
        refs = {c: all_refs[c] for c in cases}
    unpaired = {c.casefold(): c for c in refs if c not in preds}
    for cid in sorted(preds):
        if cid not in all_refs and cid.casefold() in unpaired:
            case = unpaired[cid.casefold()]
            raise UserError(f"the prediction {preds[cid]} is named as case {case} but for letter case: it would be "
                            f"scored as missing (Dice 0) and left out; rename it {case}{preds[cid].name[len(cid):]}")
    if refs and not any(cid in preds for cid in refs):
        first = sorted(refs)[0]
        found = (f"; it holds {len(preds)} NIfTI file(s) named after no reference case (e.g. {sorted(preds)[0]})"
                 if preds else "; it holds no .nii.gz file")
        raise UserError(f"no prediction in {pred_root} for any of the {len(refs)} reference case(s) (expected e.g. "
                        f"{pred_root / f'{first}.nii.gz'}){found}: pass the folder inference wrote its <case>.nii.gz "
                        "files to")
    folders = [f.resolve() for f in reference.folders]
    for cid, ref in refs.items():
        pred = preds.get(cid)
        if pred is not None and (_same_file(pred, ref) or any(is_within(pred.resolve(), f) for f in folders)):
            raise UserError(f"case {cid}: the prediction {pred} is the reference's own file ({ref}, through a link): "
                            "it would score itself; pass the folder of predictions inference wrote")
    scored = sorted(c for c in refs if c in preds)
    images = {c: reference.inputs(c) for c in scored if c in reference.cases}  # a dataset's: its images
    return CasePairs(reference, pred_root, refs, preds,
                     check_provenance(pred_root, scored, allow_mixed, fold=reference.fold, images=images))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_provenance(pred_root: Path, cases: Sequence[str], allow_mixed: bool | str = False, *,
                     fold: int | None = None, images: Mapping[str, Sequence[InputRef]] | None = None
                     ) -> dict[str, list[str]]:
    """``{model id or "unknown": [cases]}`` of the scored predictions, from the folder's provenance record.

    Predictions of cases the model trained on (marked at inference) are refused when a ``fold`` is scored (its Dice
    would pass for a held-out one), and named in a warning otherwise.

    Raises:
        UserError: a ``fold`` scored with predictions of cases their model trained on.
        UserError: without ``allow_mixed``, predictions written by more than one model (or some by an unknown one
            beside a known one), predictions whose inputs changed since they were written (stale), or predictions
            segmented from other files than the reference case's ``images`` (``{case: its inputs}``, a dataset's:
            other resolved paths without the same contents, `pipeline.core.provenance.Provenance.input_state`;
            another dataset whose cases have the same names). The same contents moved or copied elsewhere are
            scored.
    """
    record = Provenance(pred_root)
    if not record.cases:
        return {"unknown": list(cases)} if cases else {}
    in_sample = record.trained_cases(cases)
    names = list(in_sample)
    if in_sample and fold is not None:
        raise UserError(f"--infer_fold {fold}: {len(in_sample)} of its {len(cases)} scored segmentation(s) in "
                        f"{pred_root} were written by a model that trained on those cases ({', '.join(names[:5])}"
                        f"{' ...' if len(names) > 5 else ''}; provenance.json){id_only_note(in_sample)}, so their "
                        "Dice would not be held out: segment the fold with a model that never trained on it, or drop "
                        "--infer_fold")
    if in_sample:
        logger.warning("%d of the %d scored segmentation(s) were written by a model that trained on those cases (%s; "
                       "provenance.json)%s: their Dice is not a held-out score", len(in_sample), len(cases),
                       ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""), id_only_note(in_sample))
    models = dict(record.models(cases))
    if as_bool(allow_mixed, "allow_mixed"):
        return models
    replaced = record.replaced(cases)
    if replaced:
        raise UserError(f"{len(replaced)} of the {len(cases)} scored segmentation(s) in {pred_root} are not the files "
                        f"provenance.json recorded (case {replaced[0]}: {pred_root / (replaced[0] + '.nii.gz')} was "
                        "put there or changed since inference wrote it), so which model made them is unknown: "
                        "re-run inference into that folder (--overwrite true), or pass --allow_mixed true to score "
                        "them anyway")
    if len(models) > 1:
        parts = "; ".join(f"{m}: {len(c)} case(s), e.g. {c[0]}" for m, c in models.items())
        raise UserError(f"{pred_root} mixes the segmentations of {len(models)} models ({parts}; provenance.json): one "
                        "mean over them would describe no model. Re-run inference with one model (--overwrite true), "
                        "or pass --allow_mixed true to score them together")
    images = images or {}
    state = {c: record.input_state(c, images.get(c)) for c in cases}
    other = [c for c in cases if state[c] == OTHER]
    if other:
        case = other[0]
        raise UserError(f"{len(other)} prediction(s) in {pred_root} were segmented from other images than the "
                        f"reference's cases (case {case}: {record.input_paths(case)[0]}, not "
                        f"{ref_path(images[case][0])}, and not the same contents; provenance.json): another dataset "
                        "whose cases have the same names? Evaluate against the dataset they were segmented from, or "
                        "pass --allow_mixed true to score them anyway")
    moved = [c for c in cases if state[c] == MOVED]
    if moved:
        logger.info("%d prediction(s) were segmented from the same images at another place (%s, now %s: the same "
                    "contents, by sha256; provenance.json)", len(moved), record.input_paths(moved[0])[0],
                    ref_path(images[moved[0]][0]))
    stale = {c: record.changed_inputs(c, images.get(c)) for c in cases if state[c] == CHANGED}
    if stale:
        case, changed = next(iter(stale.items()))
        if not os.path.exists(changed[0]) and case not in images:  # a labels folder cannot say where they went
            raise UserError(f"{len(stale)} prediction(s) in {pred_root} were segmented from files that are no longer "
                            f"where they were (case {case}: {changed[0]}; provenance.json): if the dataset moved, "
                            "evaluate against the dataset folder itself (its images are matched by content), or pass "
                            "--allow_mixed true to score them as they are")
        raise UserError(f"{len(stale)} prediction(s) in {pred_root} are stale: their inputs changed since they were "
                        f"written (case {case}: {changed[0]}); re-run inference on that folder (it redoes them), or "
                        "pass --allow_mixed true to score them as they are")
    return models


#: The summaries an evaluation folder holds (legacy, official): each records what was scored against what.
SUMMARIES = ("summary.json", "official_summary.json")


def evaluation_record(out_dir: str | os.PathLike) -> dict | None:
    """What the evaluation already in ``out_dir`` scored (from its first summary, `SUMMARIES`):
    ``{"predictions", "reference", "scheme", "cases", "challenge"}`` (a value it did not record is None; the
    challenge is the official summary's), or None when it holds none."""
    summaries = {}
    for name in SUMMARIES:
        try:
            summary = read_json(Path(out_dir) / name)
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("reference"):
            summaries[name] = summary
    if not summaries:
        return None
    summary = next(iter(summaries.values()))
    return {"predictions": summary.get("predictions") or None, "reference": str(summary["reference"]),
            "scheme": summary.get("scheme"), "cases": summary.get("case_ids"),
            "challenge": summaries.get("official_summary.json", {}).get("challenge"),
            "inputs_state": summary.get("inputs_state")}


def refuse_rescored(eval_dir: str | os.PathLike, record: dict, reference: Reference, pred_root: Path,
                    preds: Mapping[str, Path]) -> None:
    """Refuse to illustrate the evaluation in ``eval_dir`` (``record``: `evaluation_record`) with files other than
    those it scored: its ``inputs_state`` against the same cases' files now (`CasePairs.inputs_state`). A record
    from before the state was kept is not checked (nothing says what it scored).

    Raises:
        UserError: a prediction or label rewritten (or added, or removed) since, naming the newest such file.
    """
    recorded, cases = record.get("inputs_state"), record.get("cases")
    if not recorded or cases is None:
        return
    refs = {c: reference.files[c] for c in cases if c in reference.files}
    now = CasePairs(reference, Path(pred_root), refs, dict(preds))
    if len(refs) == len(cases) and now.inputs_state() == recorded:
        return
    scored_at = max((Path(eval_dir) / name).stat().st_mtime_ns for name in SUMMARIES
                    if (Path(eval_dir) / name).is_file())
    files = [(Path(f).stat().st_mtime_ns, c, f) for c in now.scored for f in (now.preds[c], now.refs[c])]
    newer = [(t, c, f) for t, c, f in files if t > scored_at]
    where = (f" (case {max(newer)[1]}: {max(newer)[2]} was written after it)" if newer else
             " (cases added, removed or renamed since)")
    scheme = f" --scheme {record['scheme']}" if record.get("scheme") else ""
    again = (f"python -m pipeline evaluate {pred_root} {reference.root} --out {eval_dir}{scheme}"
             if len(cases) == len(reference.files) else  # every case: the verb scores them all again
             f"the evaluation of its {len(cases)} of the {len(reference.files)} cases that made it (a fold: the "
             "bundle's evaluate with its --infer_fold; cross-validation: python -m pipeline cv RUN_DIR)")
    raise UserError(f"{eval_dir} scored other files than {pred_root} and {reference.root} hold now{where}: its "
                    f"pictures would show these segmentations under those scores; evaluate again first: {again}")


def evaluated_pair(out_dir: str | os.PathLike) -> tuple[str, str] | None:
    """``(predictions, reference)`` of the evaluation already in ``out_dir`` (`evaluation_record`), or None."""
    record = evaluation_record(out_dir)
    return None if record is None else (record["predictions"] or "", record["reference"])


#: The sub-folder of an evaluation's (or a pictures) folder that holds the overlay pictures (`claim_output` refuses
#: it as a link; `pipeline.evaluation.plots` draws and clears it).
OVERLAYS = "overlays"

#: What marks a comparison's folder (`pipeline.evaluation.compare`).
COMPARISON_RECORD = "comparison.json"


def claim_output(out_dir: str | os.PathLike, kind: str, option: str = "--out", *, writes: Sequence[str] = (),
                 overwrite: bool | str = False) -> None:
    """Before writing ``kind`` (``evaluation``, ``comparison`` or ``pictures``) into ``out_dir``: hold the folder
    (`pipeline.core.files.hold_folder`: one writing process), and refuse a folder that holds another kind
    (`pipeline.core.kinds.refuse_other_kinds`: a run, a model's segmentations, a comparison's report over an
    evaluation's or an evaluation's over a comparison's), or, unless ``overwrite``,
    one that holds files of the names ``kind`` writes or replaces (``writes``: names and glob patterns under
    ``out_dir``) without that kind's record (`evaluation_record`, `COMPARISON_RECORD`): the user's own table,
    report or pictures, which the new ones would replace.

    Raises:
        UserError: another process writes the folder, or it holds another kind or files of the user's (naming
            them and the option to change).
    """
    out = Path(out_dir).expanduser()
    what = {"pictures": "a picture"}.get(kind, f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    output_guard().folder(out, what=what, option=option)  # not inside any dataset (the inputs: the caller's guard)
    pictures = out / OVERLAYS  # written and cleared, never through a link
    if pictures.is_symlink():
        raise UserError(f"{pictures} is a link (to {os.readlink(pictures)}): pictures are written and replaced only "
                        f"in {out} itself, never through a link; remove the link, or pass another {option}")
    refuse_other_kinds(out, kind, option)  # a run's, a model's segmentations, the other of evaluation/comparison
    comparison, evaluation = (out / COMPARISON_RECORD).is_file(), evaluation_record(out) is not None
    marked = comparison if kind == "comparison" else evaluation  # the kind's own record: its folder, not the user's
    if writes and not marked and not as_bool(overwrite, "overwrite"):
        theirs = [f for pattern in writes for f in sorted(out.glob(pattern)) if f.is_file()]
        if theirs:
            record = COMPARISON_RECORD if kind == "comparison" else "summary.json naming its inputs"
            article = "an" if kind[0] in "aeiou" else "a"
            raise UserError(f"{out} holds {len(theirs)} file(s) of the names {article} {kind} writes (e.g. "
                            f"{theirs[0]}) but no {kind} of this pipeline (no {record}): the {kind} would replace "
                            f"them; pass another {option}, or --overwrite to replace them (as after {article} {kind} "
                            "cut short before its record was written)")
    hold_folder(out, what=kind)  # last: a refused command leaves no lock (the caller checked the inputs first)
