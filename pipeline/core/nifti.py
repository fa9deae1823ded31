"""NIfTI files: naming and listing, reading voxels whole, and comparing voxel grids.

Arrays are read as stored, ``(X, Y, Z)`` or ``(X, Y, Z, C)``; an affine is the 4 x 4 voxel-to-world matrix in mm."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import aff2axcodes, inv_ornt_aff, io_orientation, ornt_transform

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")


#: Largest difference between the prediction's and the reference's affine entries (mm) still taken as equal.
AFFINE_TOLERANCE: float = 1e-3


#: Largest distance (mm) between corresponding voxel centres of two grids that is taken as header rounding, not
#: as another grid. Below it, "copy the affine" is safe advice: it moves no voxel centre by more than 1/100 of a
#: BraTS voxel (resampling would blur more). Rounding stays far below it: a float32 sform keeps ~7 digits
#: (1e-5 mm on a 100 mm origin), a qform's quaternion ~1e-6 per entry (~1e-4 mm across 240 voxels), and tools
#: that round to 4 decimals 1e-4 mm; a half-voxel shift or another field of view is >= 0.1 mm. It is a distance
#: between voxel centres (the largest over the grid's corners), not an affine entry difference: a 1e-2
#: direction entry moves the far corner of a 240-voxel axis by 2.4 mm. A reorientation moves voxel centres
#: by up to the field of view, so it can never pass for rounding.
HEADER_ROUNDING: float = 1e-2


def nifti_names(folder: Path) -> set[str]:
    """The names of the visible files directly in ``folder`` (empty when it cannot be listed)."""
    try:
        return {e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")}
    except OSError:
        return set()


def broken_links(folder: Path) -> list[Path]:
    """The visible entries directly in ``folder`` that are links leading nowhere (a drive or share not mounted), sorted
    (empty when it cannot be listed): `nifti_names` and a scan of folders pass them by."""
    try:
        return sorted(Path(e.path) for e in os.scandir(folder)
                      if e.is_symlink() and not e.name.startswith(".") and not os.path.exists(e.path))
    except OSError:
        return []


def dangling(path: str | os.PathLike) -> str:
    """`` (a link to <target>, which does not exist: a drive or share not mounted?)`` when ``path`` is a link that
    leads nowhere, else ``""``: what a message about a file not found adds, so that it is not re-downloaded."""
    try:
        if os.path.islink(path) and not os.path.exists(path):
            return f" (a link to {os.readlink(path)}, which does not exist: a drive or share not mounted?)"
    except OSError:
        pass
    return ""


def pick_nifti(names: set[str], stem: str) -> str | None:
    """``stem.nii.gz`` or ``stem.nii``, whichever ``names`` holds (``.nii.gz`` first), else None."""
    for ext in NIFTI_EXTENSIONS:
        if f"{stem}{ext}" in names:
            return f"{stem}{ext}"
    return None


def is_nifti(name: str) -> bool:
    """Whether a file name is a visible NIfTI file (``.nii.gz`` or ``.nii``)."""
    return name.endswith(NIFTI_EXTENSIONS) and not name.startswith(".")


def nifti_stem(name: str) -> str:
    """A file name without its NIfTI extension."""
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def nifti_files(folder: Path) -> dict[str, Path]:
    """``{case id: file}`` of the ``*.nii.gz``/``*.nii`` files directly in ``folder``.

    Raises:
        UserError: a case present as both ``<case>.nii`` and ``<case>.nii.gz`` (which one is meant cannot be told);
            a case's file that is a link to nowhere (a share not mounted: the case would be scored as missing).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        link = dangling(path) if is_nifti(path.name) else ""
        if link:
            raise UserError(f"{path} is case {nifti_stem(path.name)}'s file{link}: mount it, or remove the link to "
                            "leave the case out")
        if not path.is_file() or not is_nifti(path.name):
            continue
        cid = nifti_stem(path.name)
        if cid in found:
            raise UserError(f"{folder} holds both {found[cid].name} and {path.name}: which one is case {cid} cannot "
                            "be told; keep one of the two (move the other out of the folder)")
        found[cid] = path
    return found


class VoxelTypeError(ValueError):
    """A NIfTI file whose voxels are no real numbers (complex, RGB, ...): neither an image nor a label map here."""


def _real_voxels(data: np.ndarray, path: str) -> np.ndarray:
    if data.dtype.kind not in "biuf":
        raise VoxelTypeError(f"{path} holds {data.dtype} voxels, not real numbers: an image or a label map here holds "
                             "integers or floats; convert it (e.g. the magnitude, or one channel of an RGB file)")
    return data


def read_voxels(path: str | os.PathLike) -> np.ndarray:
    """A NIfTI file's voxel array, read once, with the whole gzip stream checked.

    nibabel stops decompressing once it has the voxels it needs, so a file cut short in its last block or with
    a bad checksum reads without complaint; here the whole stream is decompressed (``gzip`` verifies the CRC
    and the length) and nibabel parses the bytes in memory.

    Raises:
        EOFError, OSError, zlib.error, ValueError, nibabel errors: the file is truncated or corrupt.
        VoxelTypeError: its voxels are complex, RGB or other non-real values.
    """
    path = os.fspath(path)
    if not path.endswith(".gz"):
        return _real_voxels(np.asanyarray(nib.load(path).dataobj), path)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    size = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    klass = nib.Nifti2Image if size in (540, 0x1C020000) else nib.Nifti1Image
    return _real_voxels(np.asanyarray(klass.from_bytes(raw).dataobj), path)


def load_labels(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(labels (X, Y, Z), affine (4, 4), spacing in mm)`` of a label file, read once, in its stored dtype, the
    whole gzip stream checked (`read_voxels`: nibabel alone scores a file with a bad checksum). The spacing is the
    affine's (its columns' lengths), as the data check and MONAI's loading read it, not the header's ``pixdim``,
    which a file can state otherwise.

    Raises:
        UserError: the file is empty, truncated, corrupt or not NIfTI (named, with the fix).
    """
    try:
        image = nib.load(os.fspath(path))
        data = read_voxels(path)
    except VoxelTypeError as e:
        raise UserError(str(e)) from None
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as e:
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, gzip.BadGzipFile):
            raise  # a disk's error, not the file's content: the error funnel names it
        raise UserError(f"{path} cannot be read as NIfTI ({type(e).__name__}: {str(e)[:120]}); it is empty, "
                        "truncated or not NIfTI: write it again (re-run inference) or restore it") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0))
    return data, affine, spacing


def _corner_voxels(shape: Sequence[int]) -> np.ndarray:
    """``(4, 8)`` homogeneous voxel indices of the 8 corner voxel centres of a 3D grid."""
    axes = [(0.0, float(max(int(n), 1) - 1)) for n in shape[:3]]
    corners = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    return np.vstack([corners, np.ones((1, corners.shape[1]))])


def grid_distance(shape: Sequence[int], affine: np.ndarray, ref_affine: np.ndarray) -> float:
    """Largest distance (mm) between a voxel centre of the grid ``shape`` placed by ``affine`` and by ``ref_affine``.

    The affines are linear, so the largest distance over the grid is at one of its 8 corners.
    """
    diff = (np.asarray(affine, dtype=np.float64) - np.asarray(ref_affine, dtype=np.float64)) @ _corner_voxels(shape)
    return float(np.sqrt((diff[:3] ** 2).sum(axis=0)).max())


def reorientation(shape: Sequence[int], affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray,
                  tolerance: float = HEADER_ROUNDING) -> np.ndarray | None:
    """The nibabel orientation transform that puts a file's voxels in the reference's voxel order, when the two
    hold the same voxel centres (within ``tolerance`` mm) in different voxel orientations; else None.

    ``nibabel.orientations.apply_orientation(data, t)`` then gives ``ref_shape`` and voxels lined up with the
    reference's (``img.as_reoriented(t)`` the whole image). None also when the orientations are the same (then
    compare the affines) or when the grids differ beyond the reorientation (then resample).

    Args:
        shape, affine: the file's spatial shape (first 3 axes) and affine.
        ref_shape, ref_affine: the reference's.
    """
    affine, ref_affine = np.asarray(affine, dtype=np.float64), np.asarray(ref_affine, dtype=np.float64)
    ornt, ref_ornt = io_orientation(affine), io_orientation(ref_affine)
    if np.array_equal(ornt, ref_ornt) or np.isnan(ornt).any() or np.isnan(ref_ornt).any():
        return None
    t = ornt_transform(ornt, ref_ornt)
    new_shape = [0, 0, 0]
    for axis, (to, _) in enumerate(t):
        new_shape[int(to)] = int(shape[axis])
    if tuple(new_shape) != tuple(int(n) for n in ref_shape[:3]):
        return None
    new_affine = affine @ inv_ornt_aff(t, tuple(int(n) for n in shape[:3]))
    return t if grid_distance(ref_shape, new_affine, ref_affine) <= tolerance else None


def axcodes(affine: np.ndarray) -> str:
    """The voxel orientation of an affine, e.g. ``LPS``."""
    return "".join(str(c) for c in aff2axcodes(affine))


def save_nifti(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``arr`` as gzip NIfTI at ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(arr.dtype)
    atomic_write(path, lambda tmp: nib.save(img, tmp), durable=False)
