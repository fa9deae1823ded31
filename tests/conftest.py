"""Shared fixtures: tiny synthetic BraTS datasets written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bundle" / "configs"
TINY_SHAPE = (48, 48, 32)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic cases of 48 x 48 x 32 voxels in the BraTS 2021 layout (read-only for tests)."""
    from pipeline.synthetic import write_dataset

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
    from pipeline.synthetic import write_dataset

    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in LAYOUT_NAMES:
        write_dataset(base / layout, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
        out[layout] = base / layout
    return out
