"""Inference: the network's prediction (with mirroring test-time augmentation), and writing segmentations.

Prediction: the bundle's ``SlidingWindowInferer``, wrapped in :class:`MirrorInferer` with ``--tta true``
(:func:`with_tta`). Inferers and ensembles (:mod:`pipeline.ensemble`) work on logits ``(B, R, H, W, D)`` of the
network's region channels (TC, WT, ET for the BraTS schemes; :attr:`pipeline.labels.Description.regions`);
probabilities are averaged, never logits, and handed back as logits (:func:`probabilities_to_logits`) so that
the bundle's ``Activationsd(sigmoid=True)`` recovers the mean probability exactly.

Writing: network regions back to BraTS labels, in the input's own geometry. The bundle's inference
post-processing is ``sigmoid -> Invertd (undo orientation/crop) -> threshold 0.5 ->``
:class:`SaveBratsLabeld`. The saved file is ``OUTPUT_DIR/<case>.nii.gz``, ``(H, W, D)`` uint8 with labels
{0, 1, 2, 4} (``brats``) or {0, 1, 2, 3} (``brats2023``; ``msd``: 1 ED, 2 NET, 3 ET), carrying the header
(shape, affine, qform/sform) of the case's first input image, so that it overlays the input exactly in 3D Slicer
or ITK-SNAP.

A case whose images fail the data check is skipped, one that cannot be written is recorded, and the others go
on; :class:`InferenceReport` ends the run with a summary of what failed and why, and exit status 1.

Running inference again over the same folders skips the cases whose output is already there and whole
(:func:`pending_items`; ``--overwrite true`` segments them again).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import MapTransform
from nibabel.filebasedimages import ImageFileError

from pipeline.config import as_bool
from pipeline.errors import UserError
from pipeline.files import FolderLock, atomic_write, atomic_write_text, check_output_location, gzip_is_whole
from pipeline.labels import regions_to_labels

logger = logging.getLogger(__name__)


# ---- prediction: the inferer, with mirroring test-time augmentation --------------------------------------

_EPS = 1e-6


def probabilities_to_logits(p: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` with ``p`` clamped to ``[1e-6, 1 - 1e-6]``: the inverse of the sigmoid."""
    return torch.logit(p.clamp(_EPS, 1 - _EPS))


class MirrorInferer(Inferer):
    """Mirroring test-time augmentation (nnU-Net's): the mean sigmoid probability over every flip combination.

    With the default three spatial axes that is 8 predictions per volume (identity, 3 single flips, 3 pairs,
    all three), each flipped back before averaging; the result is returned as logits.

    Args:
        inferer: the inferer to run on each flipped input (e.g. the bundle's ``SlidingWindowInferer``).
        axes: spatial axes (0, 1, 2 for ``H, W, D``) to mirror.
    """

    def __init__(self, inferer: Inferer, axes: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        self.inferer = inferer
        self.flips = [tuple(a + 2 for a in combo) for r in range(len(axes) + 1)
                      for combo in itertools.combinations(axes, r)]

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:  # noqa: ANN001
        total = None
        for dims in self.flips:
            x = torch.flip(inputs, dims) if dims else inputs
            p = torch.sigmoid(self.inferer(x, network, *args, **kwargs).float())
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total + p
        return probabilities_to_logits(total / len(self.flips))


def with_tta(inferer: Inferer, tta: bool) -> Inferer:
    """``inferer`` wrapped in :class:`MirrorInferer` when ``tta`` is true (the ``tta`` config id)."""
    return MirrorInferer(inferer) if tta else inferer


# ---- writing segmentations ----------------------------------------------------------------------------


def _reference_path(image: object) -> str:
    """The first input file of a loaded image (``MetaTensor.meta['filename_or_obj']``) or of a path list."""
    ref = image.meta["filename_or_obj"] if hasattr(image, "meta") else image
    if isinstance(ref, (list, tuple)):
        ref = ref[0]
    return str(ref)


def write_label_like(labels: np.ndarray, reference: str | os.PathLike, out_path: str | os.PathLike,
                     case: str = "") -> Path:
    """Write ``labels`` ``(H, W, D)`` as uint8 NIfTI with the header and affine of ``reference``.

    The file is written to a temporary name in the output folder and renamed, so a reader never sees a
    half-written segmentation, and an existing input file is never overwritten.

    Raises:
        ValueError: the label shape differs from the reference's, or ``out_path`` is the reference itself.
    """
    reference, out_path = Path(reference), Path(out_path)
    ref = nib.load(reference)  # header only: the data are not read
    if tuple(labels.shape) != tuple(ref.shape[:3]):
        raise ValueError(
            f"case {case}: segmentation shape {tuple(labels.shape)} differs from the input {reference} "
            f"shape {tuple(ref.shape[:3])}; the inverse transforms did not restore the input geometry "
            "(check that inference.yaml's preprocessing is invertible)"
        )
    if out_path.resolve() == reference.resolve():
        raise ValueError(f"case {case}: refusing to overwrite the input {reference}; choose another --output_dir")
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(np.asarray(labels, dtype=np.uint8), ref.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    atomic_write(out_path, lambda tmp: nib.save(img, tmp))
    return out_path


class SaveBratsLabeld(MapTransform):
    """Turn binary regions ``(3, H, W, D)`` (TC, WT, ET) into BraTS labels and write ``<case>.nii.gz``.

    Args:
        keys: the region prediction key (``pred``), already inverted to the input geometry and thresholded.
        output_dir: the folder for ``<case>.nii.gz``.
        scheme: ``brats`` (ET = 4) or ``brats2023`` (ET = 3), see :mod:`pipeline.labels`.
        case_key: the item key with the case id.
        image_key: the loaded image whose first file gives the reference header.
        report: an :class:`InferenceReport`: a case that cannot be written is recorded there (and logged) and
            the next case goes on; without one the error is raised.
    """

    def __init__(self, keys: KeysCollection, output_dir: str, scheme: str = "brats", case_key: str = "case",
                 image_key: str = "image", allow_missing_keys: bool = False,
                 report: InferenceReport | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.scheme = scheme
        self.case_key = case_key
        self.image_key = image_key
        self.report = report

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        case = str(d[self.case_key])
        reference = _reference_path(d[self.image_key])
        for key in self.key_iterator(d):
            regions = d[key]
            if isinstance(regions, torch.Tensor):
                regions = regions.detach().cpu().numpy()
            labels = regions_to_labels(np.asarray(regions) > 0.5, self.scheme)
            out = self.output_dir / f"{case}.nii.gz"
            try:
                path = write_label_like(labels, reference, out, case=case)
            except Exception as e:
                if self.report is None:
                    raise
                self.report.fail(case, f"case {case}: writing {out} failed ({type(e).__name__}: {e})")
                continue
            logger.info("case %s: wrote %s", case, path)
            if self.report is not None:
                self.report.wrote(case, path)
            d[f"{key}_path"] = str(path)
        return d


#: Sub-folder of ``output_dir`` for the region probabilities (``--save_probabilities true``).
PROBABILITIES = "probabilities"
#: Probabilities are stored as uint16 with this NIfTI scale (NIfTI-1 has no float16): steps of 1.5e-5.
PROBABILITY_SCALE = 1.0 / 65535


def write_probabilities_like(probabilities: np.ndarray, reference: str | os.PathLike, out_path: str | os.PathLike,
                             regions: Sequence[str] = ()) -> Path:
    """Write region probabilities ``(R, H, W, D)`` in [0, 1] as a 4D NIfTI ``(H, W, D, R)`` on ``reference``'s grid.

    Stored as uint16 with ``scl_slope`` = 1/65535 (half the size of float32; NIfTI-1 has no float16), so every
    reader (nibabel, 3D Slicer, ITK) gets floats back within 1.5e-5; the region names go in ``descrip``.
    Written atomically.
    """
    ref = nib.load(reference)
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 0.0, 1.0)
    if tuple(p.shape[1:]) != tuple(ref.shape[:3]):
        raise ValueError(f"probabilities of shape {tuple(p.shape)} do not fit the input {reference} "
                         f"{tuple(ref.shape[:3])}")
    data = np.round(np.moveaxis(p, 0, -1) / PROBABILITY_SCALE).astype(np.uint16)
    header = ref.header.copy()
    header.set_data_dtype(np.uint16)
    img = nib.Nifti1Image(data, ref.affine, header=header)
    img.header.set_slope_inter(PROBABILITY_SCALE, 0.0)
    img.header["descrip"] = ("regions " + ",".join(regions))[:79].encode()
    return atomic_write(out_path, lambda tmp: nib.save(img, tmp))


class SaveProbabilitiesd(MapTransform):
    """With ``enabled``, write the region probabilities of ``keys`` (``(R, H, W, D)``, already inverted to the input
    grid, before thresholding) to ``output_dir/probabilities/<case>.nii.gz`` for later ensembling or calibration."""

    def __init__(self, keys: KeysCollection, output_dir: str, enabled: bool | str = False,
                 regions: Sequence[str] = (), case_key: str = "case", image_key: str = "image",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.folder = Path(output_dir) / PROBABILITIES
        self.enabled = as_bool(enabled, "save_probabilities")
        self.regions = list(regions)
        self.case_key, self.image_key = case_key, image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            p = d[key].detach().cpu().numpy() if isinstance(d[key], torch.Tensor) else np.asarray(d[key])
            write_probabilities_like(p, _reference_path(d[self.image_key]),
                                     self.folder / f"{d[self.case_key]}.nii.gz", self.regions)
        return d


class InferenceReport:
    """What inference did with each case: written, skipped (and why), or failed (and why). :meth:`finish` prints
    the summary and releases the output folder.

    The data check (:func:`pipeline.check.checked_inference_items`) records the cases it leaves out,
    :func:`pending_items` the cases already segmented by the same model, and :class:`SaveBratsLabeld` the cases
    written or that it cannot write. Each written case is recorded in ``<output_dir>/provenance.json`` with the
    model that wrote it (``model``: :func:`pipeline.runs.model_id`), so that a later run can tell its own outputs
    from another model's.
    """

    def __init__(self, output_dir: str | os.PathLike = "", model: str | None = None) -> None:
        self.output_dir = str(output_dir)
        self.model = model
        self.written: list[str] = []
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, list[str]] = {}
        self.lock: FolderLock | None = None

    def fail(self, case: str, reason: str) -> None:
        """Record (and log) that ``case`` failed; ``reason`` is one line naming the file and the fix."""
        logger.error("%s", reason)
        self.failed.setdefault(case, []).append(reason)

    def skip(self, case: str, reason: str) -> None:
        self.skipped[case] = reason

    def wrote(self, case: str, path: str | os.PathLike) -> None:
        self.written.append(case)
        if self.output_dir and self.model:
            record = read_provenance(self.output_dir)
            record[case] = {"model": self.model, "file": Path(path).name}
            atomic_write_text(Path(self.output_dir) / PROVENANCE, json.dumps(record, indent=1, sort_keys=True))

    def summary(self) -> str:
        """``inference: wrote N case(s) to DIR; skipped K ...; M case(s) failed:`` then one line per failure."""
        head = f"inference: wrote {len(self.written)} case(s) to {self.output_dir or 'the output folder'}"
        if self.skipped:
            reasons: dict[str, int] = {}
            for why in self.skipped.values():
                reasons[why] = reasons.get(why, 0) + 1
            head += "; skipped " + ", ".join(f"{n} {why}" for why, n in reasons.items())
        if not self.failed:
            return head + "; no case failed"
        lines = [f"{head}; {len(self.failed)} case(s) failed and were skipped:"]
        lines += [f"  {reason}" for reasons in self.failed.values() for reason in reasons]
        return "\n".join(lines)

    def finish(self) -> None:
        """Print the summary, release the output folder; exit with status 1 (``SystemExit``) when any case failed."""
        print(self.summary(), flush=True)
        if self.lock is not None:
            self.lock.release()
        if self.failed:
            raise SystemExit(1)


#: ``<output_dir>/provenance.json``: ``{case: {"model": model id, "file": name}}`` of every segmentation written.
PROVENANCE = "provenance.json"


def read_provenance(output_dir: str | os.PathLike) -> dict:
    """The provenance record of an output folder (empty when there is none or it cannot be read)."""
    try:
        return json.loads((Path(output_dir) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}


def _item_files(item: Mapping) -> list[str]:
    image = item.get("image", [])
    files = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    return [str(f) for f in (*files, *([item["label"]] if item.get("label") else []))]


def guard_outputs(items: Sequence[Mapping], output_dir: str | os.PathLike, *, report: InferenceReport | None = None,
                  dataset_dir: str | os.PathLike | None = None, datalist: str | os.PathLike | None = None,
                  overwrite: bool | str = False) -> Path:
    """Before anything is read or computed: refuse an output folder that is or holds an input of any case, or lies
    in the dataset folder (:func:`pipeline.files.check_output_location`); take its lock (one writer); refuse
    outputs of another model (:func:`foreign_outputs`) unless ``overwrite``.

    Raises:
        UserError: the output folder is among the inputs, another live process writes into it, or it holds
            segmentations of these cases written by another model.
    """
    out = check_output_location(output_dir, [f for it in items for f in _item_files(it)], what="segmentations",
                                option="--output_dir", dataset_dir=None if datalist else dataset_dir)
    lock = FolderLock(out, what="inference").acquire()
    if report is not None:
        report.lock = lock
    if not as_bool(overwrite, "overwrite"):
        _refuse_foreign(items, out, report.model if report is not None else None)
    return out


def foreign_outputs(items: Sequence[Mapping], output_dir: str | os.PathLike, model: str | None) -> list[str]:
    """``"<case> (model <id>)"`` for each item whose ``<case>.nii.gz`` exists in ``output_dir`` but was written by
    another model than ``model``, or by an unknown one (no ``provenance.json`` entry); empty for ``model`` None."""
    if model is None:
        return []
    provenance = read_provenance(output_dir)
    foreign = []
    for item in items:
        case = str(item["case"])
        if (Path(output_dir) / f"{case}.nii.gz").exists():
            writer = provenance.get(case, {}).get("model")
            if writer != model:
                foreign.append(f"{case} ({'model ' + writer if writer else 'no record of its model'})")
    return foreign


def _refuse_foreign(items: Sequence[Mapping], output_dir: str | os.PathLike, model: str | None) -> None:
    foreign = foreign_outputs(items, output_dir, model)
    if foreign:
        raise UserError(
            f"{output_dir} already holds {len(foreign)} segmentation(s) not written by this model ({model}): "
            f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}; pass another --output_dir, or "
            "--overwrite true to replace them"
        )


def output_is_valid(out_path: str | os.PathLike, reference: str | os.PathLike) -> bool:
    """Whether ``out_path`` is a whole segmentation of ``reference``: a ``.gz`` decompresses to its end (CRC and
    length checked), its header loads, its shape and affine are the reference's, and all its voxels can be read."""
    gz = str(out_path).endswith(".gz")
    if gz and not gzip_is_whole(out_path):
        return False
    try:
        out, ref = nib.load(out_path), nib.load(reference)
        if tuple(out.shape) != tuple(ref.shape[:3]) or not np.allclose(out.affine, ref.affine, atol=1e-4):
            return False
        needed = int(out.dataobj.offset) + int(np.prod(out.shape)) * out.get_data_dtype().itemsize
        if gz:  # decoded once above; the gzip trailer's length (mod 2**32) must cover every voxel
            with open(out_path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                if int.from_bytes(f.read(4), "little") != needed % 2**32:
                    return False
        else:
            np.asarray(out.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError):
        return False
    return True


def pending_items(items: Sequence[dict], output_dir: str | os.PathLike, *, overwrite: bool | str = False,
                  report: InferenceReport | None = None, probabilities: bool | str = False) -> list[dict]:
    """The items still to segment, decided before the network runs.

    Without ``overwrite``: an item without ``output_dir/<case>.nii.gz`` is segmented; one whose output was written
    by this same model (``report.model``, recorded in ``provenance.json``) and is whole (:func:`output_is_valid`)
    is skipped; one whose output of this model is broken (a killed run) is segmented again. An output written by
    another model, or of unknown origin, is never kept as if it were this model's: the run is refused, naming the
    cases, unless ``overwrite`` (then every item is segmented and replaced).

    Raises:
        UserError: outputs of another model or of unknown origin exist and not ``overwrite``.
    """
    if as_bool(overwrite, "overwrite"):
        return list(items)
    probabilities = as_bool(probabilities, "save_probabilities")
    _refuse_foreign(items, output_dir, report.model if report is not None else None)
    todo, redo = [], []
    for item in items:
        case = str(item["case"])
        out = Path(output_dir) / f"{case}.nii.gz"
        if not out.exists():
            todo.append(item)
        elif probabilities and not (Path(output_dir) / PROBABILITIES / f"{case}.nii.gz").exists():
            todo.append(item)  # segmented before without --save_probabilities: run again for them
        elif output_is_valid(out, _reference_path(item["image"])):
            if report is not None:
                report.skip(case, "already segmented by this model")
        else:
            redo.append(case)
            todo.append(item)
    if redo:
        logger.warning("segmenting again %d case(s) whose output is not a valid segmentation of the input: %s",
                       len(redo), ", ".join(redo))
    done = len(items) - len(todo)
    if done:
        logger.info("skipping %d of %d case(s) already segmented by this model in %s%s (pass --overwrite true to "
                    "redo them)", done, len(items), output_dir, "" if todo else ": nothing to do")
    return todo
