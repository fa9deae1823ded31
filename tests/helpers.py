"""What tests share besides fixtures: the repository's paths, the tiny sizes, and the bundle parsed in this process
(`parse_bundle`) or run through the MONAI CLI (`run_bundle`), both with ``pipeline.bundle``'s file list."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bundle" / "configs"
TINY_SHAPE = (48, 48, 32)


def parse_bundle(run_id_or_files: str | Sequence[str | Path], overrides: dict | None = None,
                 **variants: object) -> ConfigParser:
    """A ``ConfigParser`` of the bundle as ``monai.bundle run <run_id>`` reads it, then ``parser.update(overrides)``.

    ``run_id_or_files``: a run id (``training``, ``inference``, ``evaluate``), whose files come from
    ``pipeline.bundle.config_files(run_id, **variants)`` (``fast=``, ``network=``, ``ensemble=``, ``demo=``,
    ``multi_gpu=``), or the full list of config files to merge, in order.
    """
    from monai.bundle import ConfigParser

    from pipeline.bundle import config_files

    if isinstance(run_id_or_files, str):
        files = config_files(run_id_or_files, **variants)  # type: ignore[arg-type]
    else:
        assert not variants, "variants apply to a run id, not to a list of files"
        files = [str(f) for f in run_id_or_files]
    parser = ConfigParser()
    parser.read_config(files)
    parser.update(overrides or {})
    return parser


def cli_overrides(args: Sequence[str]) -> dict[str, str]:
    """``["--id", "value", ...]`` as ``{"id": "value", ...}`` (same order; a repeated or malformed id is an error)."""
    assert len(args) % 2 == 0, f"not --id value pairs: {args}"
    out: dict[str, str] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        assert key.startswith("--") and key[2:] not in out, f"bad or repeated id {key!r} in {args}"
        out[key[2:]] = value
    return out


def run_bundle(run_id: str, overrides: dict | None = None, *, check: bool = True, timeout: float = 600,
               **variants: object) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run <run_id>`` as ``pipeline.bundle.command`` builds it (``--id value`` for each
    override), in the repository; with ``check`` the exit status must be 0 (the log's tail shown otherwise)."""
    from pipeline.bundle import command
    from tests.warm import run_module

    result = run_module(command(run_id, overrides, **variants), capture_output=True, text=True, cwd=REPO,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"{run_id} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


#: Shape of the per-layout fixtures: small enough that the data check and the bundle run in a second or two.
LAYOUT_SHAPE = (32, 32, 24)
LAYOUT_NAMES = ("brats2021", "brats2023", "msd")


#: A tiny network and patch for the bundle (ids): what every test that builds or runs a stage uses.
TINY_NETWORK: dict[str, object] = {"roi_size": [32, 32, 32], "unet_channels": [8, 16, 32], "num_res_units": 1}
#: The tiny network on the CPU, with no loader processes: what a test run of a stage overrides.
TINY_IDS: dict[str, object] = {**TINY_NETWORK, "num_workers": 0, "device": "cpu"}


def cli_args(ids: dict) -> list[str]:
    """``{"id": value}`` as MONAI CLI arguments ``["--id", "value", ...]`` (lists written as ``[a,b]``)."""
    out: list[str] = []
    for key, value in ids.items():
        text = "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, (list, tuple)) else str(value)
        out += [f"--{key}", text]
    return out


#: `TINY_IDS` as MONAI CLI arguments.
TINY_ARGS: list[str] = cli_args(TINY_IDS)


def write_uneven_datalist(dataset: Path, path: Path) -> Path:
    """The 4 tiny cases as a datalist: fold 0 holds 3 cases, fold 1 one case (3 does not divide by 2)."""
    from pipeline.data.datalist import build_datalist

    datalist = build_datalist(dataset, folds=2, seed=0)
    for i, item in enumerate(sorted(datalist["training"], key=lambda it: it["case"])):
        item["fold"] = 0 if i < 3 else 1
    path.write_text(json.dumps(datalist))
    return path


def checksums(*roots: Path) -> dict[str, str]:
    """``{path: sha256}`` of every file below ``roots``: what "nothing was lost" compares."""
    out = {}
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def last_line(result: subprocess.CompletedProcess) -> str:
    """The last line a command printed: its last line on stderr (where errors and logs go), else on stdout."""
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else ""


def corrupted_predictions(tiny_dataset: Path, out: Path, erode: int) -> Path:
    """Predictions = the reference labels with ``erode`` planes of the tumour removed on each side along x
    (more planes: a worse algorithm)."""
    import nibabel as nib
    import numpy as np

    out.mkdir(parents=True)
    for label in sorted(tiny_dataset.rglob("*_seg.nii.gz")):
        img = nib.load(label)
        arr = np.asarray(img.dataobj).copy()
        xs = np.flatnonzero(arr.any(axis=(1, 2)))
        if erode and len(xs):
            arr[: xs[0] + erode] = 0
            arr[xs[-1] + 1 - erode:] = 0
        nib.save(nib.Nifti1Image(arr, img.affine, img.header), out / f"{label.parent.name}.nii.gz")
    return out


@contextlib.contextmanager
def locked_by_another_process(folder: Path, what: str) -> Iterator[int]:
    """``folder/.lock`` held by another live process on this host (a sleeping child), for as long as the block runs:
    what a second writer meets while the first still writes. Yields the holder's pid."""
    import os
    import sys

    from pipeline.core.files import FolderLock

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / FolderLock.NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                                "what": what}))
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def as_brats_ped(src: Path, dst: Path, numbering: str, prefix: str = "BraTS-PED-") -> Path:
    """The synthetic BraTS 2023 dataset ``src`` (BraTS-GLI-... cases, brats2023 numbering) as cases named
    ``prefix``... in ``dst``, the labels renumbered into ``numbering`` (``ped``: BraTS-PED 2024+; ``brats2023``:
    BraTS-PED 2023, harmonised with GLI)."""
    import shutil

    import nibabel as nib
    import numpy as np

    from pipeline.data.labels import describe, relabel, roles_by_value
    from pipeline.data.layouts import discover_cases

    own = roles_by_value(describe("brats2023"))
    for case in discover_cases(src):
        cid = case.case_id.replace("BraTS-GLI-", prefix)
        folder = dst / cid
        folder.mkdir(parents=True)
        for image in case.images:
            shutil.copy(image, folder / Path(image).name.replace(case.case_id, cid))
        label = nib.load(case.label)
        data = relabel(np.asarray(label.dataobj), own, numbering)
        nib.save(nib.Nifti1Image(data, label.affine), folder / f"{cid}-seg.nii.gz")
    return dst


def left_by_a_killed_write(path: Path) -> Path:
    """The temporary file `pipeline.core.files.atomic_write` makes for ``path``, named by the writer itself and left
    as a process killed mid-write leaves it (``path`` itself as it was, or absent)."""
    from pipeline.core.files import atomic_write

    before = path.read_bytes() if path.exists() else None
    seen: list[str] = []
    atomic_write(path, lambda tmp: (seen.append(tmp.name), tmp.write_bytes(before or b"")))
    if before is None:
        path.unlink()
    left = path.parent / seen[0]
    left.write_bytes(b"half")
    return left
