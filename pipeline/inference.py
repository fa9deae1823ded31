"""Writing segmentations: network regions back to BraTS labels, in the input's own geometry.

The bundle's inference post-processing is ``sigmoid -> Invertd (undo orientation/crop) -> threshold 0.5 ->``
:class:`SaveBratsLabeld`. The saved file is ``OUTPUT_DIR/<case>.nii.gz``, ``(H, W, D)`` uint8 with labels
{0, 1, 2, 4} (``brats``) or {0, 1, 2, 3} (``brats2023``), carrying the header (shape, affine, qform/sform)
of the case's first input image, so that it overlays the input exactly in 3D Slicer or ITK-SNAP.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.labels import regions_to_labels

logger = logging.getLogger(__name__)


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
    out_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out_path.suffixes[-2:]) if out_path.name.endswith(".nii.gz") else out_path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{case or 'seg'}.", suffix=suffix, dir=out_path.parent)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


class SaveBratsLabeld(MapTransform):
    """Turn binary regions ``(3, H, W, D)`` (TC, WT, ET) into BraTS labels and write ``<case>.nii.gz``.

    Args:
        keys: the region prediction key (``pred``), already inverted to the input geometry and thresholded.
        output_dir: the folder for ``<case>.nii.gz``.
        scheme: ``brats`` (ET = 4) or ``brats2023`` (ET = 3), see :mod:`pipeline.labels`.
        case_key: the item key with the case id.
        image_key: the loaded image whose first file gives the reference header.
    """

    def __init__(self, keys: KeysCollection, output_dir: str, scheme: str = "brats", case_key: str = "case",
                 image_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.scheme = scheme
        self.case_key = case_key
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        case = str(d[self.case_key])
        reference = _reference_path(d[self.image_key])
        for key in self.key_iterator(d):
            regions = d[key]
            if isinstance(regions, torch.Tensor):
                regions = regions.detach().cpu().numpy()
            labels = regions_to_labels(np.asarray(regions) > 0.5, self.scheme)
            path = write_label_like(labels, reference, self.output_dir / f"{case}.nii.gz", case=case)
            logger.info("case %s: wrote %s", case, path)
            d[f"{key}_path"] = str(path)
        return d
