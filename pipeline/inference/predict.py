"""Prediction and writing: mirroring test-time augmentation (`MirrorInferer`), segmentations written as
labels in the input's own geometry (`SaveBratsLabeld`), and region probabilities (`SaveProbabilitiesd`).

Inferers and ensembles work on logits ``(B, R, H, W, D)`` of the network's regions; probabilities are averaged,
never logits. A segmentation is ``(H, W, D)`` uint8 in the dataset's numbering (or the scheme a ``label_scheme``
override names; recorded per case in provenance.json) with the first input's header."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import MapTransform

from pipeline.core.config import as_bool, as_choice, as_fraction, as_int
from pipeline.core.files import atomic_write
from pipeline.core.provenance import InputRef
from pipeline.data.labels import describe, regions_to_labels
from pipeline.inference.outputs import (
    INPUTS_KEY,
    PROBABILITIES,
    PROBABILITIES_DESCRIP,
    SEGMENTATION_DESCRIP,
    InferenceReport,
    image_files,
    reference_path,
    voxels_digest,
)

logger = logging.getLogger(__name__)


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


#: Blending modes of MONAI's sliding window (`monai.utils.BlendMode`).
BLEND_MODES = ("constant", "gaussian")


def sliding_window(roi_size: Sequence[int] | int, sw_batch_size: object, overlap: object, mode: object = "gaussian",
                   **kwargs: object) -> SlidingWindowInferer:
    """The bundle's ``inferer``: MONAI's `SlidingWindowInferer` with its values checked as the CLI hands them over
    (``--sw_overlap 1.5`` was accepted and failed inside the first case, after the output folder was written;
    ``--inferer#mode x`` the same).

    Raises:
        UserError: ``overlap`` (or one per axis) outside [0, 1), ``sw_batch_size`` below 1, ``mode`` not
            `BLEND_MODES`.
    """
    if isinstance(overlap, str) and overlap.strip().startswith(("[", "(")):  # per axis, as the CLI hands it over
        overlap = [part for part in overlap.strip()[1:-1].split(",") if part.strip()]
    overlaps = ([as_fraction(o, "sw_overlap", below_one=True) for o in overlap]
                if isinstance(overlap, (list, tuple)) else as_fraction(overlap, "sw_overlap", below_one=True))
    return SlidingWindowInferer(roi_size=roi_size, overlap=overlaps, mode=as_choice(mode, "inferer#mode", BLEND_MODES),
                                sw_batch_size=as_int(sw_batch_size, "sliding_window_batch_size", minimum=1), **kwargs)


def windows_per_pass(asked: object, *, cuda: bool, cuda_least: object, cpu: object) -> int:
    """fast.yaml's windows per forward pass: on CUDA ``asked`` (``sliding_window_batch_size``) but at least
    ``cuda_least``; on the CPU ``cpu`` (1 measured fastest there). ``asked`` is checked on either device: under
    fast.yaml on the CPU a bad ``--sliding_window_batch_size`` passed unchecked.

    Raises:
        UserError: any of the three below 1.
    """
    asked = as_int(asked, "sliding_window_batch_size", minimum=1)
    if cuda:
        return max(as_int(cuda_least, "cuda_sliding_window_batch_size", minimum=1), asked)
    return as_int(cpu, "cpu_sliding_window_batch_size", minimum=1)


def with_tta(inferer: Inferer, tta: bool) -> Inferer:
    """``inferer`` wrapped in `MirrorInferer` when ``tta`` is true (the ``tta`` config id)."""
    return MirrorInferer(inferer) if tta else inferer


def input_files(d: Mapping, image_key: str = "image") -> list[InputRef]:
    """A loaded item's inputs (`pipeline.inference.outputs.image_files`), else the image's own file name."""
    return image_files(d) if d.get(INPUTS_KEY) else [reference_path(d[image_key])]


def write_label_like(labels: np.ndarray, reference: str | os.PathLike, out_path: str | os.PathLike,
                     case: str = "", model: str | None = None) -> Path:
    """Write ``labels`` ``(H, W, D)`` as uint8 NIfTI with the header and affine of ``reference``; ``descrip``
    `SEGMENTATION_DESCRIP`, the id of the ``model`` that made it in ``intent_name`` and a digest of its voxels in
    ``aux_file`` (`pipeline.inference.outputs.written_here`).

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
    img.header["cal_min"], img.header["cal_max"] = 0, 0  # the image's display window is not the labels' (0, 0: none)
    img.header["descrip"] = SEGMENTATION_DESCRIP.encode()
    img.header["intent_name"] = str(model or "")[:15].encode()
    img.header["aux_file"] = voxels_digest(labels).encode()  # the voxels it wrote: an edit since is the user's
    atomic_write(out_path, lambda tmp: nib.save(img, tmp))
    return out_path


class SaveBratsLabeld(MapTransform):
    """Turn binary regions ``(3, H, W, D)`` (TC, WT, ET) into BraTS labels and write ``<case>.nii.gz``.

    Args:
        keys: the region prediction key (``pred``), already inverted to the input geometry and thresholded.
        output_dir: the folder for ``<case>.nii.gz``.
        scheme: the label scheme written (``brats``: ET = 4, ``brats2023``: ET = 3, ``msd``, ``nnunet:<dataset.json>``;
            `pipeline.data.labels`): the data's own, or the one a ``label_scheme`` override names.
        case_key: the item key with the case id.
        image_key: the loaded image whose first file gives the reference header.
        report: an `InferenceReport`: the file is written by its writer threads while the next case runs, and
            recorded there when written, with the name of ``scheme`` (the numbering evaluation checks,
            `pipeline.evaluation.reference.scoring_scheme`); a case that cannot be written is recorded as failed (and
            logged) and the others go on. Without one the file is written at once and an error raised.
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
        reference = reference_path(d[self.image_key])
        for key in self.key_iterator(d):
            regions = d[key]
            if isinstance(regions, torch.Tensor):
                regions = regions.detach().cpu().numpy()
            labels = regions_to_labels(np.asarray(regions) > 0.5, self.scheme)
            out = self.output_dir / f"{case}.nii.gz"
            if self.report is None:
                write_label_like(labels, reference, out, case=case)
                logger.info("case %s: wrote %s", case, out)
            else:  # in a writer thread; the report records it when written, or the failure
                inputs = input_files(d, self.image_key)
                self.report.write(case, out, partial(write_label_like, labels, reference, out, case=case,
                                                     model=self.report.model),
                                  partial(self._written, case, inputs))
            d[f"{key}_path"] = str(out)
        return d

    def _written(self, case: str, inputs: list[InputRef], path: Path) -> None:
        logger.info("case %s: wrote %s", case, path)
        self.report.wrote(case, path, inputs, scheme=describe(self.scheme).name)



#: Probabilities are stored as uint16 with this NIfTI scale (NIfTI-1 has no float16): steps of 1.5e-5.
PROBABILITY_SCALE = 1.0 / 65535


def write_probabilities_like(probabilities: np.ndarray, reference: str | os.PathLike, out_path: str | os.PathLike,
                             regions: Sequence[str] = (), model: str | None = None) -> Path:
    """Write region probabilities ``(R, H, W, D)`` in [0, 1] as a 4D NIfTI ``(H, W, D, R)`` on ``reference``'s grid.

    Stored as uint16 with ``scl_slope`` = 1/65535 (half the size of float32; NIfTI-1 has no float16), so every
    reader (nibabel, 3D Slicer, ITK) gets floats back within 1.5e-5; the region names go in ``descrip``, the id of
    the ``model`` that made them in ``intent_name`` (`pipeline.inference.outputs.written_here`).
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
    img.header["descrip"] = (PROBABILITIES_DESCRIP + ",".join(regions))[:79].encode()
    if model:
        img.header["intent_name"] = str(model)[:15].encode()
    return atomic_write(out_path, lambda tmp: nib.save(img, tmp))


class SaveProbabilitiesd(MapTransform):
    """With ``enabled``, write the region probabilities of ``keys`` (``(R, H, W, D)``, already inverted to the input
    grid, before thresholding) to ``output_dir/probabilities/<case>.nii.gz`` for later ensembling or calibration."""

    def __init__(self, keys: KeysCollection, output_dir: str, enabled: bool | str = False,
                 regions: Sequence[str] = (), case_key: str = "case", image_key: str = "image",
                 allow_missing_keys: bool = False, report: InferenceReport | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.folder = Path(output_dir) / PROBABILITIES
        self.enabled = as_bool(enabled, "save_probabilities")
        self.regions = list(regions)
        self.case_key, self.image_key = case_key, image_key
        self.report = report

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            p = d[key].detach().cpu().numpy() if isinstance(d[key], torch.Tensor) else np.asarray(d[key])
            case = str(d[self.case_key])
            out = self.folder / f"{case}.nii.gz"
            p = np.array(p, copy=True)  # the write may run after later transforms; they get their own array
            write = partial(write_probabilities_like, p, reference_path(d[self.image_key]), out, self.regions,
                            self.report.model if self.report is not None else None)
            if self.report is None:
                write()
            else:  # before the case's segmentation, which records it (same writer queue, in order)
                self.report.write(case, out, write, lambda _, case=case: self.report.wrote_probabilities(case))
        return d
