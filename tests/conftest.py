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
