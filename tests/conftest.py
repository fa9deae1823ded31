"""Shared fixtures: tiny synthetic BraTS datasets written once per test session; the bundle parsed in this process
(:func:`parse_bundle`) and run through the MONAI CLI (:func:`run_bundle`), both with ``pipeline.bundle``'s file list."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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

    result = subprocess.run(command(run_id, overrides, **variants), capture_output=True, text=True, cwd=REPO,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"{run_id} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic cases of 48 x 48 x 32 voxels in the BraTS 2021 layout (read-only for tests)."""
    from pipeline.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("tiny") / "BraTS2021"
    write_dataset(root, cases=4, shape=TINY_SHAPE, seed=7)
    return root


#: Shape of the per-layout fixtures: small enough that the data check and the bundle run in a second or two.
LAYOUT_SHAPE = (32, 32, 24)
LAYOUT_NAMES = ("brats2021", "brats2023", "msd")


@pytest.fixture(scope="session")
def layout_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 synthetic cases of 32 x 32 x 24 voxels in each layout, ``{layout: root}``; the same arrays in each
    (seed 5). Read-only: copy one before planting a fault."""
    from pipeline.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in LAYOUT_NAMES:
        write_dataset(base / layout, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
        out[layout] = base / layout
    return out
