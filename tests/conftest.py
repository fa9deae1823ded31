"""Fixtures: tiny synthetic BraTS datasets written once per test session (read-only; copy one before planting a
fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.files import release_held_folders
from pipeline.data.synthetic import write_dataset
from tests.helpers import LAYOUT_NAMES, LAYOUT_SHAPE, TINY_SHAPE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic cases of 48 x 48 x 32 voxels in the BraTS 2021 layout (read-only for tests)."""
    root = tmp_path_factory.mktemp("tiny") / "BraTS2021"
    write_dataset(root, cases=4, shape=TINY_SHAPE, seed=7)
    return root


@pytest.fixture(scope="session")
def layout_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 synthetic cases of 32 x 32 x 24 voxels in each layout, ``{layout: root}``; the same arrays in each
    (seed 5). Read-only: copy one before planting a fault."""
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in LAYOUT_NAMES:
        write_dataset(base / layout, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
        out[layout] = base / layout
    return out


@pytest.fixture(autouse=True)
def _release_held_folders() -> None:
    """What the end of a command's process does: a test calling evaluate() or compare() in-process leaves no lock."""
    yield
    release_held_folders()
